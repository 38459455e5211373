// Package fleetsim simulates Envoy sidecars on the wire, in process, so the xDS
// server can be tested and benchmarked without an Envoy binary, at a thousand
// sidecars on a small machine.
//
// Each Sidecar holds one ADS stream (SotW, v3) over real gRPC with mutual TLS,
// and speaks the protocol the way Envoy's GrpcMuxImpl does:
//
//   - It subscribes in Envoy's initialization order: CDS (wildcard) first;
//     then EDS, by name, for the EDS clusters of the CDS response (a cluster's
//     eds_cluster_config.service_name, else its name); and LDS (wildcard) only
//     once the first CDS response and, if it named EDS clusters, the first EDS
//     response were handled, as Envoy starts listeners after the cluster
//     manager initialized.
//   - The node is sent on a stream's first request, and on every other unless
//     Config.NodeOnFirstRequestOnly (ApiConfigSource.set_node_on_first_message_only).
//   - Every response is ACKed or NACKed, as Config.Accept decides, with its
//     nonce as response_nonce. An ACK carries the response's version_info; a
//     NACK the last version accepted for the type ("" if none) and an
//     error_detail (code INTERNAL and the reason, as Envoy sends it).
//   - When a CDS response changes the EDS cluster names, the new EDS request
//     (at the last EDS version and nonce) goes out before the CDS ACK, as
//     Envoy resumes its paused EDS requests within the CDS update.
//   - On a new stream (Reconnect) it sends, in subscription order, one request
//     per subscribed type with the last accepted version, its resource names
//     and no nonce.
//
// Unlike Envoy it does not retry a failed stream on its own: a test decides
// when to Reconnect. It applies nothing either: Accept is where a test plays
// Envoy's validation (Validate is a ready one).
package fleetsim
