package envoyconfig

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// seedGatewayMesh is the article's front Envoy: port 80, everything to service-a.
func seedGatewayMesh() *v1alpha1.ServiceMesh {
	return &v1alpha1.ServiceMesh{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "default"},
		Spec: v1alpha1.ServiceMeshSpec{Gateway: &v1alpha1.Gateway{
			Enabled: true,
			Port:    80,
			Routes:  []v1alpha1.GatewayRoute{{Prefix: "/", Service: "service-a"}},
		}},
	}
}

func buildGateway(t testing.TB, gw Gateway) *Output {
	t.Helper()
	res, err := BuildGateway(gw, Options{ClusterDomain: "cluster.local"})
	if err != nil {
		t.Fatalf("BuildGateway: %v", err)
	}
	return mustRender(t, res)
}

// httpTarget is an existing HTTP MeshService at port with the built-in traffic defaults.
func httpTarget(port int32) *Target {
	return &Target{ServicePort: port, Protocol: v1alpha1.ProtocolHTTP, Traffic: MergeTraffic()}
}

func gatewayRoutes(t *testing.T, out *Output) []*routev3.Route {
	t.Helper()
	_, listeners := parseListeners(t, out.Listeners)
	if len(listeners) != 1 {
		t.Fatalf("got %d listeners, want only the gateway's", len(listeners))
	}
	return onlyRoutes(t, hcmOf(t, listenerNamed(t, listeners, gatewayListenerName)))
}

func prefixesOf(routes []*routev3.Route) []string {
	var out []string
	for _, r := range routes {
		out = append(out, r.GetMatch().GetPrefix()+r.GetMatch().GetPathSeparatedPrefix())
	}
	return out
}

func clusterNames(cs []*clusterv3.Cluster) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestGoldenSeedGateway(t *testing.T) {
	out := buildGateway(t, GatewayFor(seedGatewayMesh(), foundMap(seedMesh()...)))
	checkGoldenOutput(t, "gateway", out)
}

// TestSeedGatewayTopology encodes the article's front Envoy on the parsed output.
func TestSeedGatewayTopology(t *testing.T) {
	out := buildGateway(t, GatewayFor(seedGatewayMesh(), foundMap(seedMesh()...)))

	boot := parseBootstrap(t, out.Bootstrap)
	if id := boot.GetNode().GetId(); id != "default-gateway.default" {
		t.Errorf("node id %q, want default-gateway.default", id)
	}
	if sa := boot.GetAdmin().GetAddress().GetSocketAddress(); sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 9901 {
		t.Errorf("admin on %s:%d, want 127.0.0.1:9901", sa.GetAddress(), sa.GetPortValue())
	}
	if l := boot.GetStaticResources().GetListeners(); len(l) != 1 || l[0].GetAddress().GetSocketAddress().GetPortValue() != StatusPort {
		t.Errorf("static listeners %v, want the status listener on %d", l, StatusPort)
	}
	if p := boot.GetDynamicResources().GetLdsConfig().GetPathConfigSource().GetPath(); p != "/etc/envoy/lds.yaml" {
		t.Errorf("lds path %q", p)
	}

	_, listeners := parseListeners(t, out.Listeners)
	if len(listeners) != 1 {
		t.Fatalf("got %d listeners, want 1", len(listeners))
	}
	l := listenerNamed(t, listeners, "gateway")
	if host, port := socketOf(l); host != "0.0.0.0" || port != 8080 {
		t.Errorf("gateway listener on %s:%d, want 0.0.0.0:8080", host, port)
	}
	hcm := hcmOf(t, l)
	if !hcm.GetGenerateRequestId().GetValue() || !hcm.GetUseRemoteAddress().GetValue() {
		t.Errorf("generate_request_id %v, use_remote_address %v; want both true", hcm.GetGenerateRequestId(), hcm.GetUseRemoteAddress())
	}
	routes := onlyRoutes(t, hcm)
	if len(routes) != 1 || routes[0].GetMatch().GetPrefix() != "/" || routes[0].GetRoute().GetCluster() != "out.service-a.default" {
		t.Fatalf("routes %v, want only / to out.service-a.default", routes)
	}

	_, clusters := parseClusters(t, out.Clusters)
	if len(clusters) != 1 {
		t.Fatalf("got clusters %v, want only service-a's", clusterNames(clusters))
	}
	c := clusterNamed(t, clusters, "out.service-a.default")
	if host, port := endpointOf(t, c); host != "service-a.default.svc.cluster.local" || port != 8786 {
		t.Errorf("endpoint %s:%d, want service-a.default.svc.cluster.local:8786", host, port)
	}
	if c.GetType() != clusterv3.Cluster_STRICT_DNS || c.LbPolicy != clusterv3.Cluster_ROUND_ROBIN {
		t.Errorf("type %v lb_policy %v, want STRICT_DNS ROUND_ROBIN", c.GetType(), c.LbPolicy)
	}
	if got := c.GetConnectTimeout().AsDuration(); got != 250*time.Millisecond {
		t.Errorf("connect_timeout %v, want 0.25s", got)
	}
}

