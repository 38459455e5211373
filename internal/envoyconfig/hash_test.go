package envoyconfig

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

func headerHash(name string) []*routev3.RouteAction_HashPolicy {
	return []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
		Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: name},
	}}}
}

func TestTrafficRouteHashPolicy(t *testing.T) {
	hashOn := &v1alpha1.HashOn{Header: "x-user-id"}
	tests := []struct {
		name string
		tp   v1alpha1.TrafficPolicy
		want []*routev3.RouteAction_HashPolicy
	}{
		{"RingHash hashes the header", v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerRingHash, HashOn: hashOn}, headerHash("x-user-id")},
		{"Maglev hashes the header", v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerMaglev, HashOn: hashOn}, headerHash("x-user-id")},
		{"RingHash without hashOn has no hash policy", v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerRingHash}, nil},
		// A caller that overrides only loadBalancer drops the callee's hash.
		{"another load balancer ignores hashOn", v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerLeastRequest, HashOn: hashOn}, nil},
		{"unset load balancer ignores hashOn", v1alpha1.TrafficPolicy{HashOn: hashOn}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := trafficRoute(matchAll(), "out.b.ns", v1alpha1.ProtocolHTTP, tc.tp)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, r.GetRoute().GetHashPolicy(), protocmp.Transform()); diff != "" {
				t.Errorf("hash_policy (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBuildSidecarHashOn follows hashOn from the callee's spec.traffic to the
// caller's rendered route and cluster, and a caller's override of the load balancer.
func TestBuildSidecarHashOn(t *testing.T) {
	callee := meshService("ns", "cart", 8080, 15006, v1alpha1.ProtocolHTTP)
	callee.Spec.Traffic = &v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerRingHash, HashOn: &v1alpha1.HashOn{Header: "x-user-id"}}
	tests := []struct {
		name     string
		override *v1alpha1.TrafficPolicy
		wantLB   clusterv3.Cluster_LbPolicy
		wantHash []*routev3.RouteAction_HashPolicy
	}{
		{"callee's sticky routing", nil, clusterv3.Cluster_RING_HASH, headerHash("x-user-id")},
		{"caller hashes another header", &v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerMaglev, HashOn: &v1alpha1.HashOn{Header: "cookie"}},
			clusterv3.Cluster_MAGLEV, headerHash("cookie")},
		{"caller's own load balancer", &v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerRandom}, clusterv3.Cluster_RANDOM, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			caller := meshService("ns", "web", 8080, 15006, v1alpha1.ProtocolHTTP, v1alpha1.Upstream{Name: "cart", LocalPort: 9001, Traffic: tc.override})
			out := build(t, ServiceFor(caller, foundMap(callee), nil))
			_, ls := parseListeners(t, out.Listeners)
			routes := onlyRoutes(t, hcmOf(t, listenerNamed(t, ls, "egress_9001")))
			if diff := cmp.Diff(tc.wantHash, routes[0].GetRoute().GetHashPolicy(), protocmp.Transform()); diff != "" {
				t.Errorf("hash_policy (-want +got):\n%s", diff)
			}
			_, cs := parseClusters(t, out.Clusters)
			if got := clusterNamed(t, cs, "out.cart.ns").LbPolicy; got != tc.wantLB {
				t.Errorf("lb_policy %v, want %v", got, tc.wantLB)
			}
		})
	}
}

func TestBuildGatewayHashOn(t *testing.T) {
	api := meshService("shop", "api", 8081, 15006, v1alpha1.ProtocolHTTP)
	api.Spec.Traffic = &v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerMaglev, HashOn: &v1alpha1.HashOn{Header: "x-session"}}
	mesh := &v1alpha1.ServiceMesh{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "edge"},
		Spec:       v1alpha1.ServiceMeshSpec{Gateway: &v1alpha1.Gateway{Routes: []v1alpha1.GatewayRoute{{Prefix: "/api", Service: "api"}}}},
	}
	out := buildGateway(t, GatewayFor(mesh, foundMap(api)))
	routes := gatewayRoutes(t, out)
	if diff := cmp.Diff(headerHash("x-session"), routes[0].GetRoute().GetHashPolicy(), protocmp.Transform()); diff != "" {
		t.Errorf("gateway route hash_policy (-want +got):\n%s", diff)
	}
	_, cs := parseClusters(t, out.Clusters)
	if got := clusterNamed(t, cs, "out.api.shop").LbPolicy; got != clusterv3.Cluster_MAGLEV {
		t.Errorf("lb_policy %v, want MAGLEV", got)
	}
}

