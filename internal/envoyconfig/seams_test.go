package envoyconfig

import (
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// These tests hold the seams the identity, authorization and xDS work builds on:
// HTTP filters before the router, transport sockets on listeners and clusters,
// the callers as an input, and the bootstrap's delivery as an input.

func filterNames(hcm *hcmv3.HttpConnectionManager) []string {
	var names []string
	for _, f := range hcm.HttpFilters {
		names = append(names, f.Name)
	}
	return names
}

func TestInboundHTTPFiltersRunBeforeTheRouter(t *testing.T) {
	svc := Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786, Protocol: v1alpha1.ProtocolHTTP,
		Security: &Security{MTLS: v1alpha1.MTLSStrict, Authorization: v1alpha1.AuthorizationEnforce}}
	out := build(t, svc)
	if err := validateRendered(out); err != nil {
		t.Fatal(err)
	}
	_, ls := parseListeners(t, out.Listeners)
	got := filterNames(hcmOf(t, listenerNamed(t, ls, inboundListenerName)))
	if want := []string{httpRBACFilterName, routerFilterName}; !slices.Equal(got, want) {
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
	rbac, err := httpRBAC(&Security{Authorization: v1alpha1.AuthorizationEnforce})
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]*hcmv3.HttpFilter{
		"by type": router,
		"by name": {Name: routerFilterName, ConfigType: rbac[0].ConfigType},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := httpConnectionManagerFilter(&hcmv3.HttpConnectionManager{StatPrefix: "x"}, rbac[0], f)
			if err == nil || !strings.Contains(err.Error(), "router is added last") {
				t.Errorf("error %v, want the router refused", err)
			}
		})
	}
}

// TestTransportSockets: an identity puts TLS on the inbound listener and on the
// clusters of upstreams with a Peer, and nowhere on loopback.
func TestTransportSockets(t *testing.T) {
	svc := Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786, Protocol: v1alpha1.ProtocolHTTP,
		Security: &Security{MTLS: v1alpha1.MTLSStrict, Authorization: v1alpha1.AuthorizationOff}}
	peer := &Peer{SPIFFEID: "spiffe://cluster.local/ns/ns/sa/b", SNI: "b.ns.svc.cluster.local"}
	svc.Upstreams = []Upstream{
		{Name: "b", Namespace: "ns", LocalPort: 9000, Target: &Target{ServicePort: 80, Traffic: MergeTraffic(), Peer: peer}},
		{Name: "c", Namespace: "ns", LocalPort: 9001, Target: &Target{ServicePort: 80, Traffic: MergeTraffic()}},
	}
	out := build(t, svc)
	if err := validateRendered(out); err != nil {
		t.Fatal(err)
	}
	_, ls := parseListeners(t, out.Listeners)
	if got := listenerNamed(t, ls, inboundListenerName).FilterChains[0].TransportSocket; got.GetName() != tlsTransportSocketName {
		t.Errorf("inbound transport socket %v, want TLS", got)
	}
	for _, name := range []string{"egress_9000", "egress_9001"} {
		if got := listenerNamed(t, ls, name).FilterChains[0].TransportSocket; got != nil {
			t.Errorf("egress listener %s on loopback got transport socket %v", name, got)
		}
	}
	_, cs := parseClusters(t, out.Clusters)
	if got := clusterNamed(t, cs, "out.b.ns").TransportSocket; got.GetName() != tlsTransportSocketName {
		t.Errorf("upstream cluster with a Peer: transport socket %v, want TLS", got)
	}
	if got := clusterNamed(t, cs, "out.c.ns").TransportSocket; got != nil {
		t.Errorf("upstream cluster without a Peer got transport socket %v", got)
	}
	if got := clusterNamed(t, cs, localAppClusterName).TransportSocket; got != nil {
		t.Errorf("the app on loopback got transport socket %v", got)
	}

	t.Run("an invalid TLS context is refused when packed", func(t *testing.T) {
		svc.Upstreams[0].Target.Peer = &Peer{SPIFFEID: peer.SPIFFEID, SNI: strings.Repeat("x", 300)}
		if _, err := BuildSidecar(svc, Options{}); err == nil || !strings.Contains(err.Error(), "Sni") {
			t.Errorf("error %v, want an SNI longer than 255 bytes refused", err)
		}
	})
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