func TestBuildGatewayMissingTarget(t *testing.T) {
	out := buildGateway(t, Gateway{Name: "m", Namespace: "ns", ListenPort: GatewayListenPort, Routes: []GatewayRoute{
		{Prefix: "/ghost", Name: "ghost", Namespace: "other"},
		{Prefix: "/a", Name: "a", Namespace: "ns", Target: httpTarget(80)},
	}})
	routes := gatewayRoutes(t, out)
	if want := []string{"/ghost", "/a", "/"}; !slices.Equal(prefixesOf(routes), want) {
		t.Fatalf("route prefixes %v, want %v", prefixesOf(routes), want)
	}
	dr := routes[0].GetDirectResponse()
	if dr.GetStatus() != 503 || dr.GetBody().GetInlineString() != "envoymesh: MeshService \"ghost\" in namespace \"other\" does not exist\n" {
		t.Errorf("missing target answers %d %q, want 503 naming the MeshService", dr.GetStatus(), dr.GetBody().GetInlineString())
	}
	if got := routes[2].GetDirectResponse().GetStatus(); got != 404 {
		t.Errorf("unmatched requests answer %d, want 404", got)
	}
	_, clusters := parseClusters(t, out.Clusters)
	if want := []string{"out.a.ns"}; !slices.Equal(clusterNames(clusters), want) {
		t.Errorf("clusters %v, want %v (no cluster for a missing target)", clusterNames(clusters), want)
	}
}

func TestBuildGatewayRouteOrder(t *testing.T) {
	tests := []struct {
		name     string
		prefixes []string
		want     []string
	}{
		{"longest first", []string{"/", "/api", "/api/v2"}, []string{"/api/v2", "/api", "/"}},
		{"ties by prefix", []string{"/b", "/c", "/a", "/api"}, []string{"/api", "/a", "/b", "/c", "/"}},
		{"404 last without /", []string{"/x"}, []string{"/x", "/"}},
		{"no routes", nil, []string{"/"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gw := Gateway{Name: "m", Namespace: "ns", ListenPort: GatewayListenPort}
			for _, p := range tc.prefixes {
				gw.Routes = append(gw.Routes, GatewayRoute{Prefix: p, Name: "a", Namespace: "ns", Target: httpTarget(80)})
			}
			routes := gatewayRoutes(t, buildGateway(t, gw))
			if got := prefixesOf(routes); !slices.Equal(got, tc.want) {
				t.Errorf("route prefixes %v, want %v", got, tc.want)
			}
			if !slices.Contains(tc.prefixes, "/") && routes[len(routes)-1].GetDirectResponse().GetStatus() != 404 {
				t.Errorf("last route %v, want the 404 catch-all", routes[len(routes)-1])
			}
		})
	}
}

