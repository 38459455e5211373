package envoyadmin

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testTimeout is the per-request timeout of clients that talk to hung servers.
const testTimeout = 200 * time.Millisecond

// newServer starts an httptest server on 127.0.0.1 (never any other address).
func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// sidecar serves recorded fixtures at the status listener's paths and records every request.
// Bodies maps a path to a body that replaces the fixture, and statuses a path to a status code.
type sidecar struct {
	t        *testing.T
	files    map[string]string
	bodies   map[string]string
	statuses map[string]int
	hang     string

	mu       sync.Mutex
	requests []*http.Request
}

func newSidecar(t *testing.T) *sidecar {
	return &sidecar{
		t: t,
		files: map[string]string{
			"/server_info": "server_info.json",
			"/stats":       "stats_filtered.json",
			"/clusters":    "clusters.json",
			"/certs":       "certs.json",
		},
		bodies:   map[string]string{},
		statuses: map[string]int{},
	}
}

func (s *sidecar) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Clone(context.Background()))
	s.mu.Unlock()

	if r.URL.Path == s.hang {
		// The valve only matters if the client ignores its deadline; the body it then gets is not
		// JSON, so such a test still fails, on the error kind rather than by hanging.
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
			_, _ = w.Write([]byte("late"))
		}
		return
	}
	file, ok := s.files[r.URL.Path]
	if r.Method != http.MethodGet || !ok {
		http.NotFound(w, r)
		return
	}
	if code := s.statuses[r.URL.Path]; code != 0 {
		w.WriteHeader(code)
	}
	if body, ok := s.bodies[r.URL.Path]; ok {
		_, _ = w.Write([]byte(body))
		return
	}
	_, _ = w.Write([]byte(fixture(s.t, file)))
}

func (s *sidecar) recorded() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func (s *sidecar) paths() []string {
	var out []string
	for _, r := range s.recorded() {
		out = append(out, r.URL.Path)
	}
	return out
}

var wantFixtureObservation = Observation{
	State:             StateLive,
	EnvoyVersion:      "1.15.0-dev",
	LDSVersion:        "9f2c1e7a",
	CDSVersion:        "9f2c1e7a",
	LDSRejected:       0,
	CDSRejected:       1,
	Clusters:          []ClusterHealth{{Name: "fake_cluster", Hosts: 1}},
	CertificateExpiry: fixtureLeafExpiry,
	Denied:            13,
}

