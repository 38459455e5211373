package envoyconfig

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

func upstreamTo(protocol v1alpha1.Protocol, tp *v1alpha1.TrafficPolicy) Upstream {
	return Upstream{Name: "b", Namespace: "ns", LocalPort: 9000, Target: &Target{
		ServicePort: 8789, Protocol: protocol, Traffic: MergeTraffic(tp),
	}}
}

func TestUpstreamClusterFull(t *testing.T) {
	u := upstreamTo(v1alpha1.ProtocolHTTP, &v1alpha1.TrafficPolicy{
		LoadBalancer:     v1alpha1.LoadBalancerLeastRequest,
		ConnectTimeout:   dur("1s"),
		CircuitBreaker:   &v1alpha1.CircuitBreaker{MaxConnections: i32(10), MaxRetries: i32(0)},
		OutlierDetection: &v1alpha1.OutlierDetection{Consecutive5xx: i32(7), BaseEjectionTime: dur("1m")},
		HealthCheck:      &v1alpha1.HealthCheck{Path: "/healthz", UnhealthyThreshold: i32(5)},
	})
	got, err := upstreamCluster(u, "example.org")
	if err != nil {
		t.Fatal(err)
	}
	want := &clusterv3.Cluster{
		Name:                 "out.b.ns",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		ConnectTimeout:       durationpb.New(time.Second),
		LbPolicy:             clusterv3.Cluster_LEAST_REQUEST,
		LoadAssignment:       singleEndpoint("out.b.ns", "b.ns.svc.example.org", 8789),
		DnsRefreshRate:       durationpb.New(5 * time.Second),
		RespectDnsTtl:        true,
		DnsLookupFamily:      clusterv3.Cluster_V4_PREFERRED,
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:       corev3.RoutingPriority_DEFAULT,
			MaxConnections: wrapperspb.UInt32(10),
			MaxRetries:     wrapperspb.UInt32(0),
		}}},
		OutlierDetection: &clusterv3.OutlierDetection{
			Consecutive_5Xx:  wrapperspb.UInt32(7),
			BaseEjectionTime: durationpb.New(time.Minute),
		},
		HealthChecks: []*corev3.HealthCheck{{
			Interval:           durationpb.New(10 * time.Second),
			Timeout:            durationpb.New(time.Second),
			HealthyThreshold:   wrapperspb.UInt32(2),
			UnhealthyThreshold: wrapperspb.UInt32(5),
			HealthChecker: &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{
				Path: "/healthz",
			}},
		}},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("cluster (-want +got):\n%s", diff)
	}
}

func TestUpstreamClusterDefaults(t *testing.T) {
	c, err := upstreamCluster(upstreamTo(v1alpha1.ProtocolHTTP, nil), "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if c.LbPolicy != clusterv3.Cluster_ROUND_ROBIN {
		t.Errorf("lb_policy %v, want ROUND_ROBIN", c.LbPolicy)
	}
	if got := c.ConnectTimeout.AsDuration(); got != 250*time.Millisecond {
		t.Errorf("connect_timeout %v, want 250ms", got)
	}
	if c.CircuitBreakers != nil || c.OutlierDetection != nil || c.HealthChecks != nil || c.TypedExtensionProtocolOptions != nil {
		t.Errorf("unset policy produced settings: %v", c)
	}
}

// TestUpstreamClusterUnmergedTraffic guards callers that build a Target by hand.
func TestUpstreamClusterUnmergedTraffic(t *testing.T) {
	u := Upstream{Name: "b", Namespace: "ns", LocalPort: 9000, Target: &Target{ServicePort: 80}}
	c, err := upstreamCluster(u, "cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if c.LbPolicy != clusterv3.Cluster_ROUND_ROBIN || c.ConnectTimeout.AsDuration() != 250*time.Millisecond {
		t.Errorf("lb_policy %v, connect_timeout %v; want the built-in defaults", c.LbPolicy, c.ConnectTimeout.AsDuration())
	}
}

func TestUpstreamClusterLoadBalancer(t *testing.T) {
	tests := map[v1alpha1.LoadBalancer]clusterv3.Cluster_LbPolicy{
		v1alpha1.LoadBalancerRoundRobin:   clusterv3.Cluster_ROUND_ROBIN,
		v1alpha1.LoadBalancerLeastRequest: clusterv3.Cluster_LEAST_REQUEST,
		v1alpha1.LoadBalancerRandom:       clusterv3.Cluster_RANDOM,
		v1alpha1.LoadBalancerRingHash:     clusterv3.Cluster_RING_HASH,
		v1alpha1.LoadBalancerMaglev:       clusterv3.Cluster_MAGLEV,
	}
	for lb, want := range tests {
		t.Run(string(lb), func(t *testing.T) {
			c, err := upstreamCluster(upstreamTo(v1alpha1.ProtocolHTTP, &v1alpha1.TrafficPolicy{LoadBalancer: lb}), "cluster.local")
			if err != nil {
				t.Fatal(err)
			}
			if c.LbPolicy != want {
				t.Errorf("lb_policy %v, want %v", c.LbPolicy, want)
			}
		})
	}
}

