// Package envoyadmin reads what an Envoy sidecar reports about itself through the sidecar's status
// listener, which forwards a read-only subset of the admin API (GET /ready, /server_info, /stats,
// /stats/prometheus, /clusters, /certs). The prober reads /server_info, the filtered /stats,
// /clusters and /certs; /ready is the kubelet's startup probe and /stats/prometheus is for
// Prometheus: nothing here reads them.
//
// The parsers are pure functions of an io.Reader so they can be tested on recorded Envoy output;
// Client only adds HTTP, timeouts and the choice of URLs.
package envoyadmin
