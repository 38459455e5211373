package envoyconfig

import (
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

const (
	localAppClusterName = "local_app"

	// dnsRefreshRate bounds how long a caller keeps dialing pods that are gone
	// when the DNS TTL does not say otherwise.
	dnsRefreshRate = 5 * time.Second

	httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// Health check settings for sub-fields a policy leaves unset.
const (
	defaultHealthCheckInterval = 10 * time.Second
	defaultHealthCheckTimeout  = 1 * time.Second
	defaultHealthyThreshold    = 2
	defaultUnhealthyThreshold  = 3
	defaultHealthCheckPath     = "/"
)

var lbPolicies = map[v1alpha1.LoadBalancer]clusterv3.Cluster_LbPolicy{
	v1alpha1.LoadBalancerRoundRobin:   clusterv3.Cluster_ROUND_ROBIN,
	v1alpha1.LoadBalancerLeastRequest: clusterv3.Cluster_LEAST_REQUEST,
	v1alpha1.LoadBalancerRandom:       clusterv3.Cluster_RANDOM,
	v1alpha1.LoadBalancerRingHash:     clusterv3.Cluster_RING_HASH,
	v1alpha1.LoadBalancerMaglev:       clusterv3.Cluster_MAGLEV,
}

// UpstreamClusterName is the Envoy cluster of an upstream MeshService. Names and
// namespaces are DNS labels without dots, so the name can be split back, e.g. to
// match /clusters output of the admin API to spec.upstreams.
func UpstreamClusterName(name, namespace string) string {
	return "out." + name + "." + namespace
}

// localAppCluster is the application on loopback, behind the inbound listener.
func localAppCluster(svc Service) (*clusterv3.Cluster, error) {
	c := &clusterv3.Cluster{
		Name:                 localAppClusterName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(staticConnectTimeout),
		LoadAssignment:       singleEndpoint(localAppClusterName, loopbackAddress, svc.Port),
	}
	if isHTTP2(svc.Protocol) {
		opts, err := http2ProtocolOptions()
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", c.Name, err)
		}
		c.TypedExtensionProtocolOptions = opts
	}
	return validCluster(c)
}

// upstreamCluster reaches every pod of an upstream MeshService through its headless
// Service: STRICT_DNS resolves the name to all pod IPs and balances across them on
// the caller's side, as in the seed. A target with a Peer is reached over mutual
// TLS, health checks included.
func upstreamCluster(u Upstream, clusterDomain string) (*clusterv3.Cluster, error) {
	return upstreamClusterVia(u, clusterDomain, nil)
}

// upstreamClusterVia is upstreamCluster, or with eds the same cluster fed by
// EDS from that source: the pods' own addresses, pushed as they change, with
// terminating pods draining, where DNS keeps a gone pod for up to its TTL and
// drops a terminating one at once. Only how endpoints are found differs.
func upstreamClusterVia(u Upstream, clusterDomain string, eds *corev3.ConfigSource) (*clusterv3.Cluster, error) {
	name := UpstreamClusterName(u.Name, u.Namespace)
	c, err := upstreamClusterSpec(name, u, clusterDomain, eds)
	if err != nil {
		return nil, fmt.Errorf("cluster %q (upstream %s/%s): %w", name, u.Namespace, u.Name, err)
	}
	return validCluster(c)
}

func upstreamClusterSpec(name string, u Upstream, clusterDomain string, eds *corev3.ConfigSource) (*clusterv3.Cluster, error) {
	// A Target built by hand may lack the built-in defaults MergeTraffic applies.
	tp := u.Target.Traffic
	applyTrafficDefaults(&tp, u.Target.Protocol)
	var c *clusterv3.Cluster
	if eds != nil {
		// service_name is the cluster's name, said explicitly so the EDS
		// resource to send is named in the cluster itself.
		c = &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: eds, ServiceName: name},
		}
	} else {
		host := fmt.Sprintf("%s.%s.svc.%s", u.Name, u.Namespace, clusterDomain)
		// The DNS settings use the cluster's own fields, deprecated in favour of the
		// DnsCluster extension, because only recent Envoy releases have that extension
		// and these fields still work (with a warning) on every v3 Envoy.
		c = &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
			LoadAssignment:       singleEndpoint(name, host, u.Target.ServicePort),
			DnsRefreshRate:       durationpb.New(dnsRefreshRate),
			RespectDnsTtl:        true,
			DnsLookupFamily:      clusterv3.Cluster_V4_PREFERRED,
		}
	}
	lb, ok := lbPolicies[tp.LoadBalancer]
	if !ok {
		return nil, fmt.Errorf("traffic.loadBalancer: unknown policy %q", tp.LoadBalancer)
	}
	c.LbPolicy = lb
	var err error
	if c.ConnectTimeout, err = duration(tp.ConnectTimeout, "traffic.connectTimeout"); err != nil {
		return nil, err
	}
	c.CircuitBreakers = circuitBreakers(tp.CircuitBreaker)
	if c.OutlierDetection, err = outlierDetection(tp.OutlierDetection); err != nil {
		return nil, err
	}
	if tp.HealthCheck != nil {
		hc, err := healthCheck(tp.HealthCheck, u.Target.Protocol)
		if err != nil {
			return nil, err
		}
		c.HealthChecks = []*corev3.HealthCheck{hc}
	}
	if isHTTP2(u.Target.Protocol) {
		if c.TypedExtensionProtocolOptions, err = http2ProtocolOptions(); err != nil {
			return nil, err
		}
	}
	if p := u.Target.Peer; p != nil {
		if c.TransportSocket, err = upstreamTLS(*p, u.Target.Protocol); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func validCluster(c *clusterv3.Cluster) (*clusterv3.Cluster, error) {
	if err := c.ValidateAll(); err != nil {
		return nil, fmt.Errorf("cluster %q: %w", c.Name, err)
	}
	return c, nil
}

// http2ProtocolOptions makes Envoy speak HTTP/2 to the cluster's endpoints, which
// HTTP2 and gRPC services need (Envoy defaults to HTTP/1.1 upstream).
func http2ProtocolOptions() (map[string]*anypb.Any, error) {
	opts, err := pack(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", httpProtocolOptionsKey, err)
	}
	return map[string]*anypb.Any{httpProtocolOptionsKey: opts}, nil
}

func circuitBreakers(cb *v1alpha1.CircuitBreaker) *clusterv3.CircuitBreakers {
	if cb == nil {
		return nil
	}
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxConnections:     uint32Value(cb.MaxConnections),
		MaxPendingRequests: uint32Value(cb.MaxPendingRequests),
		MaxRequests:        uint32Value(cb.MaxRequests),
		MaxRetries:         uint32Value(cb.MaxRetries),
	}}}
}

