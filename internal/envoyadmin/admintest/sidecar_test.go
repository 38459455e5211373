package admintest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin/admintest"
)

// testTimeout is the per-request timeout of clients that talk to a hung sidecar.
const testTimeout = 200 * time.Millisecond

func start(t *testing.T) *admintest.Sidecar {
	t.Helper()
	s := admintest.NewSidecar()
	s.Start(t, "127.0.0.1:0")
	return s
}

func TestSidecarProbe(t *testing.T) {
	s := start(t)
	c := envoyadmin.NewClient(nil, 0)

	got, err := c.Probe(context.Background(), s.URL())
	if err != nil {
		t.Fatal(err)
	}
	want := envoyadmin.Observation{State: envoyadmin.StateLive, EnvoyVersion: admintest.DefaultEnvoyVersion}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("new sidecar: got %+v, want %+v", got, want)
	}

	s.SetState("DRAINING")
	s.SetEnvoyVersion("1.37.0-dev")
	s.SetVersion("cfg-42")
	s.SetRejected(2, 3)
	s.SetClusters(
		admintest.Cluster{Name: "b.default.svc.cluster.local:15006", Hosts: 3, Healthy: 1},
		admintest.Cluster{Name: "a.default.svc.cluster.local:15006", Hosts: 2, Healthy: 2},
		admintest.Cluster{Name: "local_app", Hosts: 1, Healthy: 1},
	)
	expiry := time.Date(2026, 3, 3, 8, 13, 5, 0, time.UTC)
	s.SetCertificate(expiry, "spiffe://cluster.local/ns/default/sa/a")
	s.SetCounter("http.inbound.rbac.denied", 4)
	s.SetCounter("listener.inbound.ssl.fail_verify_san", 1)
	s.SetCounter("http.inbound.rbac.shadow_denied", 2)
	got, err = c.Probe(context.Background(), s.URL())
	if err != nil {
		t.Fatal(err)
	}
	want = envoyadmin.Observation{
		State:        envoyadmin.StateDraining,
		EnvoyVersion: "1.37.0-dev",
		LDSVersion:   "cfg-42",
		CDSVersion:   "cfg-42",
		LDSRejected:  2,
		CDSRejected:  3,
		Clusters: []envoyadmin.ClusterHealth{
			{Name: "a.default.svc.cluster.local:15006", Hosts: 2, Healthy: 2},
			{Name: "b.default.svc.cluster.local:15006", Hosts: 3, Healthy: 1},
			{Name: "local_app", Hosts: 1, Healthy: 1},
		},
		CertificateExpiry: expiry,
		Denied:            5,
		AuditDenied:       2,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after setters: got %+v\nwant %+v", got, want)
	}

	for _, uri := range s.Requests() {
		u, err := url.ParseRequestURI(uri)
		if err != nil {
			t.Fatal(err)
		}
		if u.Path == "/stats" && u.Query().Get("filter") != envoyadmin.StatsFilter {
			t.Errorf("unfiltered stats request %q", uri)
		}
	}
	if n := len(s.Requests()); n != 8 {
		t.Errorf("%d requests recorded, want 8 (two probes of four requests)", n)
	}
}