// TestBuildSidecarTCPOverride: the API server cannot see that a caller's
// upstreams[i].traffic targets a TCP service, so the builder refuses HTTP-only
// fields there, naming the field by its path; the rest applies as usual.
func TestBuildSidecarTCPOverride(t *testing.T) {
	db := meshService("data", "db", 5432, 15006, v1alpha1.ProtocolTCP)
	web := meshService("ns", "cart", 8080, 15006, v1alpha1.ProtocolHTTP)
	caller := func(tp *v1alpha1.TrafficPolicy) *v1alpha1.MeshService {
		return meshService("ns", "web", 8080, 15006, v1alpha1.ProtocolHTTP,
			v1alpha1.Upstream{Name: "cart", LocalPort: 9001, Traffic: tp},
			v1alpha1.Upstream{Name: "db", Namespace: "data", LocalPort: 9002, Traffic: tp})
	}
	rejected := []struct {
		field string
		tp    *v1alpha1.TrafficPolicy
	}{
		{"timeout", &v1alpha1.TrafficPolicy{Timeout: tmo("1s")}},
		{"retries", &v1alpha1.TrafficPolicy{Retries: &v1alpha1.RetryPolicy{Attempts: i32(2)}}},
		{"hashOn", &v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerRingHash, HashOn: &v1alpha1.HashOn{Header: "x-id"}}},
		{"healthCheck.path", &v1alpha1.TrafficPolicy{HealthCheck: &v1alpha1.HealthCheck{Path: "/healthz"}}},
	}
	for _, tc := range rejected {
		t.Run("rejects "+tc.field, func(t *testing.T) {
			_, err := BuildSidecar(ServiceFor(caller(tc.tp), foundMap(db, web), nil), Options{})
			if err == nil {
				t.Fatal("want an error")
			}
			for _, s := range []string{"spec.upstreams[1].traffic." + tc.field + ":", "data/db", "TCP"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}

	t.Run("accepts connection-level settings", func(t *testing.T) {
		tp := &v1alpha1.TrafficPolicy{
			LoadBalancer:     v1alpha1.LoadBalancerLeastRequest,
			ConnectTimeout:   dur("1s"),
			CircuitBreaker:   &v1alpha1.CircuitBreaker{MaxConnections: i32(10)},
			OutlierDetection: &v1alpha1.OutlierDetection{Consecutive5xx: i32(3)},
			HealthCheck:      &v1alpha1.HealthCheck{Interval: dur("5s")},
		}
		out := build(t, ServiceFor(caller(tp), foundMap(db, web), nil))
		_, cs := parseClusters(t, out.Clusters)
		c := clusterNamed(t, cs, "out.db.data")
		if c.LbPolicy != clusterv3.Cluster_LEAST_REQUEST || c.GetHealthChecks()[0].GetTcpHealthCheck() == nil {
			t.Errorf("TCP cluster lb_policy %v, health checks %v; want LEAST_REQUEST and a connect-only check", c.LbPolicy, c.GetHealthChecks())
		}
	})

	t.Run("ignores the mesh's HTTP-only defaults", func(t *testing.T) {
		mesh := &v1alpha1.ServiceMesh{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "default"},
			Spec: v1alpha1.ServiceMeshSpec{Defaults: &v1alpha1.TrafficPolicy{
				Timeout: tmo("2s"), Retries: &v1alpha1.RetryPolicy{Attempts: i32(1)}, HealthCheck: &v1alpha1.HealthCheck{Path: "/ready"},
			}},
		}
		out := build(t, ServiceFor(caller(nil), foundMap(db, web), mesh))
		_, ls := parseListeners(t, out.Listeners)
		if tcpProxyOf(t, listenerNamed(t, ls, "egress_9002")).GetCluster() != "out.db.data" {
			t.Error("the TCP upstream's listener is not a tcp_proxy to out.db.data")
		}
		if got := onlyRoutes(t, hcmOf(t, listenerNamed(t, ls, "egress_9001")))[0].GetRoute().GetTimeout().AsDuration(); got.String() != "2s" {
			t.Errorf("HTTP upstream timeout %v, want the mesh's 2s", got)
		}
	})
}

// TestHealthCheckCodec: Envoy's HTTP health checker speaks HTTP/1.1 by default,
// which an HTTP/2-only (gRPC) server refuses, so those upstreams are checked over h2.
func TestHealthCheckCodec(t *testing.T) {
	for p, want := range map[v1alpha1.Protocol]typev3.CodecClientType{
		v1alpha1.ProtocolHTTP:  typev3.CodecClientType_HTTP1,
		v1alpha1.ProtocolHTTP2: typev3.CodecClientType_HTTP2,
		v1alpha1.ProtocolGRPC:  typev3.CodecClientType_HTTP2,
	} {
		c, err := upstreamCluster(upstreamTo(p, &v1alpha1.TrafficPolicy{HealthCheck: &v1alpha1.HealthCheck{}}), "cluster.local")
		if err != nil {
			t.Fatal(err)
		}
		if got := c.GetHealthChecks()[0].GetHttpHealthCheck().GetCodecClientType(); got != want {
			t.Errorf("%s: health check codec %v, want %v", p, got, want)
		}
	}
}
