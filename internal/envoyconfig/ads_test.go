package envoyconfig

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// testADS is the manager of config/default: Service envoymesh-xds in
// envoymesh-system, ServiceAccount envoymesh-controller-manager.
var testADS = ADS{
	Address:        "envoymesh-xds.envoymesh-system.svc.cluster.local",
	Port:           18000,
	ServerSPIFFEID: "spiffe://cluster.local/ns/envoymesh-system/sa/envoymesh-controller-manager",
}

func testADSDelivery(t testing.TB) Delivery {
	t.Helper()
	d, err := ADSDelivery(testADS)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestADSDeliveryBootstrap(t *testing.T) {
	d := testADSDelivery(t)
	res, err := BuildSidecar(Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786}, Options{Delivery: &d})
	if err != nil {
		t.Fatal(err)
	}
	// Read back from the rendered file, as Envoy would.
	out := mustRender(t, res)
	if err := validateRendered(outWithFiles(t, res, out)); err != nil {
		t.Fatal(err)
	}
	b := parseBootstrap(t, out.Bootstrap)
	dyn := b.GetDynamicResources()

	ads := &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	for name, got := range map[string]*corev3.ConfigSource{"lds_config": dyn.GetLdsConfig(), "cds_config": dyn.GetCdsConfig()} {
		if diff := cmp.Diff(ads, got, protocmp.Transform()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	api := dyn.GetAdsConfig()
	if api.GetApiType() != corev3.ApiConfigSource_GRPC || api.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("ads_config %v, want GRPC over v3", api)
	}
	if gs := api.GetGrpcServices(); len(gs) != 1 || gs[0].GetEnvoyGrpc().GetClusterName() != XDSClusterName {
		t.Errorf("grpc_services %v, want envoy_grpc to %q", gs, XDSClusterName)
	}
	if !api.GetSetNodeOnFirstMessageOnly() {
		t.Error("set_node_on_first_message_only is not set")
	}
	if rl := api.GetRateLimitSettings(); rl.GetMaxTokens().GetValue() != 100 || rl.GetFillRate().GetValue() != 10 {
		t.Errorf("rate_limit_settings %v, want 100 tokens filled at 10/s", rl)
	}

	static := b.GetStaticResources()
	if names := clusterNames(static.GetClusters()); !slices.Equal(names, []string{adminClusterName, XDSClusterName}) {
		t.Fatalf("static clusters %v, want the admin's and the xDS server's", names)
	}
	if len(static.GetListeners()) != 1 || static.Listeners[0].Name != statusListenerName {
		t.Errorf("static listeners %v, want the status listener alone", static.GetListeners())
	}
	if addr := b.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); addr != loopbackAddress {
		t.Errorf("admin on %q, want loopback", addr)
	}

	xds := clusterNamed(t, static.Clusters, XDSClusterName)
	if xds.GetType() != clusterv3.Cluster_STRICT_DNS {
		t.Errorf("xDS cluster type %v, want STRICT_DNS", xds.GetType())
	}
	if host, port := endpointOf(t, xds); host != testADS.Address || port != uint32(testADS.Port) {
		t.Errorf("xDS cluster dials %s:%d, want %s:%d", host, port, testADS.Address, testADS.Port)
	}
	if !http2Enabled(t, xds) {
		t.Error("the xDS cluster does not speak HTTP/2")
	}
	if xds.GetUpstreamConnectionOptions().GetTcpKeepalive() == nil {
		t.Error("the xDS cluster has no TCP keepalive")
	}
	ctx := upstreamOf(t, xds)
	if ctx.Sni != testADS.Address {
		t.Errorf("sni %q, want %q", ctx.Sni, testADS.Address)
	}
	if got := sansOf(t, ctx.CommonTlsContext); !slices.Equal(got, []string{testADS.ServerSPIFFEID}) {
		t.Errorf("required SANs %v, want exactly the manager's SPIFFE ID", got)
	}
	if got := ctx.CommonTlsContext.AlpnProtocols; !slices.Equal(got, []string{"h2"}) {
		t.Errorf("ALPN %v, want h2 alone", got)
	}
	// The secrets come from the SDS files, never over the channel they secure.
	certs := ctx.CommonTlsContext.GetTlsCertificateSdsSecretConfigs()
	trust := ctx.CommonTlsContext.GetCombinedValidationContext().GetValidationContextSdsSecretConfig()
	for want, got := range map[string]*tlsv3.SdsSecretConfig{SDSIdentityFile: certs[0], SDSTrustFile: trust} {
		if path := got.GetSdsConfig().GetPathConfigSource().GetPath(); path != MountPath+"/"+want {
			t.Errorf("secret %q read from %q, want the file %s", got.GetName(), path, want)
		}
	}
	if len(certs) != 1 || certs[0].Name != IdentitySecretName || trust.GetName() != TrustSecretName {
		t.Errorf("secrets %v and %v, want the identity and the trust", certs, trust)
	}
}

