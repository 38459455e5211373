package envoyadmin

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

func TestParseClusters(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []ClusterHealth
		wantErr string
	}{
		{
			// Its one host fails active HC and outlier checks and is pending removal.
			name: "admin.v3.Clusters proto-JSON",
			in:   fixture(t, "clusters.json"),
			want: []ClusterHealth{{Name: "fake_cluster", Hosts: 1}},
		},
		{
			name: "streaming shape with port and bare numbers",
			in:   fixture(t, "clusters_streaming_request_test.json"),
			want: []ClusterHealth{{Name: "test_cluster", Hosts: 1}},
		},
		{name: "no clusters, as protojson omits the empty list", in: `{}`, want: nil},
		{name: "empty list", in: `{"cluster_statuses":[]}`, want: nil},
		{
			name: "cluster without hosts",
			in:   `{"cluster_statuses":[{"name":"local_app","added_via_api":true}]}`,
			want: []ClusterHealth{{Name: "local_app"}},
		},
		{
			name: "sorted by name with mixed health",
			in: `{"cluster_statuses":[
				{"name":"c","host_statuses":[{"health_status":{"eds_health_status":"HEALTHY"}}]},
				{"name":"a","host_statuses":[
					{"health_status":{"eds_health_status":"HEALTHY"}},
					{"health_status":{"eds_health_status":"DEGRADED"}},
					{"health_status":{"eds_health_status":"HEALTHY","failed_outlier_check":true}},
					{"address":{"socket_address":{"address":"127.0.0.1","port_value":80}}}]},
				{"name":"b","host_statuses":[]}]}`,
			want: []ClusterHealth{
				{Name: "a", Hosts: 4, Healthy: 2},
				{Name: "b"},
				{Name: "c", Hosts: 1, Healthy: 1},
			},
		},
		{name: "empty", in: "", wantErr: "empty body"},
		{name: "truncated proto-JSON", in: truncated(t, "clusters.json"), wantErr: "unexpected end of JSON input"},
		{name: "truncated streaming", in: truncated(t, "clusters_streaming_request_test.json"), wantErr: "unexpected end of JSON input"},
		{name: "text format", in: fixtureText, wantErr: "not a JSON object"},
		{name: "null", in: "null", wantErr: "not a JSON object"},
		{name: "array", in: `[{"name":"a"}]`, wantErr: "not a JSON object"},
		{name: "cluster_statuses not a list", in: `{"cluster_statuses":{"name":"a"}}`, wantErr: "cannot unmarshal object"},
		{name: "cluster without name", in: `{"cluster_statuses":[{"name":"a"},{"host_statuses":[]}]}`, wantErr: "cluster_statuses[1] has no name"},
		{name: "host_statuses not a list", in: `{"cluster_statuses":[{"name":"a","host_statuses":{}}]}`, wantErr: "cannot unmarshal object"},
		{name: "flag not a bool", in: `{"cluster_statuses":[{"name":"a","host_statuses":[{"health_status":{"failed_outlier_check":"yes"}}]}]}`, wantErr: "cannot unmarshal string"},
		{name: "eds status of the wrong type", in: `{"cluster_statuses":[{"name":"a","host_statuses":[{"health_status":{"eds_health_status":true}}]}]}`, wantErr: "eds_health_status: neither a name nor a number"},
		{name: "oversized", in: oversized(`{"cluster_statuses":[`, "]}"), wantErr: "too large"},
		{name: "exactly the cap", in: exactlyMax(`{"cluster_statuses":[{"name":"a"}`, "]}"), want: []ClusterHealth{{Name: "a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseClusters(strings.NewReader(tt.in))
			if checkErr(t, err, tt.wantErr) && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// fixtureText is the start of Envoy's text /clusters answer (clusters.txt), what a client that
// forgot format=json would get.
const fixtureText = "fake_cluster::observability_name::observability_name\nfake_cluster::outlier::success_rate_average::0\n"

// TestHostHealth classifies one host by its health_status object.
func TestHostHealth(t *testing.T) {
	const (
		healthy   = "healthy"
		degraded  = "degraded"
		unhealthy = "unhealthy"
	)
	tests := []struct {
		healthStatus string
		want         string
	}{
		{``, healthy},
		{`{}`, healthy},
		{`{"eds_health_status":"HEALTHY"}`, healthy},
		{`{"eds_health_status":"UNKNOWN"}`, healthy},
		{`{"eds_health_status":null}`, healthy},
		{`{"eds_health_status":"HEALTHY","failed_active_health_check":false,"failed_outlier_check":false,"failed_active_degraded_check":false,"pending_dynamic_removal":false,"pending_active_hc":false,"excluded_via_immediate_hc_fail":false,"active_hc_timeout":false,"failed_degraded_outlier_detection":false}`, healthy},
		{`{"pending_active_hc":true}`, healthy},
		{`{"eds_health_status":1}`, healthy},
		{`{"failed_active_health_check":true}`, unhealthy},
		{`{"failed_active_health_check":true,"pending_active_hc":true}`, unhealthy},
		{`{"failed_outlier_check":true}`, unhealthy},
		{`{"pending_dynamic_removal":true}`, unhealthy},
		{`{"excluded_via_immediate_hc_fail":true}`, unhealthy},
		{`{"active_hc_timeout":true}`, unhealthy},
		{`{"eds_health_status":"UNHEALTHY"}`, unhealthy},
		{`{"eds_health_status":"DRAINING"}`, unhealthy},
		{`{"eds_health_status":"TIMEOUT"}`, unhealthy},
		{`{"eds_health_status":2}`, unhealthy},
		{`{"eds_health_status":"SOMETHING_NEW"}`, unhealthy},
		{`{"eds_health_status":42}`, unhealthy},
		{`{"eds_health_status":-1}`, unhealthy},
		{`{"eds_health_status":"DEGRADED"}`, degraded},
		{`{"eds_health_status":5}`, degraded},
		{`{"failed_active_degraded_check":true}`, degraded},
		{`{"failed_degraded_outlier_detection":true}`, degraded},
		{`{"eds_health_status":"HEALTHY","failed_active_degraded_check":true}`, degraded},
		{`{"eds_health_status":"DEGRADED","failed_outlier_check":true}`, unhealthy},
		{`{"eds_health_status":"DRAINING","failed_active_degraded_check":true}`, unhealthy},
	}
	for _, tt := range tests {
		t.Run(tt.healthStatus, func(t *testing.T) {
			host := `{}`
			if tt.healthStatus != "" {
				host = `{"health_status":` + tt.healthStatus + `}`
			}
			var hs hostStatusJSON
			if err := json.Unmarshal([]byte(host), &hs); err != nil {
				t.Fatal(err)
			}
			class := map[hostHealth]string{hostHealthy: healthy, hostDegraded: degraded, hostUnhealthy: unhealthy}[hs.HealthStatus.health()]
			if class != tt.want {
				t.Errorf("host is %s, want %s", class, tt.want)
			}

			// ParseClusters counts the host as healthy only when it is healthy: a degraded host
			// takes traffic only when too few healthy ones are left.
			got, err := ParseClusters(strings.NewReader(`{"cluster_statuses":[{"name":"a","host_statuses":[` + host + `]}]}`))
			if err != nil {
				t.Fatal(err)
			}
			want := ClusterHealth{Name: "a", Hosts: 1}
			if tt.want == healthy {
				want.Healthy = 1
			}
			if len(got) != 1 || got[0] != want {
				t.Errorf("ParseClusters = %+v, want [%+v]", got, want)
			}
		})
	}
}

// TestEDSHealthMatchesEnvoyEnum guards the names and numbers of eds_health_status.
func TestEDSHealthMatchesEnvoyEnum(t *testing.T) {
	if len(edsHealthNames) != len(corev3.HealthStatus_value) {
		t.Fatalf("%d names, Envoy has %d", len(edsHealthNames), len(corev3.HealthStatus_value))
	}
	for name, n := range corev3.HealthStatus_value {
		if got, ok := edsHealthNames[name]; !ok || int32(got) != n {
			t.Errorf("%s: have %d (known %v), Envoy says %d", name, got, ok, n)
		}
	}
}
