package envoyconfig

import (
	"net/url"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
)

func TestBootstrap(t *testing.T) {
	b, err := Bootstrap("svc.ns", "svc", FileDelivery())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&corev3.Node{Id: "svc.ns", Cluster: "svc"}, b.Node, protocmp.Transform()); diff != "" {
		t.Errorf("node (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(socketAddress("127.0.0.1", 9901), b.Admin.GetAddress(), protocmp.Transform()); diff != "" {
		t.Errorf("admin address must be loopback only (-want +got):\n%s", diff)
	}
	for name, tc := range map[string]struct {
		got  *corev3.ConfigSource
		path string
	}{
		"lds_config": {b.DynamicResources.GetLdsConfig(), "/etc/envoy/lds.yaml"},
		"cds_config": {b.DynamicResources.GetCdsConfig(), "/etc/envoy/cds.yaml"},
	} {
		want := &corev3.ConfigSource{
			ResourceApiVersion: corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{
				Path:             tc.path,
				WatchedDirectory: &corev3.WatchedDirectory{Path: "/etc/envoy"},
			}},
		}
		if diff := cmp.Diff(want, tc.got, protocmp.Transform()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}

	static := b.StaticResources
	if len(static.GetListeners()) != 1 || len(static.GetClusters()) != 1 {
		t.Fatalf("want exactly the status listener and the admin cluster, got %d listeners, %d clusters",
			len(static.GetListeners()), len(static.GetClusters()))
	}
	if host, port := socketOf(static.Listeners[0]); host != "0.0.0.0" || port != StatusPort {
		t.Errorf("status listener on %s:%d, want 0.0.0.0:%d", host, port, StatusPort)
	}
	admin := static.Clusters[0]
	if admin.Name != adminClusterName {
		t.Errorf("static cluster %q, want %q", admin.Name, adminClusterName)
	}
	if host, port := endpointOf(t, admin); host != "127.0.0.1" || port != AdminPort {
		t.Errorf("admin cluster endpoint %s:%d, want 127.0.0.1:%d", host, port, AdminPort)
	}
}

// statusRoute is a tiny model of Envoy's route matching, enough for the status
// listener: the first route whose exact path or prefix and :method header match
// wins, and the query string is ignored. It fails the test on any matcher it does
// not understand, so a new kind of route cannot slip past it.
func statusRoute(t *testing.T, routes []*routev3.Route, method, target string) *routev3.Route {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		m := r.GetMatch()
		if m.GetCaseSensitive() != nil || len(m.GetQueryParameters()) > 0 || m.GetRuntimeFraction() != nil || m.GetGrpc() != nil {
			t.Fatalf("route %v uses a matcher the test does not model", m)
		}
		var pathOK bool
		switch ps := m.PathSpecifier.(type) {
		case *routev3.RouteMatch_Path:
			pathOK = u.Path == ps.Path
		case *routev3.RouteMatch_Prefix:
			pathOK = len(u.Path) >= len(ps.Prefix) && u.Path[:len(ps.Prefix)] == ps.Prefix
		default:
			t.Fatalf("route uses path specifier %T, which the test does not model", ps)
		}
		methodOK := true
		for _, h := range m.GetHeaders() {
			if h.Name != ":method" || h.InvertMatch || h.GetStringMatch().GetExact() == "" {
				t.Fatalf("route uses header matcher %v, which the test does not model", h)
			}
			methodOK = methodOK && method == h.GetStringMatch().GetExact()
		}
		if pathOK && methodOK {
			return r
		}
	}
	return nil
}

func TestStatusListenerRoutes(t *testing.T) {
	out := build(t, Service{Name: "a", Namespace: "ns", Port: 8080, ServicePort: 15006})
	boot := parseBootstrap(t, out.Bootstrap)
	if addr := boot.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); addr != "127.0.0.1" {
		t.Fatalf("admin listens on %q, want 127.0.0.1", addr)
	}
	if len(boot.GetStaticResources().GetListeners()) != 1 {
		t.Fatalf("want one static listener, got %d", len(boot.GetStaticResources().GetListeners()))
	}
	status := boot.StaticResources.Listeners[0]
	routes := onlyRoutes(t, hcmOf(t, status))

	tests := []struct {
		method, target string
		allowed        bool
	}{
		{"GET", "/ready", true},
		{"GET", "/server_info", true},
		{"GET", "/stats", true},
		{"GET", "/stats?format=json&filter=x", true},
		{"GET", "/stats?filter=^listener_manager\\.lds\\.", true},
		{"GET", "/clusters", true},
		{"GET", "/clusters?format=json", true},
		{"GET", "/quitquitquit", false},
		{"POST", "/quitquitquit", false},
		{"GET", "/config_dump", false},
		{"GET", "/logging", false},
		{"POST", "/logging?level=trace", false},
		{"POST", "/runtime_modify", false},
		{"POST", "/drain_listeners", false},
		{"POST", "/healthcheck/fail", false},
		{"POST", "/reset_counters", false},
		{"GET", "/", false},
		{"GET", "/ready/", false},
		{"GET", "/readyz", false},
		{"GET", "/READY", false},
		{"GET", "/stats/prometheus", true},
		{"GET", "/stats/prometheus?usedonly", true},
		{"GET", "/stats/prometheus/", false},
		{"POST", "/stats/prometheus", false},
		{"GET", "/stats/", false},
		{"GET", "/stats/recentlookups", false},
		{"GET", "/certs", true},
		{"GET", "/certs?format=json", true},
		{"GET", "/certs/", false},
		{"POST", "/certs", false},
		{"POST", "/ready", false},
		{"HEAD", "/ready", false},
		{"DELETE", "/clusters", false},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			r := statusRoute(t, routes, tc.method, tc.target)
			if r == nil {
				t.Fatal("no route matched; the status routes must end with a catch-all 404")
			}
			if tc.allowed {
				if got := r.GetRoute().GetCluster(); got != adminClusterName {
					t.Errorf("routed to %q (direct response %v), want cluster %q", got, r.GetDirectResponse(), adminClusterName)
				}
				return
			}
			if r.GetRoute() != nil {
				t.Fatalf("reaches cluster %q, want 404", r.GetRoute().GetCluster())
			}
			if got := r.GetDirectResponse().GetStatus(); got != 404 {
				t.Errorf("direct response %d, want 404", got)
			}
		})
	}
}