// outWithFiles is out with lds.yaml and cds.yaml rendered as the snapshot's
// listeners and clusters, for validateRendered, which reads them.
func outWithFiles(t *testing.T, res *Resources, out *Output) *Output {
	t.Helper()
	full := *out
	var err error
	if full.Listeners, err = discoveryResponse(res.Listeners, res.Version); err != nil {
		t.Fatal(err)
	}
	if full.Clusters, err = discoveryResponse(res.Clusters, res.Version); err != nil {
		t.Fatal(err)
	}
	full.ConfigVersion = res.Version
	return &full
}

func TestADSDeliveryRefusesBadInput(t *testing.T) {
	for name, tc := range map[string]struct {
		change func(*ADS)
		want   string
	}{
		"no address":      {func(a *ADS) { a.Address = "" }, "DNS name"},
		"address w/ port": {func(a *ADS) { a.Address += ":18000" }, "DNS name"},
		"URL":             {func(a *ADS) { a.Address = "https://" + a.Address }, "DNS name"},
		"port 0":          {func(a *ADS) { a.Port = 0 }, "port"},
		"port too large":  {func(a *ADS) { a.Port = 70000 }, "port"},
		"no server ID":    {func(a *ADS) { a.ServerSPIFFEID = "" }, "SPIFFE"},
		"not SPIFFE":      {func(a *ADS) { a.ServerSPIFFEID = "manager" }, "SPIFFE"},
	} {
		t.Run(name, func(t *testing.T) {
			a := testADS
			tc.change(&a)
			if _, err := ADSDelivery(a); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one about %q", err, tc.want)
			}
		})
	}
}

// TestDeliveryNeedsADSServer: a source that names ADS without an ADS server is
// refused by the build rather than by Envoy.
func TestDeliveryNeedsADSServer(t *testing.T) {
	for _, field := range []string{"lds_config", "cds_config", "eds_config"} {
		t.Run(field, func(t *testing.T) {
			d := testADSDelivery(t)
			files := FileDelivery()
			d.ADS = nil
			switch field {
			case "lds_config":
				d.CDS, d.EDS = files.CDS, nil
			case "cds_config":
				d.LDS, d.EDS = files.LDS, nil
			default:
				d.LDS, d.CDS = files.LDS, files.CDS
			}
			svc := Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786}
			if _, err := BuildSidecar(svc, Options{Delivery: &d}); err == nil || !strings.Contains(err.Error(), field) {
				t.Errorf("BuildSidecar: error %v, want %s named", err, field)
			}
			if _, err := BuildGateway(Gateway{Name: "m", Namespace: "ns", ListenPort: GatewayListenPort}, Options{Delivery: &d}); err == nil || !strings.Contains(err.Error(), field) {
				t.Errorf("BuildGateway: error %v, want %s named", err, field)
			}
		})
	}
}

