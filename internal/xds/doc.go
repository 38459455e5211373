// Package xds serves the sidecars' config over ADS (xDS SotW on one gRPC stream)
// with go-control-plane's server and snapshot cache, so a change reaches Envoy in
// milliseconds instead of at the kubelet's next ConfigMap sync (60–90 s).
//
// The library does the protocol; this package adds what a mesh needs around it:
//
//   - Authentication: a stream is served only for the node whose identity the
//     client certificate carries (Options.Authorize decides), and a stream may
//     not change its node. A refused stream gets no resource at all.
//   - Content versions: every type's version is a hash of its resources, so two
//     replicas holding the same config answer a reconnecting sidecar alike and
//     push nothing it already has, and endpoints move without the rest.
//   - NACK hold: a version a proxy rejected is not sent to it again until the
//     node's snapshot changes (the library alone resends it at once, in a loop).
//   - Status: per node and per stream, what was ACKed and what was rejected with
//     Envoy's own error text, for the controller to put in MeshService status.
//
// The Server is a controller-runtime Runnable that runs on every replica, not
// only the leader: sidecars may connect to any replica behind the Service.
package xds