// TestSidecarStats checks the stats body itself with the envoyadmin parser, and that the stub
// narrows /stats by the filter as Envoy does.
func TestSidecarStats(t *testing.T) {
	s := start(t)
	s.SetState("PRE_INITIALIZING")
	s.SetVersion("v1")
	s.SetRejected(1, 0)
	// Every denial counter Envoy may report, a TCP service's network RBAC filter's included, and
	// neighbours that must not count.
	for name, v := range map[string]uint64{
		"http.inbound.rbac.denied":                   1,
		"inbound.rbac.denied":                        2,
		"listener.inbound.ssl.fail_verify_no_cert":   4,
		"listener.inbound.ssl.fail_verify_error":     8,
		"listener.inbound.ssl.fail_verify_san":       16,
		"listener.inbound.ssl.fail_verify_cert_hash": 32,
		"listener.inbound.ssl.connection_error":      64,
		"http.inbound.rbac.shadow_denied":            128,
		"inbound.rbac.shadow_denied":                 256,
		"http.inbound.rbac.allowed":                  1000,
		"listener.inbound.ssl.handshake":             1000,
		"inbound.rbac.shadow_allowed":                1000,
	} {
		s.SetCounter(name, v)
	}
	got, err := envoyadmin.NewClient(nil, 0).Stats(context.Background(), s.URL())
	if err != nil {
		t.Fatal(err)
	}
	want := envoyadmin.Stats{
		LDS:         envoyadmin.XDSStats{VersionText: "v1", UpdateRejected: 1},
		CDS:         envoyadmin.XDSStats{VersionText: "v1"},
		Denied:      127,
		AuditDenied: 384,
	}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}

	for _, tt := range []struct {
		query string
		want  []string
	}{
		{"?format=json&filter=" + url.QueryEscape(envoyadmin.StatsFilter), []string{
			"cluster_manager.cds.version_text", "listener_manager.lds.version_text",
			"cluster_manager.cds.update_rejected",
			"http.inbound.rbac.denied", "http.inbound.rbac.shadow_denied",
			"inbound.rbac.denied", "inbound.rbac.shadow_denied",
			"listener.inbound.ssl.connection_error", "listener.inbound.ssl.fail_verify_cert_hash",
			"listener.inbound.ssl.fail_verify_error", "listener.inbound.ssl.fail_verify_no_cert",
			"listener.inbound.ssl.fail_verify_san",
			"listener_manager.lds.update_rejected",
		}},
		{"?format=json", []string{
			"cluster_manager.cds.version_text", "listener_manager.lds.version_text",
			"cluster_manager.cds.update_attempt", "cluster_manager.cds.update_rejected", "cluster_manager.cds.update_success",
			"http.inbound.rbac.allowed", "http.inbound.rbac.denied", "http.inbound.rbac.shadow_allowed", "http.inbound.rbac.shadow_denied",
			"inbound.rbac.denied", "inbound.rbac.shadow_allowed", "inbound.rbac.shadow_denied",
			"listener.inbound.ssl.connection_error", "listener.inbound.ssl.fail_verify_cert_hash",
			"listener.inbound.ssl.fail_verify_error", "listener.inbound.ssl.fail_verify_no_cert",
			"listener.inbound.ssl.fail_verify_san", "listener.inbound.ssl.handshake", "listener.inbound.ssl.no_certificate",
			"listener_manager.lds.update_attempt", "listener_manager.lds.update_rejected", "listener_manager.lds.update_success",
			"server.state",
		}},
		{"?format=json&filter=" + url.QueryEscape(`^server\.`), []string{"server.state"}},
	} {
		if got := statNames(t, s.URL()+"/stats"+tt.query); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("/stats%s: names %v, want %v", tt.query, got, tt.want)
		}
	}
	resp, err := envoyadmin.NewHTTPClient().Get(s.URL() + "/stats?filter=" + url.QueryEscape("("))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("invalid filter: status %d, want 400", resp.StatusCode)
	}
}

// TestSidecarNewHasNoDenials: a new stub reports its inbound counters at 0.
func TestSidecarNewHasNoDenials(t *testing.T) {
	s := start(t)
	got, err := envoyadmin.NewClient(nil, 0).Stats(context.Background(), s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if got.Denied != 0 || got.AuditDenied != 0 {
		t.Errorf("new sidecar: Denied %d, AuditDenied %d; want 0, 0", got.Denied, got.AuditDenied)
	}
	if names := statNames(t, s.URL()+"/stats?format=json&filter="+url.QueryEscape(`^http\.inbound\.rbac\.denied$`)); !reflect.DeepEqual(names, []string{"http.inbound.rbac.denied"}) {
		t.Errorf("new sidecar's RBAC denial counter: %v", names)
	}
}

func TestSidecarSetCounterRefusesComputedStats(t *testing.T) {
	for _, name := range []string{"", "server.state", "listener_manager.lds.update_rejected", "cluster_manager.cds.version_text"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("SetCounter(%q) did not panic", name)
				}
			}()
			admintest.NewSidecar().SetCounter(name, 1)
		}()
	}
}

