package envoyconfig

import (
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// The helpers below read the rendered files back the way Envoy would, so tests
// assert on what the sidecar loads rather than on intermediate protos.

func parseYAML(t *testing.T, data []byte, m proto.Message) {
	t.Helper()
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("YAMLToJSON: %v", err)
	}
	if err := protojson.Unmarshal(j, m); err != nil {
		t.Fatalf("unmarshal %T: %v\n%s", m, err, data)
	}
}

func parseBootstrap(t *testing.T, data []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	b := &bootstrapv3.Bootstrap{}
	parseYAML(t, data, b)
	return b
}

// parseResources reads a DiscoveryResponse file and unpacks every resource into T.
func parseResources[T proto.Message](t *testing.T, data []byte) (version string, out []T) {
	t.Helper()
	dr := &discoveryv3.DiscoveryResponse{}
	parseYAML(t, data, dr)
	for _, a := range dr.Resources {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatalf("unpack %s: %v", a.TypeUrl, err)
		}
		r, ok := m.(T)
		if !ok {
			t.Fatalf("resource is %T, want %T", m, *new(T))
		}
		out = append(out, r)
	}
	return dr.VersionInfo, out
}

func parseListeners(t *testing.T, data []byte) (string, []*listenerv3.Listener) {
	t.Helper()
	return parseResources[*listenerv3.Listener](t, data)
}

func parseClusters(t *testing.T, data []byte) (string, []*clusterv3.Cluster) {
	t.Helper()
	return parseResources[*clusterv3.Cluster](t, data)
}

func listenerNamed(t *testing.T, ls []*listenerv3.Listener, name string) *listenerv3.Listener {
	t.Helper()
	for _, l := range ls {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("no listener %q", name)
	return nil
}

func clusterNamed(t *testing.T, cs []*clusterv3.Cluster, name string) *clusterv3.Cluster {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no cluster %q", name)
	return nil
}

// onlyFilter returns the single network filter of a listener with one filter chain.
func onlyFilter(t *testing.T, l *listenerv3.Listener) *listenerv3.Filter {
	t.Helper()
	if len(l.FilterChains) != 1 || len(l.FilterChains[0].Filters) != 1 {
		t.Fatalf("listener %q: want 1 filter chain with 1 filter, got %v", l.Name, l.FilterChains)
	}
	return l.FilterChains[0].Filters[0]
}

func hcmOf(t *testing.T, l *listenerv3.Listener) *hcmv3.HttpConnectionManager {
	t.Helper()
	f := onlyFilter(t, l)
	if f.Name != hcmFilterName {
		t.Fatalf("listener %q: filter %q, want %q", l.Name, f.Name, hcmFilterName)
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatalf("listener %q: %v", l.Name, err)
	}
	return hcm
}

func tcpProxyOf(t *testing.T, l *listenerv3.Listener) *tcpproxyv3.TcpProxy {
	t.Helper()
	f := onlyFilter(t, l)
	if f.Name != tcpProxyFilterName {
		t.Fatalf("listener %q: filter %q, want %q", l.Name, f.Name, tcpProxyFilterName)
	}
	tp := &tcpproxyv3.TcpProxy{}
	if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
		t.Fatalf("listener %q: %v", l.Name, err)
	}
	return tp
}

// onlyRoutes returns the routes of an HCM with one inline virtual host matching any host.
func onlyRoutes(t *testing.T, hcm *hcmv3.HttpConnectionManager) []*routev3.Route {
	t.Helper()
	vhs := hcm.GetRouteConfig().GetVirtualHosts()
	if len(vhs) != 1 || len(vhs[0].Domains) != 1 || vhs[0].Domains[0] != "*" {
		t.Fatalf("want one virtual host for domain *, got %v", vhs)
	}
	return vhs[0].Routes
}

// http2Enabled reports whether a cluster speaks HTTP/2 to its endpoints.
func http2Enabled(t *testing.T, c *clusterv3.Cluster) bool {
	t.Helper()
	a, ok := c.TypedExtensionProtocolOptions[httpProtocolOptionsKey]
	if !ok {
		return false
	}
	opts := &httpv3.HttpProtocolOptions{}
	if err := a.UnmarshalTo(opts); err != nil {
		t.Fatalf("cluster %q: %v", c.Name, err)
	}
	return opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
}

func socketOf(l *listenerv3.Listener) (string, uint32) {
	sa := l.GetAddress().GetSocketAddress()
	return sa.GetAddress(), sa.GetPortValue()
}

func endpointOf(t *testing.T, c *clusterv3.Cluster) (string, uint32) {
	t.Helper()
	eps := c.GetLoadAssignment().GetEndpoints()
	if len(eps) != 1 || len(eps[0].LbEndpoints) != 1 {
		t.Fatalf("cluster %q: want exactly one endpoint, got %v", c.Name, eps)
	}
	sa := eps[0].LbEndpoints[0].GetEndpoint().GetAddress().GetSocketAddress()
	return sa.GetAddress(), sa.GetPortValue()
}

func dur(s string) *v1alpha1.Duration {
	d := v1alpha1.Duration(s)
	return &d
}

func i32(v int32) *int32 { return &v }

// build is BuildSidecar and Render for tests that expect success.
func build(t testing.TB, svc Service) *Output {
	t.Helper()
	res, err := BuildSidecar(svc, Options{ClusterDomain: "cluster.local"})
	if err != nil {
		t.Fatalf("BuildSidecar: %v", err)
	}
	return mustRender(t, res)
}

func mustRender(t testing.TB, res *Resources) *Output {
	t.Helper()
	out, err := Render(res)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return out
}

// tmo is a traffic.timeout, which unlike a Duration may be 0s.
func tmo(s string) *v1alpha1.RequestTimeout {
	d := v1alpha1.RequestTimeout(s)
	return &d
}