func TestUpstreamClusterProtocol(t *testing.T) {
	tests := []struct {
		protocol    v1alpha1.Protocol
		http2       bool
		tcpCheck    bool
		healthCheck bool
	}{
		{protocol: v1alpha1.ProtocolHTTP},
		{protocol: v1alpha1.ProtocolHTTP2, http2: true},
		{protocol: v1alpha1.ProtocolGRPC, http2: true},
		{protocol: v1alpha1.ProtocolTCP, tcpCheck: true},
	}
	for _, tc := range tests {
		t.Run(string(tc.protocol), func(t *testing.T) {
			c, err := upstreamCluster(upstreamTo(tc.protocol, &v1alpha1.TrafficPolicy{HealthCheck: &v1alpha1.HealthCheck{}}), "cluster.local")
			if err != nil {
				t.Fatal(err)
			}
			if got := http2Enabled(t, c); got != tc.http2 {
				t.Errorf("http2 protocol options = %v, want %v", got, tc.http2)
			}
			if len(c.HealthChecks) != 1 {
				t.Fatalf("want one health check, got %v", c.HealthChecks)
			}
			hc := c.HealthChecks[0]
			if tc.tcpCheck {
				if hc.GetTcpHealthCheck() == nil {
					t.Errorf("TCP upstream health check %v, want a connect-only tcp_health_check", hc.HealthChecker)
				}
				return
			}
			if got := hc.GetHttpHealthCheck().GetPath(); got != "/" {
				t.Errorf("health check path %q, want the default /", got)
			}
		})
	}
}

func TestLocalAppCluster(t *testing.T) {
	for _, tc := range []struct {
		protocol v1alpha1.Protocol
		http2    bool
	}{
		{"", false},
		{v1alpha1.ProtocolHTTP, false},
		{v1alpha1.ProtocolHTTP2, true},
		{v1alpha1.ProtocolGRPC, true},
		{v1alpha1.ProtocolTCP, false},
	} {
		t.Run(string(tc.protocol), func(t *testing.T) {
			c, err := localAppCluster(Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786, Protocol: tc.protocol})
			if err != nil {
				t.Fatal(err)
			}
			if c.Name != localAppClusterName || c.GetType() != clusterv3.Cluster_STATIC {
				t.Errorf("cluster %q of type %v, want STATIC %q", c.Name, c.GetType(), localAppClusterName)
			}
			if host, port := endpointOf(t, c); host != "127.0.0.1" || port != 8081 {
				t.Errorf("endpoint %s:%d, want 127.0.0.1:8081", host, port)
			}
			if got := c.ConnectTimeout.AsDuration(); got != 250*time.Millisecond {
				t.Errorf("connect_timeout %v, want 250ms", got)
			}
			if got := http2Enabled(t, c); got != tc.http2 {
				t.Errorf("http2 protocol options = %v, want %v", got, tc.http2)
			}
		})
	}
}

func TestUpstreamClusterErrors(t *testing.T) {
	tests := []struct {
		name    string
		traffic v1alpha1.TrafficPolicy
		want    string
	}{
		{"unknown load balancer", v1alpha1.TrafficPolicy{LoadBalancer: "Sticky", ConnectTimeout: dur("1s")}, "traffic.loadBalancer"},
		{"bad connect timeout", v1alpha1.TrafficPolicy{LoadBalancer: "RoundRobin", ConnectTimeout: dur("1 second")}, "traffic.connectTimeout"},
		{"bad outlier interval", MergeTraffic(&v1alpha1.TrafficPolicy{OutlierDetection: &v1alpha1.OutlierDetection{Interval: dur("x")}}), "traffic.outlierDetection.interval"},
		{"ejection percent over 100", MergeTraffic(&v1alpha1.TrafficPolicy{OutlierDetection: &v1alpha1.OutlierDetection{MaxEjectionPercent: i32(101)}}), "MaxEjectionPercent"},
		{"bad health check timeout", MergeTraffic(&v1alpha1.TrafficPolicy{HealthCheck: &v1alpha1.HealthCheck{Timeout: dur("0s")}}), "traffic.healthCheck.timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := Upstream{Name: "b", Namespace: "ns", LocalPort: 9000, Target: &Target{ServicePort: 80, Traffic: tc.traffic}}
			_, err := upstreamCluster(u, "cluster.local")
			if err == nil {
				t.Fatal("want an error")
			}
			for _, s := range []string{`cluster "out.b.ns"`, tc.want} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}
