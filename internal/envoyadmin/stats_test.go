package envoyadmin

import (
	"encoding/json"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestParseStats(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Stats
		wantErr string
	}{
		{
			name: "filtered answer",
			in:   fixture(t, "stats_filtered.json"),
			// An HTTP service in Enforce mode: 7 403s from the RBAC filter, 6 failed handshakes.
			want: Stats{
				LDS:    XDSStats{VersionText: "9f2c1e7a", UpdateRejected: 0},
				CDS:    XDSStats{VersionText: "9f2c1e7a", UpdateRejected: 1},
				Denied: 13,
			},
		},
		{
			// Envoy's own expectation: a text readout, counters and the histograms element, none of
			// them ours. It must parse, skipping all of it.
			name: "Envoy stats.json with no matching names",
			in:   fixture(t, "stats.json"),
			want: Stats{},
		},
		{name: "no stats at all", in: `{"stats":[]}`, want: Stats{}},
		{
			name: "quoted counter as proto-JSON writes uint64",
			in:   `{"stats":[{"name":"listener_manager.lds.update_rejected","value":"18446744073709551615"}]}`,
			want: Stats{LDS: XDSStats{UpdateRejected: 18446744073709551615}},
		},
		{
			name: "empty version_text before the first update",
			in:   `{"stats":[{"name":"cluster_manager.cds.version_text","value":""},{"name":"cluster_manager.cds.update_rejected","value":0}]}`,
			want: Stats{},
		},
		{
			name: "names the filter excludes are ignored",
			in: `{"stats":[{"name":"cluster_manager.cds.update_failure","value":"not a number"},` +
				`{"name":"cluster_manager.cds.version","value":123},{"name":"server.state_x","value":"x"},` +
				`{"name":"listener_manager.lds.update_time","value":17},` +
				// Envoy's other LDS/CDS counters and the server.state gauge: the filter no longer
				// asks for them, and an Envoy that sends them anyway is not wrong.
				`{"name":"server.state","value":"LIVE"},{"name":"listener_manager.lds.update_success","value":-1},` +
				`{"name":"cluster_manager.cds.update_attempt","value":1.5}]}`,
			want: Stats{},
		},
		{
			name: "unknown elements are skipped",
			in:   `{"stats":[{"histograms":[]},{"other":1},{"name":"listener_manager.lds.update_rejected","value":2}],"extra":true}`,
			want: Stats{LDS: XDSStats{UpdateRejected: 2}},
		},
		{
			name: "TCP service: network RBAC filter and handshakes",
			in: `{"stats":[{"name":"inbound.rbac.denied","value":4},{"name":"inbound.rbac.shadow_denied","value":0},` +
				`{"name":"listener.inbound.ssl.fail_verify_san","value":2},{"name":"listener.inbound.ssl.fail_verify_cert_hash","value":1}]}`,
			want: Stats{Denied: 7},
		},
		{
			name: "Audit mode: shadow denials of both filters",
			in: `{"stats":[{"name":"http.inbound.rbac.denied","value":0},{"name":"http.inbound.rbac.shadow_denied","value":5},` +
				`{"name":"inbound.rbac.shadow_denied","value":"6"}]}`,
			want: Stats{AuditDenied: 11},
		},
		{
			name: "every denial counter adds up",
			in: `{"stats":[{"name":"http.inbound.rbac.denied","value":1},{"name":"inbound.rbac.denied","value":2},` +
				`{"name":"listener.inbound.ssl.fail_verify_no_cert","value":4},{"name":"listener.inbound.ssl.fail_verify_error","value":8},` +
				`{"name":"listener.inbound.ssl.fail_verify_san","value":16},{"name":"listener.inbound.ssl.fail_verify_cert_hash","value":32},` +
				`{"name":"listener.inbound.ssl.connection_error","value":64},` +
				`{"name":"http.inbound.rbac.shadow_denied","value":128},{"name":"inbound.rbac.shadow_denied","value":256}]}`,
			want: Stats{Denied: 127, AuditDenied: 384},
		},
		{
			name: "the sum saturates instead of wrapping",
			in: `{"stats":[{"name":"http.inbound.rbac.denied","value":18446744073709551615},` +
				`{"name":"listener.inbound.ssl.connection_error","value":2}]}`,
			want: Stats{Denied: math.MaxUint64},
		},
		{
			name: "neighbours of the denial counters are ignored",
			in: `{"stats":[{"name":"http.inbound.rbac.allowed","value":"x"},{"name":"http.inbound.rbac.shadow_allowed","value":"x"},` +
				`{"name":"listener.inbound.ssl.handshake","value":"x"},{"name":"listener.inbound.ssl.no_certificate","value":"x"},` +
				`{"name":"http.inbound.rbac.policy.cart.denied","value":"x"},{"name":"http.egress_b_shop.rbac.denied","value":"x"},` +
				`{"name":"cluster.out.b.shop.ssl.fail_verify_san","value":"x"},{"name":"listener.admin.ssl.connection_error","value":"x"},` +
				`{"name":"inbound.rbac.denied_x","value":"x"}]}`,
			want: Stats{},
		},
		{name: "empty", in: "", wantErr: "empty body"},
		{name: "truncated", in: truncated(t, "stats_filtered.json"), wantErr: "unexpected end of JSON input"},
		{name: "truncated Envoy stats.json", in: truncated(t, "stats.json"), wantErr: "unexpected end of JSON input"},
		{name: "garbage", in: "listener_manager.lds.update_rejected: 1\n", wantErr: "not a JSON object"},
		{name: "null", in: "null", wantErr: "not a JSON object"},
		{name: "no stats array", in: `{}`, wantErr: `no "stats" array`},
		{name: "stats is not an array", in: `{"stats":{}}`, wantErr: "cannot unmarshal object"},
		{name: "text readout as a number", in: `{"stats":[{"name":"listener_manager.lds.version_text","value":7}]}`, wantErr: "listener_manager.lds.version_text: text readout is not a string"},
		{name: "negative counter", in: `{"stats":[{"name":"cluster_manager.cds.update_rejected","value":-1}]}`, wantErr: "cluster_manager.cds.update_rejected: not a non-negative integer"},
		{name: "fractional counter", in: `{"stats":[{"name":"cluster_manager.cds.update_rejected","value":1.5}]}`, wantErr: "not a non-negative integer"},
		{name: "counter as a word", in: `{"stats":[{"name":"listener_manager.lds.update_rejected","value":"many"}]}`, wantErr: "not a non-negative integer"},
		{name: "counter without value", in: `{"stats":[{"name":"listener_manager.lds.update_rejected"}]}`, wantErr: "no value"},
		{name: "text readout without value", in: `{"stats":[{"name":"listener_manager.lds.version_text"}]}`, wantErr: "no value"},
		{name: "negative denial counter", in: `{"stats":[{"name":"http.inbound.rbac.denied","value":-1}]}`, wantErr: "http.inbound.rbac.denied: not a non-negative integer"},
		{name: "shadow counter as a word", in: `{"stats":[{"name":"inbound.rbac.shadow_denied","value":"some"}]}`, wantErr: "inbound.rbac.shadow_denied: not a non-negative integer"},
		{name: "handshake counter without value", in: `{"stats":[{"name":"listener.inbound.ssl.connection_error"}]}`, wantErr: "listener.inbound.ssl.connection_error: no value"},
		{name: "oversized", in: oversized(`{"stats":[`, "]}"), wantErr: "too large"},
		{name: "exactly the cap", in: exactlyMax(`{"stats":[{"name":"cluster_manager.cds.update_rejected","value":1}`, "]}"), want: Stats{CDS: XDSStats{UpdateRejected: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStats(strings.NewReader(tt.in))
			if checkErr(t, err, tt.wantErr) && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// statNames are the stats ParseStats reads; the filter must select exactly these. They are spelled
// out here rather than taken from deniedStats and auditDeniedStats so that a typo on either side
// fails a test.
var statNames = []string{
	"listener_manager.lds.version_text",
	"listener_manager.lds.update_rejected",
	"cluster_manager.cds.version_text",
	"cluster_manager.cds.update_rejected",
	"http.inbound.rbac.denied",
	"http.inbound.rbac.shadow_denied",
	"inbound.rbac.denied",
	"inbound.rbac.shadow_denied",
	"listener.inbound.ssl.fail_verify_no_cert",
	"listener.inbound.ssl.fail_verify_error",
	"listener.inbound.ssl.fail_verify_san",
	"listener.inbound.ssl.fail_verify_cert_hash",
	"listener.inbound.ssl.connection_error",
}

// TestStatNamesAreWhatParseStatsSums ties statNames to the lists ParseStats sums.
func TestStatNamesAreWhatParseStatsSums(t *testing.T) {
	want := append(slices.Clone(deniedStats), auditDeniedStats...)
	got := slices.DeleteFunc(slices.Clone(statNames), func(n string) bool {
		return strings.HasPrefix(n, ldsPrefix) || strings.HasPrefix(n, cdsPrefix)
	})
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("denial counters %v, ParseStats sums %v", got, want)
	}
}

// TestStatsFilter checks StatsFilter as Envoy applies it: RE2 (which Go's regexp implements)
// matched anywhere in the name, so the anchors matter.
func TestStatsFilter(t *testing.T) {
	re, err := regexp.Compile(StatsFilter)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range statNames {
		if !re.MatchString(name) {
			t.Errorf("filter does not match %q", name)
		}
	}
	for _, name := range []string{
		"cluster_manager.cds.foo",
		// Stats nothing reads: the server state comes from /server_info.
		"server.state",
		"listener_manager.lds.update_success",
		"listener_manager.lds.update_attempt",
		"cluster_manager.cds.update_success",
		"cluster_manager.cds.update_attempt",
		"cluster_manager.cds.update_failure",
		"cluster_manager.cds.update_time",
		"cluster_manager.cds.update_duration",
		"cluster_manager.cds.version",
		"cluster_manager.cds.init_fetch_timeout",
		"cluster_manager.cds.update_rejected_x",
		"cluster_manager.lds.update_rejected",
		"listener_manager.cds.update_rejected",
		"listener_manager.lds.version_text.x",
		"xlistener_manager.lds.version_text",
		"listener_manager_lds_version_text",
		"listener_manager.lds.update_rejected ",
		"cluster.cds.update_rejected",
		"server.state_x",
		"server_state",
		"server.stats_recent_lookups",
		"server.live",
		"http.admin.downstream_rq_total",
		// Neighbours of the denial counters: what was allowed, per-policy counters, other
		// listeners' and HCMs' RBAC and TLS stats, upstream TLS, and near misses.
		"http.inbound.rbac.allowed",
		"http.inbound.rbac.shadow_allowed",
		"http.inbound.rbac.policy.cart.denied",
		"http.inbound.rbac.denied.x",
		"http.inbound.rbac.shadow_denied_x",
		"xhttp.inbound.rbac.denied",
		"http.egress_b_shop.rbac.denied",
		"http.admin.rbac.denied",
		"http.inbound.denied",
		"http..inbound.rbac.denied",
		"inbound.rbac.allowed",
		"inbound.rbac.shadow_allowed",
		"inbound.rbac.policy.cart.denied",
		"ninbound.rbac.denied",
		"inbound.rbac.denied_x",
		"inboundrbac.denied",
		"egress_b_shop.rbac.denied",
		"http.inbound.rbac.shadow_shadow_denied",
		"listener.inbound.ssl.handshake",
		"listener.inbound.ssl.no_certificate",
		"listener.inbound.ssl.session_reused",
		"listener.inbound.ssl.fail_verify",
		"listener.inbound.ssl.fail_verify_san_x",
		"listener.inbound.ssl.ocsp_staple_failed",
		"listener.inbound.ssl.ciphers.TLS_AES_128_GCM_SHA256",
		"listener.inbound.ssl.connection_error.x",
		"listener.0.0.0.0_8786.ssl.fail_verify_san",
		"listener.admin.ssl.connection_error",
		"listener.inbound.downstream_cx_total",
		"cluster.out.b.shop.ssl.fail_verify_san",
		"cluster.out.b.shop.ssl.connection_error",
		"http.listener.inbound.ssl.connection_error",
		"inbound.ssl.connection_error",
		"",
	} {
		if re.MatchString(name) {
			t.Errorf("filter matches %q", name)
		}
	}
}

// TestStatsFilterFixture ties the filter to the fixture's shape: every stat in the filtered fixture
// is selected by the filter, and it holds all the names ParseStats reads but the network RBAC
// filter's (the fixture is an HTTP service's; a TCP service's has inbound.rbac.* instead of
// http.inbound.rbac.*).
func TestStatsFilterFixture(t *testing.T) {
	re := regexp.MustCompile(StatsFilter)
	var in struct {
		Stats []struct {
			Name string `json:"name"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(fixture(t, "stats_filtered.json")), &in); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, st := range in.Stats {
		if st.Name == "" {
			continue
		}
		if !re.MatchString(st.Name) {
			t.Errorf("fixture stat %q is not selected by the filter", st.Name)
		}
		seen[st.Name] = true
	}
	for _, name := range statNames {
		if !seen[name] && !strings.HasPrefix(name, "inbound.rbac.") {
			t.Errorf("fixture lacks %q", name)
		}
	}
}
