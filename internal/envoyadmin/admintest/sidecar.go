// Package admintest provides a stub of a sidecar's status listener for tests of code that polls
// Envoy's admin API, so those tests run without an Envoy binary.
package admintest

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultEnvoyVersion is the semantic version a new Sidecar reports in /server_info.
const DefaultEnvoyVersion = "1.36.2"

// buildSHA is the commit in the recorded server_info.json fixture; the stub reuses it so its build
// string has Envoy's "<sha>/<version>/Clean/RELEASE/BoringSSL" shape.
const buildSHA = "093e2ffe046313242144d0431f1bb5cf18d82544"

// garbageBody is what every JSON endpoint answers in garbage mode: the start of a JSON object that
// never ends.
const garbageBody = `{"stats": [{"name": "server.state", "value": `

// states lists Envoy's server states in the order of the server.state gauge.
var states = []string{"LIVE", "DRAINING", "PRE_INITIALIZING", "INITIALIZING"}

// inboundCounters are the counters a sidecar with mTLS and authorization on an HTTP service has
// from the start, all 0: its inbound HTTP connection manager's RBAC filter (stat prefix
// "inbound") and its inbound listener's TLS (listener stat prefix "inbound"). SetCounter changes
// them or adds others, such as a TCP service's network RBAC filter's inbound.rbac.denied.
var inboundCounters = []string{
	"http.inbound.rbac.allowed",
	"http.inbound.rbac.denied",
	"http.inbound.rbac.shadow_allowed",
	"http.inbound.rbac.shadow_denied",
	"listener.inbound.ssl.connection_error",
	"listener.inbound.ssl.fail_verify_cert_hash",
	"listener.inbound.ssl.fail_verify_error",
	"listener.inbound.ssl.fail_verify_no_cert",
	"listener.inbound.ssl.fail_verify_san",
	"listener.inbound.ssl.handshake",
	"listener.inbound.ssl.no_certificate",
}

// computedStats are the stats the stub derives from its state (SetState, SetVersion,
// SetRejected); SetCounter refuses them.
var computedStats = []string{
	"cluster_manager.cds.version_text",
	"listener_manager.lds.version_text",
	"cluster_manager.cds.update_attempt",
	"cluster_manager.cds.update_rejected",
	"cluster_manager.cds.update_success",
	"listener_manager.lds.update_attempt",
	"listener_manager.lds.update_rejected",
	"listener_manager.lds.update_success",
	"server.state",
}

// caValidity is how long the stub's mesh CA is valid, and certLifetime how long its identity
// certificate, as the operator's signer issues them.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	certLifetime = 24 * time.Hour
)

// Cluster is one upstream cluster the stub reports in /clusters: Hosts hosts, the first Healthy of
// which are healthy and the rest failing active health checks.
type Cluster struct {
	Name    string
	Hosts   int
	Healthy int
}

// Sidecar is a stub status listener. Its setters may be called while it serves; every answer is
// built from the settings at the time of the request.
type Sidecar struct {
	mu           sync.Mutex
	state        string
	envoyVersion string
	version      string
	ldsRejected  uint64
	cdsRejected  uint64
	hang         bool
	garbage      bool
	clusters     []Cluster
	certExpiry   time.Time
	certSANs     []string
	counters     map[string]uint64
	requests     []string

	srv     *http.Server
	addr    string
	closing chan struct{}
	done    chan struct{}
}

// NewSidecar returns a LIVE sidecar with no config version, no rejections, no clusters, no
// certificate (/certs answers 404) and every inbound counter at 0.
func NewSidecar() *Sidecar {
	counters := make(map[string]uint64, len(inboundCounters))
	for _, name := range inboundCounters {
		counters[name] = 0
	}
	return &Sidecar{
		state:        "LIVE",
		envoyVersion: DefaultEnvoyVersion,
		counters:     counters,
		closing:      make(chan struct{}),
	}
}

