package envoyconfig

import (
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/apimachinery/pkg/types"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// These tests hold the seams the identity, authorization and xDS work builds on:
// HTTP filters before the router, transport sockets on listeners and clusters,
// the callers as an input, and the bootstrap's delivery as an input.

const rbacFilterName = "envoy.filters.http.rbac"

func denyAllRBAC(t *testing.T) *hcmv3.HttpFilter {
	t.Helper()
	f, err := httpFilter(rbacFilterName, &rbacv3.RBAC{Rules: &rbacconfigv3.RBAC{Action: rbacconfigv3.RBAC_ALLOW}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func filterNames(hcm *hcmv3.HttpConnectionManager) []string {
	var names []string
	for _, f := range hcm.HttpFilters {
		names = append(names, f.Name)
	}
	return names
}

func TestInboundHTTPFiltersRunBeforeTheRouter(t *testing.T) {
	svc := Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786, Protocol: v1alpha1.ProtocolHTTP}
	svc.Inbound.HTTPFilters = []*hcmv3.HttpFilter{denyAllRBAC(t)}
	out := build(t, svc)
	if err := validateRendered(out); err != nil {
		t.Fatal(err)
	}
	_, ls := parseListeners(t, out.Listeners)
	got := filterNames(hcmOf(t, listenerNamed(t, ls, inboundListenerName)))
	if want := []string{rbacFilterName, routerFilterName}; !slices.Equal(got, want) {
		t.Errorf("inbound http_filters %v, want %v", got, want)
	}
	// Egress listeners are the caller's side: they get none of it.
	svc.Upstreams = []Upstream{{Name: "b", Namespace: "ns", LocalPort: 9000, Target: &Target{ServicePort: 80, Traffic: MergeTraffic()}}}
	_, ls = parseListeners(t, build(t, svc).Listeners)
	if got := filterNames(hcmOf(t, listenerNamed(t, ls, "egress_9000"))); !slices.Equal(got, []string{routerFilterName}) {
		t.Errorf("egress http_filters %v, want only the router", got)
	}
}

func TestRouterCannotBePassedIn(t *testing.T) {
	router, err := httpFilter("my-router", &routerv3.Router{})
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]*hcmv3.HttpFilter{
		"by type": router,
		"by name": {Name: routerFilterName, ConfigType: denyAllRBAC(t).ConfigType},
	} {
		t.Run(name, func(t *testing.T) {
			svc := Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786}
			svc.Inbound.HTTPFilters = []*hcmv3.HttpFilter{f}
			_, err := BuildSidecar(svc, Options{})
			if err == nil || !strings.Contains(err.Error(), "router is added last") {
				t.Errorf("error %v, want the router refused", err)
			}
		})
	}
}

func TestHTTPFiltersOnTCPServiceRefused(t *testing.T) {
	svc := Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786, Protocol: v1alpha1.ProtocolTCP}
	svc.Inbound.HTTPFilters = []*hcmv3.HttpFilter{denyAllRBAC(t)}
	if _, err := BuildSidecar(svc, Options{}); err == nil || !strings.Contains(err.Error(), "TCP service") {
		t.Errorf("error %v, want HTTP filters on TCP refused", err)
	}
}

func TestTransportSockets(t *testing.T) {
	down, err := transportSocket("envoy.transport_sockets.tls", &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	up, err := transportSocket("envoy.transport_sockets.tls", &tlsv3.UpstreamTlsContext{Sni: "b.ns"})
	if err != nil {
		t.Fatal(err)
	}
	svc := Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786, Protocol: v1alpha1.ProtocolHTTP}
	svc.Inbound.TransportSocket = down
	svc.Upstreams = []Upstream{{Name: "b", Namespace: "ns", LocalPort: 9000, Target: &Target{ServicePort: 80, Traffic: MergeTraffic(), TransportSocket: up}}}
	out := build(t, svc)
	if err := validateRendered(out); err != nil {
		t.Fatal(err)
	}
	_, ls := parseListeners(t, out.Listeners)
	if got := listenerNamed(t, ls, inboundListenerName).FilterChains[0].TransportSocket; !proto.Equal(got, down) {
		t.Errorf("inbound transport socket %v, want %v", got, down)
	}
	if got := listenerNamed(t, ls, "egress_9000").FilterChains[0].TransportSocket; got != nil {
		t.Errorf("egress listener on loopback got transport socket %v", got)
	}
	_, cs := parseClusters(t, out.Clusters)
	if got := clusterNamed(t, cs, "out.b.ns").TransportSocket; !proto.Equal(got, up) {
		t.Errorf("upstream cluster transport socket %v, want %v", got, up)
	}
	if got := clusterNamed(t, cs, localAppClusterName).TransportSocket; got != nil {
		t.Errorf("the app on loopback got transport socket %v", got)
	}

	t.Run("an invalid TLS context is refused when packed", func(t *testing.T) {
		_, err := transportSocket("envoy.transport_sockets.tls", &tlsv3.UpstreamTlsContext{Sni: strings.Repeat("x", 300)})
		if err == nil {
			t.Error("an SNI longer than 255 bytes was packed")
		}
	})
}

// TestCallersAreAnInputWithoutConsequence: the callers reach the build, and change
// nothing yet, so no sidecar reloads when a caller comes or goes.
func TestCallersAreAnInputWithoutConsequence(t *testing.T) {
	svc := Service{Name: "b", Namespace: "ns", Port: 8081, ServicePort: 8786}
	without, err := BuildSidecar(svc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Callers = []types.NamespacedName{{Namespace: "ns", Name: "a"}, {Namespace: "other", Name: "c"}}
	with, err := BuildSidecar(svc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if with.Version != without.Version || with.BootstrapVersion != without.BootstrapVersion {
		t.Error("callers changed the config; nothing is built from them yet")
	}
}

// TestBootstrapDelivery: the bootstrap names whatever delivery it is given; an
// ADS delivery needs no file and brings the cluster of its server.
func TestBootstrapDelivery(t *testing.T) {
	ads := &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	xds := &clusterv3.Cluster{Name: "xds", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: singleEndpoint("xds", "127.0.0.1", 18000)}
	d := Delivery{
		LDS: ads, CDS: ads,
		ADS: &corev3.ApiConfigSource{
			ApiType:             corev3.ApiConfigSource_GRPC,
			TransportApiVersion: corev3.ApiVersion_V3,
			GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "xds"},
			}}},
		},
		Clusters: []*clusterv3.Cluster{xds},
	}
	res, err := BuildSidecar(Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786}, Options{Delivery: &d})
	if err != nil {
		t.Fatal(err)
	}
	dyn := res.Bootstrap.DynamicResources
	if !proto.Equal(dyn.LdsConfig, ads) || !proto.Equal(dyn.CdsConfig, ads) || !proto.Equal(dyn.AdsConfig, d.ADS) {
		t.Errorf("dynamic_resources %v, want the ADS delivery", dyn)
	}
	if names := clusterNames(res.Bootstrap.StaticResources.Clusters); !slices.Equal(names, []string{adminClusterName, "xds"}) {
		t.Errorf("static clusters %v, want the admin cluster and the delivery's", names)
	}
	files, err := BuildSidecar(Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if files.BootstrapVersion == res.BootstrapVersion || files.Version != res.Version {
		t.Error("the delivery must change the bootstrap only")
	}
	if got := files.Bootstrap.DynamicResources.LdsConfig.GetPathConfigSource().GetPath(); got != MountPath+"/"+ListenersFile {
		t.Errorf("default delivery reads listeners from %q, want the mounted file", got)
	}
}