func TestBuildGatewayDeterministic(t *testing.T) {
	gw := Gateway{Name: "m", Namespace: "ns", ListenPort: GatewayListenPort, Routes: []GatewayRoute{
		{Prefix: "/", Name: "web", Namespace: "ns", Target: httpTarget(80)},
		{Prefix: "/api", Name: "api", Namespace: "ns", Target: httpTarget(8080)},
		{Prefix: "/api/v2", Name: "api2", Namespace: "other", Target: httpTarget(8080)},
		{Prefix: "/ghost", Name: "ghost", Namespace: "ns"},
		{Prefix: "/z", Name: "api", Namespace: "ns", Target: httpTarget(8080)},
	}}
	first := buildGateway(t, gw)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := gw
		shuffled.Routes = slices.Clone(gw.Routes)
		rng.Shuffle(len(shuffled.Routes), func(i, j int) {
			shuffled.Routes[i], shuffled.Routes[j] = shuffled.Routes[j], shuffled.Routes[i]
		})
		if got := buildGateway(t, shuffled); !equalOutput(first, got) {
			t.Fatalf("route order %v changed the output", shuffled.Routes)
		}
	}
	_, clusters := parseClusters(t, first.Clusters)
	if want := []string{"out.api.ns", "out.api2.other", "out.web.ns"}; !slices.Equal(clusterNames(clusters), want) {
		t.Errorf("clusters %v, want %v: one per target, sorted by name", clusterNames(clusters), want)
	}
}

// TestGatewayTargetChangeHotReloads: a target's port moving must reach the running
// gateway through the watched files, without restarting it.
func TestGatewayTargetChangeHotReloads(t *testing.T) {
	mesh := seedGatewayMesh()
	found := foundMap(seedMesh()...)
	ref := buildGateway(t, GatewayFor(mesh, found))

	moved := found[types.NamespacedName{Namespace: "default", Name: "service-a"}].DeepCopy()
	moved.Spec.ServicePort = 9000
	found[types.NamespacedName{Namespace: "default", Name: "service-a"}] = moved
	out := buildGateway(t, GatewayFor(mesh, found))

	if bytes.Equal(out.Listeners, ref.Listeners) || bytes.Equal(out.Clusters, ref.Clusters) || out.ConfigVersion == ref.ConfigVersion {
		t.Error("a changed target servicePort must change lds.yaml, cds.yaml and ConfigVersion")
	}
	if out.BootstrapHash != ref.BootstrapHash || !bytes.Equal(out.Bootstrap, ref.Bootstrap) {
		t.Error("a changed target servicePort changed the bootstrap; the gateway would restart")
	}
	_, clusters := parseClusters(t, out.Clusters)
	if _, port := endpointOf(t, clusterNamed(t, clusters, "out.service-a.default")); port != 9000 {
		t.Errorf("endpoint port %d, want 9000", port)
	}
}

func TestBuildGatewayTraffic(t *testing.T) {
	api := meshService("shop", "api", 8081, 15006, v1alpha1.ProtocolHTTP)
	api.Spec.Traffic = &v1alpha1.TrafficPolicy{
		Timeout: tmo("3s"),
		Retries: &v1alpha1.RetryPolicy{Attempts: i32(2)},
	}
	mesh := &v1alpha1.ServiceMesh{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "edge"},
		Spec: v1alpha1.ServiceMeshSpec{
			Defaults: &v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerLeastRequest, Timeout: tmo("10s")},
			Gateway: &v1alpha1.Gateway{Routes: []v1alpha1.GatewayRoute{
				{Prefix: "/api", Service: "api"},
				{Prefix: "/v1/api", Service: "api"},
			}},
		},
	}
	out := buildGateway(t, GatewayFor(mesh, foundMap(api)))
	for _, r := range gatewayRoutes(t, out)[:2] {
		action := r.GetRoute()
		if action.GetCluster() != "out.api.shop" {
			t.Errorf("route %q to %q, want out.api.shop", r.GetMatch().GetPrefix(), action.GetCluster())
		}
		if got := action.GetTimeout().AsDuration(); got != 3*time.Second {
			t.Errorf("route %q timeout %v, want the target's 3s over the mesh's 10s", r.GetMatch().GetPrefix(), got)
		}
		if rp := action.GetRetryPolicy(); rp.GetNumRetries().GetValue() != 2 || rp.GetRetryOn() != defaultRetryOn {
			t.Errorf("route %q retry policy %v", r.GetMatch().GetPrefix(), rp)
		}
	}
	_, clusters := parseClusters(t, out.Clusters)
	if len(clusters) != 1 {
		t.Fatalf("clusters %v: two routes to one service must share its cluster", clusterNames(clusters))
	}
	if clusters[0].LbPolicy != clusterv3.Cluster_LEAST_REQUEST {
		t.Errorf("lb_policy %v, want the mesh default LEAST_REQUEST", clusters[0].LbPolicy)
	}
}

