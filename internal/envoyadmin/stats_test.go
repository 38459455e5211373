package envoyadmin

import (
	"encoding/json"
	"regexp"
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
			want: Stats{
				LDS: XDSStats{VersionText: "9f2c1e7a", UpdateRejected: 0},
				CDS: XDSStats{VersionText: "9f2c1e7a", UpdateRejected: 1},
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

// statNames are the stats ParseStats reads; the filter must select exactly these.
var statNames = []string{
	"listener_manager.lds.version_text",
	"listener_manager.lds.update_rejected",
	"cluster_manager.cds.version_text",
	"cluster_manager.cds.update_rejected",
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
		"",
	} {
		if re.MatchString(name) {
			t.Errorf("filter matches %q", name)
		}
	}
}

// TestStatsFilterFixture ties the filter to the recorded shape: every stat in the filtered fixture
// is selected by the filter, and it holds all the names ParseStats reads.
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
		if !seen[name] {
			t.Errorf("fixture lacks %q", name)
		}
	}
}