// TestSidecarCerts: /certs answers 404 until a certificate is set, then Envoy's proto-JSON of
// admin.v3.Certificates, which the envoyadmin parser reads.
func TestSidecarCerts(t *testing.T) {
	s := start(t)
	c := envoyadmin.NewClient(nil, 0)
	if code, _ := get(t, s.URL()+"/certs"); code != http.StatusNotFound {
		t.Errorf("no certificate: /certs status %d, want 404", code)
	}
	if got, err := c.Certs(context.Background(), s.URL()); err != nil || !got.Expiry.IsZero() {
		t.Errorf("no certificate: Certs = %+v, %v; want none", got, err)
	}

	expiry := time.Now().Add(12 * time.Hour).Truncate(time.Second).UTC()
	const id = "spiffe://cluster.local/ns/shop/sa/cart"
	s.SetCertificate(expiry, id)
	got, err := c.Certs(context.Background(), s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if want := (envoyadmin.Certificate{Expiry: expiry, URISANs: []string{id}}); !reflect.DeepEqual(got, want) {
		t.Errorf("Certs = %+v, want %+v", got, want)
	}

	// The body is the proto, as Envoy writes it: proto field names, uint64 as strings, and no
	// field the proto does not have (protojson without DiscardUnknown would refuse one).
	code, body := get(t, s.URL()+"/certs")
	if code != http.StatusOK {
		t.Fatalf("/certs status %d", code)
	}
	var certs adminv3.Certificates
	if err := protojson.Unmarshal([]byte(body), &certs); err != nil {
		t.Fatalf("body is not admin.v3.Certificates: %v\n%s", err, body)
	}
	for _, want := range []string{`"cert_chain"`, `"ca_cert"`, `"expiration_time"`, `"days_until_expiration": "0"`, `"uri": "` + id + `"`} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %s:\n%s", want, body)
		}
	}
	if len(certs.Certificates) == 0 || len(certs.Certificates[0].CaCert) != 1 ||
		!certs.Certificates[0].CaCert[0].ExpirationTime.AsTime().After(expiry) {
		t.Errorf("want contexts that trust a CA outliving the certificate: %v", &certs)
	}

	s.SetCertificate(time.Time{})
	if code, _ := get(t, s.URL()+"/certs"); code != http.StatusNotFound {
		t.Errorf("certificate removed: /certs status %d, want 404", code)
	}
}

