package envoyconfig

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

func TestInboundListener(t *testing.T) {
	for _, p := range []v1alpha1.Protocol{"", v1alpha1.ProtocolHTTP, v1alpha1.ProtocolHTTP2, v1alpha1.ProtocolGRPC, v1alpha1.ProtocolTCP} {
		t.Run(string(p), func(t *testing.T) {
			l, err := inboundListener(Service{Name: "a", Namespace: "ns", Port: 8080, ServicePort: 15006, Protocol: p}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if host, port := socketOf(l); host != "0.0.0.0" || port != 15006 {
				t.Errorf("listens on %s:%d, want 0.0.0.0:15006", host, port)
			}
			if p == v1alpha1.ProtocolTCP {
				if got := tcpProxyOf(t, l).GetCluster(); got != localAppClusterName {
					t.Errorf("tcp_proxy to %q, want %q", got, localAppClusterName)
				}
				return
			}
			hcm := hcmOf(t, l)
			if hcm.StatPrefix != "inbound" {
				t.Errorf("stat_prefix %q, want inbound", hcm.StatPrefix)
			}
			if n := len(hcm.HttpFilters); n != 1 || hcm.HttpFilters[0].Name != routerFilterName {
				t.Errorf("http_filters %v, want only the router", hcm.HttpFilters)
			}
			want := []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: localAppClusterName},
					Timeout:          durationpb.New(0),
				}},
			}}
			if diff := cmp.Diff(want, onlyRoutes(t, hcm), protocmp.Transform()); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEgressListener(t *testing.T) {
	routesTo := func(action *routev3.RouteAction) []*routev3.Route {
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: "out.b.other"}
		return []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: action},
		}}
	}
	tests := []struct {
		name   string
		target *Target
		want   []*routev3.Route // nil for TCP targets
	}{
		{
			name:   "HTTP without policy",
			target: &Target{ServicePort: 80, Protocol: v1alpha1.ProtocolHTTP, Traffic: MergeTraffic()},
			want:   routesTo(&routev3.RouteAction{}),
		},
		{
			name: "HTTP with timeout and retries",
			target: &Target{ServicePort: 80, Protocol: v1alpha1.ProtocolHTTP, Traffic: MergeTraffic(&v1alpha1.TrafficPolicy{
				Timeout: tmo("2s"),
				Retries: &v1alpha1.RetryPolicy{Attempts: i32(3), PerTryTimeout: dur("500ms"), RetryOn: "gateway-error"},
			})},
			want: routesTo(&routev3.RouteAction{
				Timeout: durationpb.New(2e9),
				RetryPolicy: &routev3.RetryPolicy{
					RetryOn: "gateway-error", NumRetries: wrapperspb.UInt32(3), PerTryTimeout: durationpb.New(5e8),
				},
			}),
		},
		{
			name: "retries with nothing set use the default conditions",
			target: &Target{ServicePort: 80, Protocol: v1alpha1.ProtocolHTTP, Traffic: MergeTraffic(&v1alpha1.TrafficPolicy{
				Retries: &v1alpha1.RetryPolicy{},
			})},
			want: routesTo(&routev3.RouteAction{RetryPolicy: &routev3.RetryPolicy{RetryOn: defaultRetryOn}}),
		},
		{
			name: "zero attempts disable retries explicitly",
			target: &Target{ServicePort: 80, Protocol: v1alpha1.ProtocolHTTP2, Traffic: MergeTraffic(&v1alpha1.TrafficPolicy{
				Retries: &v1alpha1.RetryPolicy{Attempts: i32(0)},
			})},
			// HTTP2 without a timeout gets none, so long streams live.
			want: routesTo(&routev3.RouteAction{Timeout: durationpb.New(0), RetryPolicy: &routev3.RetryPolicy{RetryOn: defaultRetryOn, NumRetries: wrapperspb.UInt32(0)}}),
		},
		{
			name:   "GRPC without a timeout gets none",
			target: &Target{ServicePort: 80, Protocol: v1alpha1.ProtocolGRPC, Traffic: MergeTraffic()},
			want:   routesTo(&routev3.RouteAction{Timeout: durationpb.New(0)}),
		},
		{
			name:   "HTTP with timeout 0s has none, explicitly",
			target: &Target{ServicePort: 80, Protocol: v1alpha1.ProtocolHTTP, Traffic: MergeTraffic(&v1alpha1.TrafficPolicy{Timeout: tmo("0s")})},
			want:   routesTo(&routev3.RouteAction{Timeout: durationpb.New(0)}),
		},
		{
			name:   "GRPC uses the HTTP connection manager",
			target: &Target{ServicePort: 80, Protocol: v1alpha1.ProtocolGRPC, Traffic: MergeTraffic(&v1alpha1.TrafficPolicy{Timeout: tmo("1m")})},
			want:   routesTo(&routev3.RouteAction{Timeout: durationpb.New(6e10)}),
		},
		{
			name:   "TCP uses tcp_proxy and ignores HTTP-only settings",
			target: &Target{ServicePort: 80, Protocol: v1alpha1.ProtocolTCP, Traffic: MergeTraffic(&v1alpha1.TrafficPolicy{Timeout: tmo("1s")})},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := egressListener(Upstream{Name: "b", Namespace: "other", LocalPort: 9000, Target: tc.target}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if l.Name != "egress_9000" {
				t.Errorf("name %q, want egress_9000", l.Name)
			}
			if host, port := socketOf(l); host != "127.0.0.1" || port != 9000 {
				t.Errorf("listens on %s:%d, want 127.0.0.1:9000", host, port)
			}
			if tc.want == nil {
				tp := tcpProxyOf(t, l)
				if tp.GetCluster() != "out.b.other" || tp.StatPrefix != "egress_b_other" {
					t.Errorf("tcp_proxy to %q with stat_prefix %q, want out.b.other and egress_b_other", tp.GetCluster(), tp.StatPrefix)
				}
				return
			}
			hcm := hcmOf(t, l)
			if hcm.StatPrefix != "egress_b_other" {
				t.Errorf("stat_prefix %q, want egress_b_other", hcm.StatPrefix)
			}
			if diff := cmp.Diff(tc.want, onlyRoutes(t, hcm), protocmp.Transform()); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEgressListenerUnresolved(t *testing.T) {
	l, err := egressListener(Upstream{Name: "b", Namespace: "ns", LocalPort: 9000}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host, port := socketOf(l); host != "127.0.0.1" || port != 9000 {
		t.Errorf("listens on %s:%d, want 127.0.0.1:9000", host, port)
	}
	routes := onlyRoutes(t, hcmOf(t, l))
	if len(routes) != 1 || routes[0].GetMatch().GetPrefix() != "/" {
		t.Fatalf("want one catch-all route, got %v", routes)
	}
	dr := routes[0].GetDirectResponse()
	if dr.GetStatus() != 503 {
		t.Errorf("status %d, want 503", dr.GetStatus())
	}
	if want := "envoymesh: upstream MeshService \"b\" in namespace \"ns\" does not exist\n"; dr.GetBody().GetInlineString() != want {
		t.Errorf("body %q, want %q", dr.GetBody().GetInlineString(), want)
	}
}

func TestEgressListenerErrors(t *testing.T) {
	tests := []struct {
		name    string
		traffic v1alpha1.TrafficPolicy
		want    string
	}{
		{"bad timeout", v1alpha1.TrafficPolicy{Timeout: tmo("soon")}, "traffic.timeout"},
		{"bad per-try timeout", v1alpha1.TrafficPolicy{Retries: &v1alpha1.RetryPolicy{PerTryTimeout: dur("-1s")}}, "traffic.retries.perTryTimeout"},
		{"negative timeout", v1alpha1.TrafficPolicy{Timeout: tmo("-1s")}, "traffic.timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := egressListener(Upstream{Name: "b", Namespace: "ns", LocalPort: 9000, Target: &Target{ServicePort: 80, Traffic: tc.traffic}}, nil)
			if err == nil {
				t.Fatal("want an error")
			}
			for _, s := range []string{`listener "egress_9000"`, "upstream ns/b", tc.want} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

// TestFilterConfigValidatedBeforePacking shows why pack validates: an invalid HCM
// inside an Any passes the listener's ValidateAll, so only pack can catch it.
func TestFilterConfigValidatedBeforePacking(t *testing.T) {
	broken := routeConfig("broken", []*routev3.Route{{Action: routeTo("x")}}) // a route without a match
	if _, err := httpConnectionManager("broken", broken, nil); err == nil || !strings.Contains(err.Error(), "http_connection_manager") {
		t.Fatalf("httpConnectionManager error = %v, want a validation error naming http_connection_manager", err)
	}

	unchecked, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix:     "broken",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: broken},
	})
	if err != nil {
		t.Fatal(err)
	}
	l := &listenerv3.Listener{
		Name:    "broken",
		Address: socketAddress(loopbackAddress, 9000),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: hcmFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: unchecked},
		}}}},
	}
	if err := l.ValidateAll(); err != nil {
		t.Fatalf("the listener's ValidateAll looked inside the Any (%v); pack's own validation may be redundant now", err)
	}
}