func TestProbeFixtures(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  Observation
	}{
		{name: "recorded outputs", want: wantFixtureObservation},
		{
			name:  "docs server_info and streaming clusters",
			files: map[string]string{"/server_info": "server_info_docs_sample.json", "/clusters": "clusters_streaming_request_test.json"},
			want: Observation{
				State: StateLive, EnvoyVersion: "1.9.0-dev",
				LDSVersion: "9f2c1e7a", CDSVersion: "9f2c1e7a", CDSRejected: 1,
				Clusters:          []ClusterHealth{{Name: "test_cluster", Hosts: 1}},
				CertificateExpiry: fixtureLeafExpiry, Denied: 13,
			},
		},
		{
			name:  "Envoy's stats.json has none of our stats",
			files: map[string]string{"/stats": "stats.json"},
			want: Observation{
				State: StateLive, EnvoyVersion: "1.15.0-dev",
				Clusters:          []ClusterHealth{{Name: "fake_cluster", Hosts: 1}},
				CertificateExpiry: fixtureLeafExpiry,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := newSidecar(t)
			for path, file := range tt.files {
				sc.files[path] = file
			}
			srv := newServer(t, sc)
			got, err := NewClient(nil, 0).Probe(context.Background(), srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestProbeRequestsOnlyFilteredStats(t *testing.T) {
	sc := newSidecar(t)
	srv := newServer(t, sc)
	if _, err := NewClient(nil, 0).Probe(context.Background(), srv.URL+"/"); err != nil {
		t.Fatal(err)
	}
	if got, want := sc.paths(), []string{"/server_info", "/stats", "/clusters", "/certs"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("requested %v, want %v", got, want)
	}
	for _, r := range sc.recorded() {
		if r.Method != http.MethodGet {
			t.Errorf("%s %s, want GET", r.Method, r.URL)
		}
		q := r.URL.Query()
		switch r.URL.Path {
		case "/stats":
			if got := q["filter"]; len(got) != 1 || got[0] != StatsFilter {
				t.Errorf("stats filter = %q, want exactly %q", got, StatsFilter)
			}
			if got := q["format"]; len(got) != 1 || got[0] != "json" {
				t.Errorf("stats format = %q, want json", got)
			}
			if len(q) != 2 {
				t.Errorf("stats query %q has parameters beyond format and filter", r.URL.RawQuery)
			}
		case "/clusters":
			if r.URL.RawQuery != "format=json" {
				t.Errorf("clusters query = %q, want format=json", r.URL.RawQuery)
			}
		case "/server_info", "/certs":
			if r.URL.RawQuery != "" {
				t.Errorf("%s query = %q, want none", r.URL.Path, r.URL.RawQuery)
			}
		}
	}
}

func TestProbeNon200(t *testing.T) {
	for _, path := range []string{"/server_info", "/stats", "/clusters", "/certs"} {
		for _, code := range []int{http.StatusNotFound, http.StatusInternalServerError, http.StatusServiceUnavailable} {
			if path == "/certs" && code == http.StatusNotFound {
				continue // no certificate, see TestProbeCertsNotFound
			}
			t.Run(path+"/"+http.StatusText(code), func(t *testing.T) {
				sc := newSidecar(t)
				sc.statuses[path] = code
				srv := newServer(t, sc)
				_, err := NewClient(nil, 0).Probe(context.Background(), srv.URL)
				var se *StatusError
				if !errors.As(err, &se) {
					t.Fatalf("error %v is not a *StatusError", err)
				}
				if se.Path != path || se.StatusCode != code {
					t.Errorf("got %+v, want path %s status %d", se, path, code)
				}
				if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, http.StatusText(code)) {
					t.Errorf("error %q does not name path and status", msg)
				}
			})
		}
	}
}

// TestProbeCertsNotFound: a status listener without the /certs route (an older sidecar) answers
// 404, which is a sidecar without a certificate, not an unreachable one.
func TestProbeCertsNotFound(t *testing.T) {
	for name, setup := range map[string]func(*sidecar){
		"404 with a body":     func(sc *sidecar) { sc.statuses["/certs"] = http.StatusNotFound; sc.bodies["/certs"] = "no route\n" },
		"no route at all":     func(sc *sidecar) { delete(sc.files, "/certs") },
		"404 with JSON error": func(sc *sidecar) { sc.statuses["/certs"] = http.StatusNotFound; sc.bodies["/certs"] = "{" },
	} {
		t.Run(name, func(t *testing.T) {
			sc := newSidecar(t)
			setup(sc)
			srv := newServer(t, sc)
			c := NewClient(nil, 0)
			got, err := c.Probe(context.Background(), srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			want := wantFixtureObservation
			want.CertificateExpiry = time.Time{}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
			cert, err := c.Certs(context.Background(), srv.URL)
			if err != nil || !reflect.DeepEqual(cert, Certificate{}) {
				t.Errorf("Certs = %+v, %v; want no certificate and no error", cert, err)
			}
		})
	}
}

func TestCerts(t *testing.T) {
	sc := newSidecar(t)
	srv := newServer(t, sc)
	got, err := NewClient(nil, 0).Certs(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Certificate{Expiry: fixtureLeafExpiry, URISANs: []string{fixtureSPIFFEID}}); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := sc.paths(); !reflect.DeepEqual(got, []string{"/certs"}) {
		t.Errorf("requested %v, want only /certs", got)
	}
}

func TestProbeBadBodies(t *testing.T) {
	bodies := []struct {
		name    string
		body    func(path string) string
		wantErr string
		// certsErr replaces wantErr for /certs, which protojson parses.
		certsErr string
	}{
		{"garbage", func(string) string { return "<html>upstream connect error</html>" }, "not a JSON object", ""},
		{"truncated", func(path string) string {
			return map[string]string{
				"/server_info": truncated(t, "server_info.json"),
				"/stats":       truncated(t, "stats_filtered.json"),
				"/clusters":    truncated(t, "clusters.json"),
				"/certs":       truncated(t, "certs.json"),
			}[path]
		}, "unexpected end of JSON input", "unexpected EOF"},
		{"empty", func(string) string { return "" }, "empty body", ""},
		{"oversized", func(string) string { return oversized("{", "}") }, "too large", ""},
	}
	endpoints := map[string]string{"/server_info": "server_info", "/stats": "stats", "/clusters": "clusters", "/certs": "certs"}
	for path, endpoint := range endpoints {
		for _, b := range bodies {
			t.Run(endpoint+"/"+b.name, func(t *testing.T) {
				sc := newSidecar(t)
				sc.bodies[path] = b.body(path)
				srv := newServer(t, sc)
				_, err := NewClient(nil, 0).Probe(context.Background(), srv.URL)
				want := b.wantErr
				if endpoint == "certs" && b.certsErr != "" {
					want = b.certsErr
				}
				checkErr(t, err, want)
				if !strings.Contains(err.Error(), "parse "+endpoint) {
					t.Errorf("error %q does not name %s", err, endpoint)
				}
			})
		}
	}
}

func TestProbeHungServer(t *testing.T) {
	for _, path := range []string{"/server_info", "/stats", "/clusters", "/certs"} {
		t.Run(path, func(t *testing.T) {
			sc := newSidecar(t)
			sc.hang = path
			srv := newServer(t, sc)
			_, err := NewClient(nil, testTimeout).Probe(context.Background(), srv.URL)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("error %v is not a deadline error", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
		})
	}
}

// TestProbeStallMidBody: headers and half a body arrive, then nothing. The deadline must cover
// reading the body, not only the headers.
func TestProbeStallMidBody(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(truncated(t, "server_info.json")))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	_, err := NewClient(nil, testTimeout).Probe(context.Background(), srv.URL)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v is not a deadline error", err)
	}
}

func TestProbeCanceledContext(t *testing.T) {
	sc := newSidecar(t)
	srv := newServer(t, sc)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := NewClient(nil, 0).Probe(ctx, srv.URL)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v is not context.Canceled", err)
	}
}

func TestProbeConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = NewClient(nil, testTimeout).Probe(context.Background(), "http://"+addr)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("error %v is not ECONNREFUSED", err)
	}
	if !strings.Contains(err.Error(), "/server_info") {
		t.Errorf("error %q does not name the path", err)
	}
}