// get GETs u and returns the status code and body.
func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := envoyadmin.NewHTTPClient().Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// statNames returns the names of the stats a /stats?format=json URL answers, in order.
func statNames(t *testing.T, u string) []string {
	t.Helper()
	resp, err := envoyadmin.NewHTTPClient().Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Stats []struct {
			Name string `json:"name"`
		} `json:"stats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range body.Stats {
		if st.Name != "" {
			names = append(names, st.Name)
		}
	}
	return names
}

// ready GETs /ready and returns its status code and trimmed body.
func ready(t *testing.T, s *admintest.Sidecar) (int, string) {
	t.Helper()
	resp, err := envoyadmin.NewHTTPClient().Get(s.URL() + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestSidecarReady: /ready is what the kubelet's startup probe reads, the state name with 200 when
// LIVE and 503 otherwise.
func TestSidecarReady(t *testing.T) {
	s := start(t)
	for _, state := range []string{"LIVE", "DRAINING", "PRE_INITIALIZING", "INITIALIZING"} {
		s.SetState(state)
		code, body := ready(t, s)
		if body != state {
			t.Errorf("ready = %q, want %q", body, state)
		}
		if wantCode := map[bool]int{true: 200, false: 503}[state == "LIVE"]; code != wantCode {
			t.Errorf("%s: /ready status %d, want %d", state, code, wantCode)
		}
	}
}

func TestSidecarHang(t *testing.T) {
	s := start(t)
	s.SetHang(true)
	c := envoyadmin.NewClient(nil, testTimeout)
	if _, err := c.Probe(context.Background(), s.URL()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hung probe: error %v is not a deadline error", err)
	}
	s.SetHang(false)
	if _, err := c.Probe(context.Background(), s.URL()); err != nil {
		t.Fatalf("after hang mode: %v", err)
	}
}

// TestSidecarCloseReleasesHungRequests: Close must not wait for a client that never gives up.
func TestSidecarCloseReleasesHungRequests(t *testing.T) {
	s := admintest.NewSidecar()
	if err := s.Serve("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	s.SetHang(true)
	errc := make(chan error, 1)
	go func() {
		_, err := envoyadmin.NewClient(nil, time.Hour).Probe(context.Background(), s.URL())
		errc <- err
	}()
	for len(s.Requests()) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	s.Close()
	if err := <-errc; err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want a connection error", err)
	}
}

func TestSidecarGarbage(t *testing.T) {
	s := start(t)
	s.SetGarbage(true)
	c := envoyadmin.NewClient(nil, 0)
	if _, err := c.ServerInfo(context.Background(), s.URL()); err == nil || !strings.Contains(err.Error(), "unexpected end of JSON input") {
		t.Errorf("server_info: error %v, want invalid JSON", err)
	}
	if _, err := c.Stats(context.Background(), s.URL()); err == nil || !strings.Contains(err.Error(), "unexpected end of JSON input") {
		t.Errorf("stats: error %v, want invalid JSON", err)
	}
	if _, err := c.Clusters(context.Background(), s.URL()); err == nil || !strings.Contains(err.Error(), "unexpected end of JSON input") {
		t.Errorf("clusters: error %v, want invalid JSON", err)
	}
	s.SetCertificate(time.Now().Add(time.Hour))
	if _, err := c.Certs(context.Background(), s.URL()); err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("certs: error %v, want invalid JSON", err)
	}
	if code, body := ready(t, s); code != http.StatusOK || body != "LIVE" {
		t.Errorf("ready = %d %q, want 200 LIVE (garbage mode is for JSON endpoints)", code, body)
	}
	s.SetGarbage(false)
	if _, err := c.Probe(context.Background(), s.URL()); err != nil {
		t.Fatalf("after garbage mode: %v", err)
	}
}

func TestSidecarNotFound(t *testing.T) {
	s := start(t)
	for _, tt := range []struct{ method, path string }{
		{http.MethodGet, "/"},
		{http.MethodGet, "/config_dump"},
		{http.MethodGet, "/stats/prometheus"},
		{http.MethodGet, "/server_info/x"},
		{http.MethodPost, "/quitquitquit"},
		{http.MethodPost, "/ready"},
		{http.MethodPost, "/stats"},
		{http.MethodGet, "/certs"}, // no certificate set
		{http.MethodGet, "/certs/x"},
	} {
		req, err := http.NewRequest(tt.method, s.URL()+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := envoyadmin.NewHTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s: status %d, want 404", tt.method, tt.path, resp.StatusCode)
		}
	}
}

func TestSidecarServeRefusesNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:15021", "[::]:0", "localhost:0", "127.0.0.1"} {
		if err := admintest.NewSidecar().Serve(addr); err == nil {
			t.Errorf("Serve(%q) succeeded", addr)
		}
	}
}

func TestSidecarLifecycle(t *testing.T) {
	s := admintest.NewSidecar()
	if s.Addr() != "" {
		t.Errorf("Addr before Serve = %q", s.Addr())
	}
	if err := s.Serve("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve("127.0.0.1:0"); err == nil {
		t.Error("second Serve succeeded")
	}
	base := s.URL()
	s.Close()
	s.Close()
	_, err := envoyadmin.NewClient(nil, testTimeout).Probe(context.Background(), base)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after Close: error %v, want connection refused", err)
	}
}

func TestSidecarSetStatePanicsOnTypo(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("SetState(\"Live\") did not panic")
		}
	}()
	admintest.NewSidecar().SetState("Live")
}

// TestSidecarConcurrent is meant for -race: setters and probes at the same time.
func TestSidecarConcurrent(t *testing.T) {
	s := start(t)
	c := envoyadmin.NewClient(nil, 0)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for range 10 {
				if _, err := c.Probe(context.Background(), s.URL()); err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Go(func() {
			for j := range 10 {
				s.SetState([]string{"LIVE", "DRAINING"}[j%2])
				s.SetVersion(strings.Repeat("v", i+j))
				s.SetRejected(uint64(i), uint64(j))
				s.SetClusters(admintest.Cluster{Name: "c", Hosts: j, Healthy: i})
				s.SetCertificate(time.Now().Add(time.Duration(j+1)*time.Hour), "spiffe://cluster.local/ns/a/sa/b")
				s.SetCounter("http.inbound.rbac.denied", uint64(i*j))
				_ = s.Requests()
			}
		})
	}
	wg.Wait()
}
