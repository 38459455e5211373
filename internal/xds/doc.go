// Package xds serves the sidecars' config over ADS (xDS SotW on one gRPC stream)
// with go-control-plane's server and snapshot cache, so a change reaches Envoy in
// milliseconds instead of at the kubelet's next ConfigMap sync (60–90 s).
//
// The library does the protocol; this package adds what a mesh needs around it:
//
//   - Authentication: a stream is served only for the MeshService or gateway
//     whose identity the client certificate carries (Options.Authorize
//     decides), and a stream may not change its node. A refused stream gets no resource at all.
//   - Content versions: listeners, clusters and secrets are at the build's
//     content hash (Resources.Version, the configVersion of the status),
//     endpoints at the hash of the endpoints alone. Two replicas holding the
//     same config answer a reconnecting sidecar alike and push nothing it
//     already has, and endpoints move without the rest.
//   - NACK hold: a version a proxy rejected is not sent to it again until the
//     snapshot changes (the library alone resends it at once, in a loop).
//   - Status: per service and per stream, what was ACKed and what was rejected with
//     Envoy's own error text, for the controller to put in MeshService status.
//
// The Server is a controller-runtime Runnable that runs on every replica, not
// only the leader: sidecars may connect to any replica behind the Service.
package xds