func TestProbeBadBaseURL(t *testing.T) {
	for _, base := range []string{
		"",
		"127.0.0.1:15021",
		"ftp://127.0.0.1:15021",
		"http://",
		"http://127.0.0.1:15021/ready",
		"http://127.0.0.1:15021?x=1",
		"http://127.0.0.1:15021#frag",
		"http://%zz",
	} {
		t.Run(base, func(t *testing.T) {
			_, err := NewClient(nil, testTimeout).Probe(context.Background(), base)
			if err == nil || !strings.Contains(err.Error(), "bad base URL") {
				t.Fatalf("error %v, want a bad base URL error", err)
			}
		})
	}
}

func TestProbeDoesNotFollowRedirects(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	_, err := NewClient(nil, 0).Probe(context.Background(), srv.URL)
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusFound {
		t.Fatalf("error %v, want a 302 StatusError", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(paths, []string{"/server_info"}) {
		t.Errorf("requested %v, want only /server_info", paths)
	}
}

func TestNewClientDefaults(t *testing.T) {
	c := NewClient(nil, 0)
	if c.timeout != DefaultTimeout {
		t.Errorf("timeout = %v, want %v", c.timeout, DefaultTimeout)
	}
	tr, ok := c.httpClient.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport is %T", c.httpClient.Transport)
	}
	if tr.Proxy != nil {
		t.Error("default transport takes a proxy from the environment")
	}
	if tr.MaxIdleConnsPerHost != 1 {
		t.Errorf("MaxIdleConnsPerHost = %d, want 1", tr.MaxIdleConnsPerHost)
	}

	hc := &http.Client{}
	if c := NewClient(hc, time.Second); c.httpClient != hc || c.timeout != time.Second {
		t.Error("NewClient did not keep the caller's http.Client and timeout")
	}
}
