package envoyconfig

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// hostsGatewayMesh routes by host and by path segment: routes without a host
// (/, /api, /static/), two for api.example.com and one for a wildcard host with
// a port; the api target speaks GRPC, so its routes carry no timeout.
func hostsGatewayMesh() (*v1alpha1.ServiceMesh, []*v1alpha1.MeshService) {
	mesh := &v1alpha1.ServiceMesh{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default"},
		Spec: v1alpha1.ServiceMeshSpec{Gateway: &v1alpha1.Gateway{
			Enabled: true,
			Port:    80,
			Routes: []v1alpha1.GatewayRoute{
				{Prefix: "/", Service: "web"},
				{Prefix: "/api", Service: "api"},
				{Prefix: "/static/", Service: "web"},
				{Prefix: "/v1", Host: "api.example.com", Service: "api"},
				{Prefix: "/", Host: "api.example.com", Service: "web"},
				{Prefix: "/admin", Host: "*.example.com:8080", Service: "web"},
			},
		}},
	}
	return mesh, []*v1alpha1.MeshService{
		meshService("shop", "web", 8080, 15006, v1alpha1.ProtocolHTTP),
		meshService("shop", "api", 9000, 15006, v1alpha1.ProtocolGRPC),
	}
}

func TestGoldenGatewayHosts(t *testing.T) {
	mesh, mss := hostsGatewayMesh()
	checkGoldenOutput(t, "gateway-hosts", buildGateway(t, GatewayFor(mesh, foundMap(mss...))))
}

// matchOf is a route's match as "prefix:<p>" or "segment:<p>".
func matchOf(r *routev3.Route) string {
	if p := r.GetMatch().GetPathSeparatedPrefix(); p != "" {
		return "segment:" + p
	}
	return "prefix:" + r.GetMatch().GetPrefix()
}

func TestGatewayVirtualHosts(t *testing.T) {
	mesh, mss := hostsGatewayMesh()
	out := buildGateway(t, GatewayFor(mesh, foundMap(mss...)))
	_, listeners := parseListeners(t, out.Listeners)
	hcm := hcmOf(t, listenerNamed(t, listeners, gatewayListenerName))
	type vhost struct {
		name, domain string
		matches      []string
	}
	var got []vhost
	for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
		v := vhost{name: vh.Name, domain: strings.Join(vh.Domains, ",")}
		for _, r := range vh.Routes {
			v.matches = append(v.matches, matchOf(r))
		}
		got = append(got, v)
	}
	want := []vhost{
		// A host without "/" gets the 404 catch-all: it does not fall back to "*".
		{"gateway_*.example.com:8080", "*.example.com:8080", []string{"segment:/admin", "prefix:/"}},
		{"gateway_api.example.com", "api.example.com", []string{"segment:/v1", "prefix:/"}},
		// "/static/" ends in "/": a plain prefix, already at a segment boundary.
		{"gateway", "*", []string{"prefix:/static/", "segment:/api", "prefix:/"}},
	}
	if len(got) != len(want) {
		t.Fatalf("virtual hosts %v, want %v", got, want)
	}
	for i := range want {
		if got[i].name != want[i].name || got[i].domain != want[i].domain || !slices.Equal(got[i].matches, want[i].matches) {
			t.Errorf("virtual host %d: %v, want %v", i, got[i], want[i])
		}
	}
	wildcard := hcm.GetRouteConfig().GetVirtualHosts()[0]
	if s := wildcard.Routes[1].GetDirectResponse().GetStatus(); s != 404 {
		t.Errorf("host without / answers unmatched paths with %d, want 404", s)
	}
	if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() {
		t.Errorf("normalize_path %v, merge_slashes %v; want both", hcm.GetNormalizePath(), hcm.GetMergeSlashes())
	}
	// The GRPC target's routes have no timeout; the HTTP target's keep Envoy's default.
	for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
		for _, r := range vh.Routes {
			switch r.GetRoute().GetCluster() {
			case "out.api.shop":
				if tm := r.GetRoute().GetTimeout(); tm == nil || tm.AsDuration() != 0 {
					t.Errorf("route %s to the GRPC target: timeout %v, want 0s", matchOf(r), tm)
				}
			case "out.web.shop":
				if tm := r.GetRoute().GetTimeout(); tm != nil {
					t.Errorf("route %s to the HTTP target: timeout %v, want unset", matchOf(r), tm)
				}
			}
		}
	}
}

func TestCheckGatewayPrefixesAndHosts(t *testing.T) {
	route := func(host, prefix string) GatewayRoute {
		return GatewayRoute{Prefix: prefix, Host: host, Name: "a", Namespace: "ns", Target: httpTarget(80)}
	}
	tests := []struct {
		name   string
		routes []GatewayRoute
		want   string // "" when valid
	}{
		{"same prefix on two hosts", []GatewayRoute{route("", "/api"), route("a.example.com", "/api")}, ""},
		{"wildcard host with port", []GatewayRoute{route("*.example.com:8443", "/")}, ""},
		{"query in prefix", []GatewayRoute{route("", "/api?x=1")}, "must not contain ? or #"},
		{"fragment in prefix", []GatewayRoute{route("", "/api#top")}, "must not contain ? or #"},
		{"prefix twice on a host", []GatewayRoute{route("a.example.com", "/api"), route("a.example.com", "/api")}, "listed twice"},
		{"uppercase host", []GatewayRoute{route("A.example.com", "/")}, "host must be"},
		{"bare wildcard host", []GatewayRoute{route("*", "/")}, "host must be"},
		{"inner wildcard", []GatewayRoute{route("a.*.com", "/")}, "host must be"},
		{"host with a path", []GatewayRoute{route("a.example.com/x", "/")}, "host must be"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BuildGateway(Gateway{Name: "m", Namespace: "ns", ListenPort: GatewayListenPort, Routes: tc.routes}, Options{ClusterDomain: "cluster.local"})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("BuildGateway: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestWebSocketUpgrades: every listener that proxies application traffic takes
// WebSocket upgrades; the status listener in the bootstrap does not.
func TestWebSocketUpgrades(t *testing.T) {
	caller, found, mesh := featureMesh()
	out := build(t, ServiceFor(caller, found, mesh))
	gmesh, mss := hostsGatewayMesh()
	gw := buildGateway(t, GatewayFor(gmesh, foundMap(mss...)))
	for _, o := range []*Output{out, gw} {
		_, listeners := parseListeners(t, o.Listeners)
		for _, l := range listeners {
			for _, fc := range append(l.FilterChains, l.DefaultFilterChain) {
				for _, f := range fc.GetFilters() {
					if f.Name != hcmFilterName {
						continue
					}
					hcm := &hcmv3.HttpConnectionManager{}
					if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
						t.Fatalf("listener %q: %v", l.Name, err)
					}
					if ups := hcm.GetUpgradeConfigs(); len(ups) != 1 || ups[0].UpgradeType != "websocket" {
						t.Errorf("listener %q: upgrade_configs %v, want websocket", l.Name, ups)
					}
				}
			}
		}
		if bytes.Contains(o.Bootstrap, []byte("upgrade")) {
			t.Error("the bootstrap's status listener takes upgrades; want none")
		}
	}
}
