// Package envoyconfig turns one MeshService, with everything it references already
// resolved, into the files its Envoy sidecar loads: the bootstrap (envoy.yaml), the
// file-based LDS and CDS responses (lds.yaml, cds.yaml) and, when the sidecar has
// an identity, the SDS files of its identity and trust secrets (sds-identity.yaml,
// sds-trust.yaml). A mesh's gateway is built the same way.
//
// Everything here is a pure function of its inputs, so the controller can call it on
// every reconcile and the tests can pin its output with golden files. Config is built
// as typed go-control-plane protos and validated before it is rendered, so an invalid
// spec surfaces as an error the controller reports instead of a NACK inside a pod.
//
// Identity (Service.Security, Target.Peer, Gateway.Security) is the Pod Certificate
// the kubelet keeps fresh under IdentityDir. Envoy reads it through file-based SDS
// that watches that directory, so rotation needs no restart, and validates peers
// with the default validator against the mesh's trust anchors. A nil Security keeps
// the config plaintext, byte for byte as it was before identities:
//
//   - The inbound listener requires a client certificate. HTTP protocols authorize
//     its SPIFFE ID with the HTTP RBAC filter (403, PERMISSION_DENIED for gRPC); TCP
//     with the network RBAC filter and, in Enforce, the same IDs at the handshake,
//     because the network filter decides only once tcp_proxy has reached the app.
//     Audit only counts with shadow rules; Off has no RBAC.
//   - Mesh clients offer ALPN [h2 or http/1.1, MeshALPN] ([MeshALPN] for TCP);
//     servers select only h2 or http/1.1, so the HTTP codec follows the real
//     protocol. A Permissive listener sends TLS connections that offer MeshALPN to
//     its mTLS chain and everything else to a plaintext default chain, which
//     forwards callers it cannot identify without authorization.
//   - Upstream clusters with a Peer present the identity and require the peer's
//     exact SPIFFE URI SAN, with the SNI of its Service; health checks use the same
//     transport socket.
//
// InboundTLS and UpstreamTLS read these settings back from built Resources, for
// tests that meet an Envoy with Go's crypto/tls.
//
// Observability (Service.Observability, Gateway.Observability) is the mesh's
// spec.accessLog and spec.tracing, resolved by ObservabilityFor. The access log
// goes to stdout from every HTTP connection manager and tcp_proxy of the inbound
// and egress listeners and the gateway's, never the status listener; the
// OpenTelemetry tracer is on every HTTP connection manager and exports over gRPC
// to the otel-collector cluster in cds. The zero value changes nothing. See
// docs/observability.md.
//
// Delivery (Options.Delivery) is FileDelivery by default: the bootstrap watches
// lds.yaml and cds.yaml in the ConfigMap. ADSDelivery, for a mesh whose
// delivery is XDS, points the bootstrap at the manager's xDS Service instead:
// one ADS stream over HTTP/2 and mutual TLS (the Pod Certificate, through the
// same SDS files, against the manager's SPIFFE ID), and upstream clusters
// become EDS clusters whose endpoints the build takes from Options.Endpoints,
// built by ClusterLoadAssignment from EndpointSlices. The same Resources feed
// the ConfigMap (Render: under ADS only the bootstrap and the SDS files) and
// the xDS snapshot (Listeners, Clusters at Version, Endpoints at
// EndpointsVersion); WithEndpoints re-versions new endpoints without a rebuild.
package envoyconfig