// SetState sets the server state; it panics on a name Envoy does not use, to catch typos in tests.
func (s *Sidecar) SetState(state string) {
	if !slices.Contains(states, state) {
		panic(fmt.Sprintf("admintest: unknown Envoy server state %q", state))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = state
}

// SetEnvoyVersion sets the semantic version in the /server_info build string.
func (s *Sidecar) SetEnvoyVersion(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.envoyVersion = v
}

// SetVersion sets the version_text both LDS and CDS report, i.e. the config version the sidecar
// has loaded. Empty means nothing was loaded yet.
func (s *Sidecar) SetVersion(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version = v
}

// SetRejected sets the update_rejected counters of LDS and CDS.
func (s *Sidecar) SetRejected(lds, cds uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ldsRejected, s.cdsRejected = lds, cds
}

// SetCertificate sets the identity certificate /certs reports: its expiry and URI SANs (the
// SPIFFE ID). A zero expiry removes it, and /certs then answers 404 as a status listener without
// the /certs route does.
func (s *Sidecar) SetCertificate(expiry time.Time, uriSANs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.certExpiry, s.certSANs = expiry, slices.Clone(uriSANs)
}

// SetCounter sets a counter /stats reports, adding it if the stub does not have it yet, e.g.
// SetCounter("http.inbound.rbac.denied", 3). It panics on the stats the stub computes itself
// (see SetVersion, SetRejected, SetState), to catch misuse in tests.
func (s *Sidecar) SetCounter(name string, value uint64) {
	if name == "" || slices.Contains(computedStats, name) {
		panic(fmt.Sprintf("admintest: %q is not a counter SetCounter may set", name))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters[name] = value
}

// SetHang makes every request block until the client gives up (or Close), like a stuck proxy.
func (s *Sidecar) SetHang(hang bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hang = hang
}

// SetGarbage makes the JSON endpoints answer 200 with invalid JSON.
func (s *Sidecar) SetGarbage(garbage bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.garbage = garbage
}

// SetClusters replaces the clusters reported by /clusters.
func (s *Sidecar) SetClusters(clusters ...Cluster) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusters = slices.Clone(clusters)
}

// Requests returns the request URIs served so far, in order, so tests can check what was asked.
func (s *Sidecar) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Serve binds addr, which must be a loopback IP and port such as "127.0.0.7:15021" (port 0 picks
// one; see Addr), and serves in the background until Close. Non-loopback addresses are refused so a
// test can never expose the stub or be mistaken for a real pod.
func (s *Sidecar) Serve(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("admintest: %w", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("admintest: %q is not a loopback IP address", addr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("admintest: already serving")
	}
	select {
	case <-s.closing:
		return errors.New("admintest: closed")
	default:
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admintest: %w", err)
	}
	s.srv = &http.Server{Handler: s}
	s.addr = ln.Addr().String()
	s.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(ln)
	}(s.srv, s.done)
	return nil
}

// Start is Serve for tests: it fails t if addr cannot be bound and closes the sidecar when t ends.
func (s *Sidecar) Start(t testing.TB, addr string) {
	t.Helper()
	if err := s.Serve(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
}

// Addr returns the bound "ip:port", or "" before Serve.
func (s *Sidecar) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL returns the base URL to probe, e.g. "http://127.0.0.7:15021".
func (s *Sidecar) URL() string {
	return "http://" + s.Addr()
}

// Close releases hung requests, stops serving and frees the address. It may be called more than once.
func (s *Sidecar) Close() {
	s.mu.Lock()
	select {
	case <-s.closing:
	default:
		close(s.closing)
	}
	srv, done := s.srv, s.done
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
		<-done
	}
}

// ServeHTTP answers like the status listener: GET /ready, /server_info, /stats, /clusters and
// /certs, 404 for any other path or method. /stats answers in JSON with the server.state and
// LDS/CDS update stats of an Envoy and its counters (see SetCounter), narrowed as Envoy does by
// the filter query parameter (an RE2 regex matched anywhere in the name; a filter that does not
// compile is a 400). /certs answers 404 until SetCertificate gives the stub a certificate. Other
// query parameters are ignored.
func (s *Sidecar) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.RequestURI)
	hang, garbage := s.hang, s.garbage
	state, envoyVersion, version := s.state, s.envoyVersion, s.version
	ldsRejected, cdsRejected := s.ldsRejected, s.cdsRejected
	clusters := slices.Clone(s.clusters)
	certExpiry, certSANs := s.certExpiry, slices.Clone(s.certSANs)
	counters := maps.Clone(s.counters)
	s.mu.Unlock()

	if hang {
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		return
	}
	if r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	var body any
	switch r.URL.Path {
	case "/ready":
		if state != "LIVE" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, _ = fmt.Fprintln(w, state)
		return
	case "/server_info":
		body = serverInfo(state, envoyVersion)
	case "/stats":
		filter, err := regexp.Compile(r.URL.Query().Get("filter"))
		if err != nil {
			http.Error(w, "Invalid regex: "+err.Error(), http.StatusBadRequest)
			return
		}
		body = stats(state, version, ldsRejected, cdsRejected, counters, filter)
	case "/clusters":
		body = clusterStatuses(clusters)
	case "/certs":
		if certExpiry.IsZero() {
			http.NotFound(w, r)
			return
		}
		body = json.RawMessage(certificates(certExpiry, certSANs, time.Now()))
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if garbage {
		_, _ = w.Write([]byte(garbageBody))
		return
	}
	b, err := json.MarshalIndent(body, "", " ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write(b)
}

// serverInfo has the shape of the server_info.json fixture, trimmed to top-level fields.
func serverInfo(state, envoyVersion string) any {
	return map[string]any{
		"version":              buildSHA + "/" + envoyVersion + "/Clean/RELEASE/BoringSSL",
		"state":                state,
		"hot_restart_version":  "11.104",
		"command_line_options": map[string]any{"concurrency": 2, "mode": "Serve"},
		"uptime_current_epoch": "188s",
		"uptime_all_epochs":    "188s",
	}
}

type stat struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
}

// stats has the shape of the stats.json fixture: text readouts as strings, then counters and
// gauges as numbers sorted by name, then the histograms element Envoy appends. Only the stats
// filter matches are listed.
func stats(state, version string, ldsRejected, cdsRejected uint64, counters map[string]uint64, filter *regexp.Regexp) any {
	var success uint64
	if version != "" {
		success = 1
	}
	values := []stat{
		{"cluster_manager.cds.update_attempt", success + cdsRejected},
		{"cluster_manager.cds.update_rejected", cdsRejected},
		{"cluster_manager.cds.update_success", success},
		{"listener_manager.lds.update_attempt", success + ldsRejected},
		{"listener_manager.lds.update_rejected", ldsRejected},
		{"listener_manager.lds.update_success", success},
		{"server.state", slices.Index(states, state)},
	}
	for name, v := range counters {
		values = append(values, stat{name, v})
	}
	slices.SortFunc(values, func(a, b stat) int { return strings.Compare(a.Name, b.Name) })
	all := append([]stat{
		{"cluster_manager.cds.version_text", version},
		{"listener_manager.lds.version_text", version},
	}, values...)
	list := []any{}
	for _, st := range all {
		if filter.MatchString(st.Name) {
			list = append(list, st)
		}
	}
	list = append(list, map[string]any{"histograms": map[string]any{
		"supported_quantiles": []float64{0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100},
		"computed_quantiles":  []any{},
	}})
	return map[string]any{"stats": list}
}

// certificates is the /certs body of a sidecar whose Pod Certificate expires at expiry: the
// proto-JSON of admin.v3.Certificates as Envoy writes it (proto field names, default scalars and
// empty lists written out), with two TLS contexts, the inbound listener's and an egress
// cluster's, each trusting the mesh CA and presenting the certificate.
func certificates(expiry time.Time, uriSANs []string, now time.Time) []byte {
	days := func(t time.Time) uint64 { return uint64(max(t.Sub(now), 0) / (24 * time.Hour)) }
	from := expiry.Add(-certLifetime)
	context := func() *adminv3.Certificate {
		leaf := &adminv3.CertificateDetails{
			Path:                "/var/run/envoymesh/identity/bundle.pem",
			SerialNumber:        "1f4a7c2e9b3d5068a1c4e7f20b9d3a61",
			DaysUntilExpiration: days(expiry),
			ValidFrom:           timestamppb.New(from),
			ExpirationTime:      timestamppb.New(expiry),
		}
		for _, uri := range uriSANs {
			leaf.SubjectAltNames = append(leaf.SubjectAltNames,
				&adminv3.SubjectAlternateName{Name: &adminv3.SubjectAlternateName_Uri{Uri: uri}})
		}
		return &adminv3.Certificate{
			CaCert: []*adminv3.CertificateDetails{{
				Path:                "/var/run/envoymesh/identity/ca.pem",
				SerialNumber:        "5c0d3a9e41f7b2c86d1e09a4f3b27c15",
				DaysUntilExpiration: days(from.Add(caValidity)),
				ValidFrom:           timestamppb.New(from),
				ExpirationTime:      timestamppb.New(from.Add(caValidity)),
			}},
			CertChain: []*adminv3.CertificateDetails{leaf},
		}
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}.Marshal(
		&adminv3.Certificates{Certificates: []*adminv3.Certificate{context(), context()}})
	if err != nil {
		panic(err) // every field is set by this function; a failure is a bug here
	}
	return b
}

// clusterStatuses has the admin.v3.Clusters proto-JSON shape of the clusters.json fixture. Host
// addresses are loopback so nothing built from them could leave the machine.
func clusterStatuses(clusters []Cluster) any {
	statuses := []any{}
	for ci, c := range clusters {
		hosts := []any{}
		for i := range c.Hosts {
			health := map[string]any{"eds_health_status": "HEALTHY"}
			if i >= c.Healthy {
				health["failed_active_health_check"] = true
			}
			hosts = append(hosts, map[string]any{
				"address": map[string]any{"socket_address": map[string]any{
					"protocol":   "TCP",
					"address":    "127.0." + strconv.Itoa(ci%256) + "." + strconv.Itoa(i%254+1),
					"port_value": 15006,
				}},
				"stats": []any{
					map[string]any{"name": "cx_active", "value": "0", "type": "GAUGE"},
					map[string]any{"name": "rq_total", "value": "0", "type": "COUNTER"},
				},
				"health_status": health,
				"weight":        1,
			})
		}
		statuses = append(statuses, map[string]any{
			"name":          c.Name,
			"added_via_api": true,
			"host_statuses": hosts,
		})
	}
	return map[string]any{"cluster_statuses": statuses}
}