func TestBuildGatewayProtocols(t *testing.T) {
	for _, p := range []v1alpha1.Protocol{"", v1alpha1.ProtocolHTTP, v1alpha1.ProtocolHTTP2, v1alpha1.ProtocolGRPC} {
		t.Run(string(p), func(t *testing.T) {
			out := buildGateway(t, Gateway{Name: "m", Namespace: "ns", ListenPort: GatewayListenPort, Routes: []GatewayRoute{
				{Prefix: "/", Name: "a", Namespace: "ns", Target: &Target{ServicePort: 80, Protocol: p, Traffic: MergeTraffic()}},
			}})
			_, clusters := parseClusters(t, out.Clusters)
			if got := http2Enabled(t, clusterNamed(t, clusters, "out.a.ns")); got != isHTTP2(p) {
				t.Errorf("http2 = %v for protocol %q", got, p)
			}
		})
	}
}

func TestBuildGatewayErrors(t *testing.T) {
	gw := func(routes ...GatewayRoute) Gateway {
		return Gateway{Name: "m", Namespace: "ns", ListenPort: GatewayListenPort, Routes: routes}
	}
	tests := []struct {
		name string
		gw   Gateway
		want string
	}{
		{"no name", Gateway{Namespace: "ns", ListenPort: GatewayListenPort}, "name and namespace"},
		{"listen port unset", Gateway{Name: "m", Namespace: "ns"}, "listen port 0 is not a valid port"},
		{"listen port on admin", Gateway{Name: "m", Namespace: "ns", ListenPort: AdminPort}, "listen port 9901 is reserved"},
		{"listen port on status", Gateway{Name: "m", Namespace: "ns", ListenPort: StatusPort}, "listen port 15021 is reserved"},
		{"relative prefix", gw(GatewayRoute{Prefix: "api", Name: "a", Namespace: "ns"}), `prefix "api" must start with /`},
		{"empty prefix", gw(GatewayRoute{Name: "a", Namespace: "ns"}), `prefix "" must start with /`},
		{"duplicate prefix", gw(
			GatewayRoute{Prefix: "/a", Name: "a", Namespace: "ns"},
			GatewayRoute{Prefix: "/a", Name: "b", Namespace: "ns"},
		), `prefix "/a" is listed twice`},
		{"no service", gw(GatewayRoute{Prefix: "/a", Namespace: "ns"}), "service name and namespace"},
		{"TCP target", gw(GatewayRoute{Prefix: "/db", Name: "db", Namespace: "ns", Target: &Target{ServicePort: 5432, Protocol: v1alpha1.ProtocolTCP}}),
			`gateway route "/db": MeshService ns/db speaks TCP`},
		{"target servicePort unset", gw(GatewayRoute{Prefix: "/a", Name: "a", Namespace: "ns", Target: &Target{}}), "servicePort 0 is not a valid port"},
		{"bad route duration", gw(GatewayRoute{Prefix: "/a", Name: "a", Namespace: "ns", Target: &Target{
			ServicePort: 80, Traffic: MergeTraffic(&v1alpha1.TrafficPolicy{Timeout: tmo("soon")}),
		}}), `gateway route "/a": traffic.timeout`},
		{"bad cluster duration", gw(GatewayRoute{Prefix: "/a", Name: "a", Namespace: "ns", Target: &Target{
			ServicePort: 80, Traffic: MergeTraffic(&v1alpha1.TrafficPolicy{ConnectTimeout: dur("-1s")}),
		}}), "traffic.connectTimeout"},
		{"one service, two targets", gw(
			GatewayRoute{Prefix: "/a", Name: "a", Namespace: "ns", Target: httpTarget(80)},
			GatewayRoute{Prefix: "/b", Name: "a", Namespace: "ns", Target: httpTarget(81)},
		), "MeshService ns/a has a different target on another route"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := BuildGateway(tc.gw, Options{})
			if err == nil {
				t.Fatalf("want an error, got resources with version %s", out.Version)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestGatewayFor(t *testing.T) {
	a := meshService("shop", "a", 8081, 8786, v1alpha1.ProtocolGRPC)
	a.Spec.Traffic = &v1alpha1.TrafficPolicy{ConnectTimeout: dur("1s")}
	b := meshService("infra", "b", 8081, 9000, v1alpha1.ProtocolHTTP)
	defaults := &v1alpha1.TrafficPolicy{ConnectTimeout: dur("2s"), LoadBalancer: v1alpha1.LoadBalancerRandom}
	mesh := func(gw *v1alpha1.Gateway) *v1alpha1.ServiceMesh {
		return &v1alpha1.ServiceMesh{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "edge"},
			Spec:       v1alpha1.ServiceMeshSpec{Defaults: defaults, Gateway: gw},
		}
	}
	tests := []struct {
		name string
		mesh *v1alpha1.ServiceMesh
		want Gateway
	}{
		{"no gateway spec", mesh(nil), Gateway{Name: "edge", Namespace: "shop", ListenPort: 8080}},
		{"resolved, defaulted and missing", mesh(&v1alpha1.Gateway{Routes: []v1alpha1.GatewayRoute{
			{Prefix: "/a", Service: "a"},
			{Prefix: "/b", Service: "b", Namespace: "infra"},
			{Prefix: "/b-here", Service: "b"},
		}}), Gateway{Name: "edge", Namespace: "shop", ListenPort: 8080, Routes: []GatewayRoute{
			{Prefix: "/a", Name: "a", Namespace: "shop", Target: &Target{
				ServicePort: 8786, Protocol: v1alpha1.ProtocolGRPC, Traffic: MergeTraffic(a.Spec.Traffic, defaults),
			}},
			{Prefix: "/b", Name: "b", Namespace: "infra", Target: &Target{
				ServicePort: 9000, Protocol: v1alpha1.ProtocolHTTP, Traffic: MergeTraffic(defaults),
			}},
			{Prefix: "/b-here", Name: "b", Namespace: "shop"},
		}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := GatewayFor(tc.mesh, foundMap(a, b))
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
	// The target's own policy wins over the mesh's, field by field.
	got := GatewayFor(mesh(&v1alpha1.Gateway{Routes: []v1alpha1.GatewayRoute{{Prefix: "/", Service: "a"}}}), foundMap(a)).Routes[0].Target.Traffic
	if *got.ConnectTimeout != "1s" || got.LoadBalancer != v1alpha1.LoadBalancerRandom {
		t.Errorf("traffic %+v, want connectTimeout 1s from the target and Random from the mesh", got)
	}
}

// TestBuildGatewayRouteWithoutConsent: a route into a namespace that did not
// consent answers 403 with the reason, and gets no cluster.
func TestBuildGatewayRouteWithoutConsent(t *testing.T) {
	out := buildGateway(t, Gateway{Name: "m", Namespace: "edge", ListenPort: GatewayListenPort, Routes: []GatewayRoute{
		{Prefix: "/", Name: "payments-admin", Namespace: "shop", NotAllowed: "MeshService shop/payments-admin does not consent to namespace edge"},
	}})
	routes := gatewayRoutes(t, out)
	dr := routes[0].GetDirectResponse()
	if dr.GetStatus() != 403 || dr.GetBody().GetInlineString() != "envoymesh: MeshService shop/payments-admin does not consent to namespace edge\n" {
		t.Errorf("route answers %d %q, want 403 with the reason", dr.GetStatus(), dr.GetBody().GetInlineString())
	}
	if _, clusters := parseClusters(t, out.Clusters); len(clusters) != 0 {
		t.Errorf("clusters %v, want none", clusterNames(clusters))
	}
	_, err := BuildGateway(Gateway{Name: "m", Namespace: "edge", ListenPort: GatewayListenPort, Routes: []GatewayRoute{
		{Prefix: "/", Name: "p", Namespace: "shop", NotAllowed: "no", Target: httpTarget(80)},
	}}, Options{})
	if err == nil {
		t.Error("a route both refused and targeted was accepted")
	}
}