// outlierDetection leaves unset sub-fields to Envoy's defaults (5 consecutive
// 5xx, 10s interval, 30s base ejection, 10% max ejection).
func outlierDetection(od *v1alpha1.OutlierDetection) (*clusterv3.OutlierDetection, error) {
	if od == nil {
		return nil, nil
	}
	out := &clusterv3.OutlierDetection{
		Consecutive_5Xx:    uint32Value(od.Consecutive5xx),
		MaxEjectionPercent: uint32Value(od.MaxEjectionPercent),
	}
	var err error
	if out.Interval, err = duration(od.Interval, "traffic.outlierDetection.interval"); err != nil {
		return nil, err
	}
	if out.BaseEjectionTime, err = duration(od.BaseEjectionTime, "traffic.outlierDetection.baseEjectionTime"); err != nil {
		return nil, err
	}
	return out, nil
}

// healthCheck fills the fields Envoy requires (interval, timeout and both
// thresholds have no Envoy default) with ours: every 10s, 1s timeout, healthy after
// 2 passes and unhealthy after 3 failures, GET /. A TCP upstream cannot answer an
// HTTP request, so it gets a connect-only check instead; an HTTP2 or GRPC one is
// checked over HTTP/2.
func healthCheck(hc *v1alpha1.HealthCheck, protocol v1alpha1.Protocol) (*corev3.HealthCheck, error) {
	out := &corev3.HealthCheck{
		HealthyThreshold:   wrapperspb.UInt32(defaultHealthyThreshold),
		UnhealthyThreshold: wrapperspb.UInt32(defaultUnhealthyThreshold),
	}
	if hc.HealthyThreshold != nil {
		out.HealthyThreshold = wrapperspb.UInt32(uint32(*hc.HealthyThreshold))
	}
	if hc.UnhealthyThreshold != nil {
		out.UnhealthyThreshold = wrapperspb.UInt32(uint32(*hc.UnhealthyThreshold))
	}
	var err error
	if out.Interval, err = durationOr(hc.Interval, "traffic.healthCheck.interval", defaultHealthCheckInterval); err != nil {
		return nil, err
	}
	if out.Timeout, err = durationOr(hc.Timeout, "traffic.healthCheck.timeout", defaultHealthCheckTimeout); err != nil {
		return nil, err
	}
	if protocol == v1alpha1.ProtocolTCP {
		out.HealthChecker = &corev3.HealthCheck_TcpHealthCheck_{TcpHealthCheck: &corev3.HealthCheck_TcpHealthCheck{}}
		return out, nil
	}
	path := hc.Path
	if path == "" {
		path = defaultHealthCheckPath
	}
	http := &corev3.HealthCheck_HttpHealthCheck{Path: path}
	if isHTTP2(protocol) {
		// Envoy health-checks over HTTP/1.1 unless told otherwise, which an
		// HTTP/2-only server, as most gRPC servers are, would refuse.
		http.CodecClientType = typev3.CodecClientType_HTTP2
	}
	out.HealthChecker = &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: http}
	return out, nil
}

func uint32Value(v *int32) *wrapperspb.UInt32Value {
	if v == nil {
		return nil
	}
	return wrapperspb.UInt32(uint32(*v))
}