// TestADSRender: the ConfigMap carries the bootstrap and the SDS files, with
// or without an identity, and no lds.yaml or cds.yaml; it changes only with
// the bootstrap, never with listeners, clusters or endpoints.
func TestADSRender(t *testing.T) {
	d := testADSDelivery(t)
	secure := meshCaller()
	identity := build(t, secure) // file delivery, for its SDS files
	for name, svc := range map[string]Service{"with identity": secure, "plaintext mesh": plaintext(secure)} {
		t.Run(name, func(t *testing.T) {
			res, err := BuildSidecar(svc, Options{Delivery: &d})
			if err != nil {
				t.Fatal(err)
			}
			out := mustRender(t, res)
			if out.Listeners != nil || out.Clusters != nil || out.ConfigVersion != "" {
				t.Errorf("rendered lds.yaml (%d B), cds.yaml (%d B) or a ConfigVersion (%q) under ADS", len(out.Listeners), len(out.Clusters), out.ConfigVersion)
			}
			if !bytes.Equal(out.SDSIdentity, identity.SDSIdentity) || !bytes.Equal(out.SDSTrust, identity.SDSTrust) {
				t.Error("the SDS files differ from file delivery's, or are missing")
			}
			if out.BootstrapHash != res.BootstrapVersion {
				t.Error("BootstrapHash is not the bootstrap's version")
			}
			if err := validateRendered(outWithFiles(t, res, out)); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("FilesVersion follows the files only", func(t *testing.T) {
		res, err := BuildSidecar(secure, Options{Delivery: &d})
		if err != nil {
			t.Fatal(err)
		}
		changed := secure
		changed.Upstreams = changed.Upstreams[1:]
		other, err := BuildSidecar(changed, Options{Delivery: &d, Endpoints: map[string]*endpointv3.ClusterLoadAssignment{
			"out.api.shop": ClusterLoadAssignment("out.api.shop", 15006, []discoveryv1.EndpointSlice{v4(ep("10.0.0.1", condReady, ""))}),
		}})
		if err != nil {
			t.Fatal(err)
		}
		if other.Version == res.Version || other.FilesVersion != res.FilesVersion {
			t.Errorf("FilesVersion %q → %q with other listeners, clusters and endpoints; want it unchanged", res.FilesVersion, other.FilesVersion)
		}
		if !bytes.Equal(mustRender(t, other).Bootstrap, mustRender(t, res).Bootstrap) {
			t.Error("the ConfigMap's bootstrap changed")
		}
		renamed := secure
		renamed.Name = "backend"
		moved, err := BuildSidecar(renamed, Options{Delivery: &d})
		if err != nil {
			t.Fatal(err)
		}
		if moved.FilesVersion == res.FilesVersion {
			t.Error("FilesVersion did not follow the bootstrap (node id)")
		}
		files, err := BuildSidecar(secure, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if want := files.Version + "/" + files.BootstrapVersion; files.FilesVersion != want {
			t.Errorf("file delivery's FilesVersion %q, want %q", files.FilesVersion, want)
		}
	})

	t.Run("bootstrap secrets must agree with the others", func(t *testing.T) {
		res, err := BuildSidecar(secure, Options{Delivery: &d})
		if err != nil {
			t.Fatal(err)
		}
		res.BootstrapSecrets = []*tlsv3.Secret{{Name: IdentitySecretName}}
		if _, err := Render(res); err == nil || !strings.Contains(err.Error(), "different secrets") {
			t.Errorf("Render: error %v, want the conflict refused", err)
		}
	})
}

// plaintext is svc in a mesh with mTLS Disabled: no identity, no peers.
func plaintext(svc Service) Service {
	svc.Security = nil
	svc.Upstreams = slices.Clone(svc.Upstreams)
	for i, u := range svc.Upstreams {
		if u.Target != nil {
			target := *u.Target
			target.Peer = nil
			svc.Upstreams[i].Target = &target
		}
	}
	return svc
}

// withoutDiscovery is c without how it finds its endpoints, for comparing an
// EDS cluster with its DNS twin.
func withoutDiscovery(c *clusterv3.Cluster) *clusterv3.Cluster {
	c = proto.Clone(c).(*clusterv3.Cluster)
	c.ClusterDiscoveryType, c.EdsClusterConfig, c.LoadAssignment = nil, nil, nil
	c.DnsRefreshRate, c.RespectDnsTtl, c.DnsLookupFamily = nil, false, clusterv3.Cluster_AUTO
	return c
}

// TestEDSClusters: under EDS an upstream cluster is the DNS one with EDS from
// ADS for discovery, named by its own name, and everything else (traffic
// policy, TLS, health checks, HTTP/2) the same; loopback and collector
// clusters stay as they are, and so do the listeners.
func TestEDSClusters(t *testing.T) {
	d := testADSDelivery(t)
	svc := meshCaller()
	svc.Upstreams[0].Target.Traffic.CircuitBreaker = &v1alpha1.CircuitBreaker{MaxConnections: i32(10)}
	svc.Upstreams[0].Target.Traffic.OutlierDetection = &v1alpha1.OutlierDetection{Consecutive5xx: i32(3)}
	dns, err := BuildSidecar(svc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	eds, err := BuildSidecar(svc, Options{Delivery: &d})
	if err != nil {
		t.Fatal(err)
	}
	if !equalMessages(dns.Listeners, eds.Listeners) || !equalMessages(dns.Secrets, eds.Secrets) {
		t.Error("EDS changed the listeners or the secrets")
	}
	if len(dns.Clusters) != len(eds.Clusters) {
		t.Fatalf("%d clusters under EDS, %d with DNS", len(eds.Clusters), len(dns.Clusters))
	}
	for i, c := range eds.Clusters {
		t.Run(c.Name, func(t *testing.T) {
			if err := validateDeep(c); err != nil {
				t.Fatal(err)
			}
			if c.Name == localAppClusterName {
				if !proto.Equal(c, dns.Clusters[i]) {
					t.Error("the app's loopback cluster changed")
				}
				return
			}
			if c.GetType() != clusterv3.Cluster_EDS || c.GetLoadAssignment() != nil || c.GetDnsRefreshRate() != nil {
				t.Errorf("type %v, load assignment %v, dns_refresh_rate %v; want EDS without DNS settings", c.GetType(), c.GetLoadAssignment(), c.GetDnsRefreshRate())
			}
			want := &clusterv3.Cluster_EdsClusterConfig{ServiceName: c.Name, EdsConfig: &corev3.ConfigSource{
				ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
			}}
			if diff := cmp.Diff(want, c.GetEdsClusterConfig(), protocmp.Transform()); diff != "" {
				t.Errorf("eds_cluster_config (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(withoutDiscovery(dns.Clusters[i]), withoutDiscovery(c), protocmp.Transform()); diff != "" {
				t.Errorf("the EDS cluster differs from the DNS one beyond discovery (-dns +eds):\n%s", diff)
			}
		})
	}

	t.Run("gateway", func(t *testing.T) {
		gw := seedGatewayWithIdentity()
		dns, err := BuildGateway(gw, Options{})
		if err != nil {
			t.Fatal(err)
		}
		eds, err := BuildGateway(gw, Options{Delivery: &d})
		if err != nil {
			t.Fatal(err)
		}
		if names := eds.EndpointClusters(); !slices.Equal(names, []string{"out.service-a.default"}) {
			t.Errorf("EDS clusters %v, want the route target's", names)
		}
		if len(eds.Endpoints) != 1 || eds.Endpoints[0].ClusterName != "out.service-a.default" {
			t.Errorf("endpoints %v, want one assignment for the target", eds.Endpoints)
		}
		if !equalMessages(dns.Listeners, eds.Listeners) || !proto.Equal(withoutDiscovery(dns.Clusters[0]), withoutDiscovery(eds.Clusters[0])) {
			t.Error("EDS changed the gateway beyond discovery")
		}
	})
}

// seedGatewayWithIdentity is the seed's gateway with an identity: a route to
// service-a over mTLS, as in testdata/security/gateway.
func seedGatewayWithIdentity() Gateway {
	target := httpTarget(8786)
	target.Peer = &Peer{SPIFFEID: "spiffe://cluster.local/ns/default/sa/service-a", SNI: "service-a.default.svc.cluster.local"}
	return Gateway{Name: "default", Namespace: "default", ListenPort: GatewayListenPort,
		Routes:   []GatewayRoute{{Prefix: "/", Name: "service-a", Namespace: "default", Target: target}},
		Security: &Security{MTLS: v1alpha1.MTLSStrict, Authorization: v1alpha1.AuthorizationEnforce}}
}

// seedSlices are the EndpointSlices of the seed's services in the golden
// files: service-b in two zones with one pod terminating and one in two
// slices, service-c with one pod starting, service-a with two ready pods.
func seedSlices() map[string][]discoveryv1.EndpointSlice {
	return map[string][]discoveryv1.EndpointSlice{
		"service-a": {v4At(8786, ep("10.244.1.10", condReady, "zone-a"), ep("10.244.2.10", condReady, "zone-b"))},
		"service-b": {
			v4At(8789, ep("10.244.1.20", condReady, "zone-a"), ep("10.244.2.21", condTerminating, "zone-b")),
			v4At(8789, ep("10.244.2.20", condReady, "zone-b"), ep("10.244.1.20", condReady, "zone-a")),
		},
		"service-c": {v4At(8790, ep("10.244.1.30", condReady, ""), ep("10.244.1.31", condStarting, ""))},
	}
}

func v4At(port int32, eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
	s := v4(eps...)
	s.Ports[0].Port = &port
	return s
}

// seedEndpoints are the assignments the controller would compute from
// seedSlices: one per upstream MeshService, keyed by its cluster name.
func seedEndpoints(t *testing.T) map[string]*endpointv3.ClusterLoadAssignment {
	t.Helper()
	ports := map[string]int32{"service-a": 8786, "service-b": 8789, "service-c": 8790}
	out := map[string]*endpointv3.ClusterLoadAssignment{}
	for name, slices := range seedSlices() {
		cluster := UpstreamClusterName(name, "default")
		out[cluster] = ClusterLoadAssignment(cluster, ports[name], slices)
	}
	return out
}

// seedStrict is seed service-a in a mesh with mTLS Strict: its identity, the
// gateway as its caller, and B and C reached over mTLS.
func seedStrict() Service {
	mss := seedMesh()
	svc := ServiceFor(mss[0], foundMap(mss...), nil)
	svc.Security = &Security{MTLS: v1alpha1.MTLSStrict, Authorization: v1alpha1.AuthorizationEnforce,
		Principals: []string{"spiffe://cluster.local/ns/default/sa/default-gateway"}}
	for i, u := range svc.Upstreams {
		svc.Upstreams[i].Target.Peer = &Peer{SPIFFEID: "spiffe://cluster.local/ns/default/sa/" + u.Name, SNI: u.Name + ".default.svc.cluster.local"}
	}
	return svc
}

// TestGoldenADS pins testdata/xds/<case>/: the ConfigMap's files under ADS
// (envoy.yaml and the SDS files) and, as DiscoveryResponse files, what the
// snapshot carries (lds.yaml, cds.yaml at Version, eds.yaml at
// EndpointsVersion), for seed service-a and the seed gateway in a Strict mesh.
func TestGoldenADS(t *testing.T) {
	d := testADSDelivery(t)
	opts := Options{ClusterDomain: "cluster.local", Delivery: &d, Endpoints: seedEndpoints(t)}
	sidecar, err := BuildSidecar(seedStrict(), opts)
	if err != nil {
		t.Fatal(err)
	}
	gateway, err := BuildGateway(seedGatewayWithIdentity(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for name, res := range map[string]*Resources{"service-a": sidecar, "gateway": gateway} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("xds", name)
			out := mustRender(t, res)
			if out.Listeners != nil || out.Clusters != nil {
				t.Fatal("Render wrote lds.yaml or cds.yaml under ADS")
			}
			full := outWithFiles(t, res, out)
			if err := validateRendered(full); err != nil {
				t.Fatal(err)
			}
			checkGoldenSecurityOutput(t, dir, full)
			eds, err := discoveryResponse(res.Endpoints, res.EndpointsVersion)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, dir, "eds.yaml", eds)
			if *update {
				return
			}
			// eds.yaml read back is what was built, and valid.
			version, parsed := parseResources[*endpointv3.ClusterLoadAssignment](t, eds)
			if version != res.EndpointsVersion || !equalMessages(parsed, res.Endpoints) {
				t.Error("eds.yaml does not read back as the endpoints")
			}
			for _, cla := range parsed {
				if err := validateDeep(cla); err != nil {
					t.Error(err)
				}
			}
		})
	}
}
