package envoyconfig

import (
	"bytes"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// richService has resolved and unresolved upstreams of every protocol.
func richService() Service {
	caller, found, mesh := featureMesh()
	svc := ServiceFor(caller, found, mesh)
	svc.Upstreams = append(svc.Upstreams,
		Upstream{Name: "a", Namespace: "shop", LocalPort: 9200, Target: &Target{ServicePort: 80, Protocol: v1alpha1.ProtocolHTTP, Traffic: MergeTraffic()}},
		Upstream{Name: "z", Namespace: "shop", LocalPort: 9050, Target: &Target{ServicePort: 80, Protocol: v1alpha1.ProtocolHTTP, Traffic: MergeTraffic()}},
	)
	return svc
}

func TestBuildSidecarDeterministic(t *testing.T) {
	svc := richService()
	first := build(t, svc)
	if again := build(t, svc); !equalOutput(first, again) {
		t.Fatal("two builds of the same input differ")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := svc
		shuffled.Upstreams = slices.Clone(svc.Upstreams)
		rng.Shuffle(len(shuffled.Upstreams), func(i, j int) {
			shuffled.Upstreams[i], shuffled.Upstreams[j] = shuffled.Upstreams[j], shuffled.Upstreams[i]
		})
		if got := build(t, shuffled); !equalOutput(first, got) {
			t.Fatalf("upstream order %v changed the output", shuffled.Upstreams)
		}
	}
}

func equalOutput(a, b *Output) bool {
	return bytes.Equal(a.Bootstrap, b.Bootstrap) && bytes.Equal(a.Listeners, b.Listeners) &&
		bytes.Equal(a.Clusters, b.Clusters) && a.ConfigVersion == b.ConfigVersion && a.BootstrapHash == b.BootstrapHash
}

func TestBuildSidecarSortsByLocalPort(t *testing.T) {
	out := build(t, richService())
	_, listeners := parseListeners(t, out.Listeners)
	var names []string
	for _, l := range listeners {
		names = append(names, l.Name)
	}
	want := []string{"inbound", "egress_9050", "egress_9100", "egress_9101", "egress_9102", "egress_9200"}
	if !slices.Equal(names, want) {
		t.Errorf("listeners %v, want %v", names, want)
	}
	_, clusters := parseClusters(t, out.Clusters)
	names = nil
	for _, c := range clusters {
		names = append(names, c.Name)
	}
	// egress_9100 is the missing "ghost" upstream: it has a listener but no cluster.
	want = []string{"local_app", "out.z.shop", "out.payments.shop", "out.cache.infra", "out.a.shop"}
	if !slices.Equal(names, want) {
		t.Errorf("clusters %v, want %v", names, want)
	}
}

func TestBuildSidecarVersions(t *testing.T) {
	hex16 := regexp.MustCompile(`^[0-9a-f]{16}$`)
	out := build(t, richService())
	if !hex16.MatchString(out.ConfigVersion) || !hex16.MatchString(out.BootstrapHash) {
		t.Fatalf("ConfigVersion %q and BootstrapHash %q must be 16 hex digits", out.ConfigVersion, out.BootstrapHash)
	}
	lv, _ := parseListeners(t, out.Listeners)
	cv, _ := parseClusters(t, out.Clusters)
	if lv != out.ConfigVersion || cv != out.ConfigVersion {
		t.Errorf("version_info lds %q, cds %q; want ConfigVersion %q in both", lv, cv, out.ConfigVersion)
	}
}

// TestVersionFromTypedResources: the version is known from the typed set alone,
// before anything is rendered, and follows every resource kind.
func TestVersionFromTypedResources(t *testing.T) {
	res, err := BuildSidecar(richService(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := mustRender(t, res)
	if out.ConfigVersion != res.Version || out.BootstrapHash != res.BootstrapVersion {
		t.Errorf("rendered versions %s/%s, want the typed set's %s/%s", out.ConfigVersion, out.BootstrapHash, res.Version, res.BootstrapVersion)
	}
	again, err := BuildSidecar(richService(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Version != res.Version || again.BootstrapVersion != res.BootstrapVersion {
		t.Fatal("the same inputs gave another version")
	}
	changes := map[string]func(r *Resources){
		"listener": func(r *Resources) { r.Listeners[0].StatPrefix = "changed" },
		"cluster":  func(r *Resources) { r.Clusters[0].Name = "changed" },
		"secret":   func(r *Resources) { r.Secrets = append(r.Secrets, &tlsv3.Secret{Name: "identity"}) },
		// The same two listeners in another order are another config.
		"order": func(r *Resources) { r.Listeners[0], r.Listeners[1] = r.Listeners[1], r.Listeners[0] },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			r, err := BuildSidecar(richService(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			change(r)
			if _, err := r.versioned(); err != nil {
				t.Fatal(err)
			}
			if r.Version == res.Version {
				t.Error("Version did not change")
			}
			if r.BootstrapVersion != res.BootstrapVersion {
				t.Error("BootstrapVersion changed with the dynamic resources")
			}
		})
	}
	// Endpoints have their own version: an EDS push moves neither the
	// listeners' and clusters' version nor the bootstrap's.
	t.Run("endpoints", func(t *testing.T) {
		r, err := BuildSidecar(richService(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if r.EndpointsVersion != "" {
			t.Errorf("EndpointsVersion %q without endpoints, want empty", r.EndpointsVersion)
		}
		r.Endpoints = append(r.Endpoints, &endpointv3.ClusterLoadAssignment{ClusterName: "out.b.ns"})
		if _, err := r.versioned(); err != nil {
			t.Fatal(err)
		}
		if r.EndpointsVersion == "" || r.Version != res.Version || r.BootstrapVersion != res.BootstrapVersion {
			t.Errorf("versions %s/%s/%s, want only EndpointsVersion to move from %s/%s/%s",
				r.Version, r.BootstrapVersion, r.EndpointsVersion, res.Version, res.BootstrapVersion, res.EndpointsVersion)
		}
	})
	t.Run("bootstrap", func(t *testing.T) {
		r, err := BuildSidecar(richService(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		r.Bootstrap.Node.Id = "changed"
		if _, err := r.versioned(); err != nil {
			t.Fatal(err)
		}
		if r.BootstrapVersion == res.BootstrapVersion || r.Version != res.Version {
			t.Error("only BootstrapVersion must follow the bootstrap")
		}
	})
}

// TestRenderRefusesWhatFilesCannotCarry: endpoints and secrets other than the
// identity and trust have no file; rendering must not drop them silently.
func TestRenderRefusesWhatFilesCannotCarry(t *testing.T) {
	for name, tc := range map[string]struct {
		change func(*Resources)
		want   string
	}{
		"unknown secret": {func(r *Resources) { r.Secrets = []*tlsv3.Secret{{Name: "other"}} }, `secret "other" has no file`},
		"secret twice": {func(r *Resources) {
			r.Secrets = []*tlsv3.Secret{{Name: IdentitySecretName}, {Name: IdentitySecretName}}
		}, "listed twice"},
		"endpoints": {func(r *Resources) {
			r.Endpoints = []*endpointv3.ClusterLoadAssignment{{ClusterName: "out.b.ns"}}
		}, "1 endpoints"},
	} {
		t.Run(name, func(t *testing.T) {
			res, err := BuildSidecar(richService(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			tc.change(res)
			if _, err := Render(res); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Render: error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestBootstrapHashOnlyFollowsBootstrap: listener and cluster changes must reach
// running sidecars through the watched files, without rolling the pods.
func TestBootstrapHashOnlyFollowsBootstrap(t *testing.T) {
	base := Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786, Protocol: v1alpha1.ProtocolHTTP}
	ref := build(t, base)

	changes := map[string]func(*Service){
		"port":        func(s *Service) { s.Port = 8000 },
		"servicePort": func(s *Service) { s.ServicePort = 8000 },
		"protocol":    func(s *Service) { s.Protocol = v1alpha1.ProtocolTCP },
		"upstream": func(s *Service) {
			s.Upstreams = []Upstream{{Name: "b", Namespace: "ns", LocalPort: 9000, Target: &Target{ServicePort: 80, Traffic: MergeTraffic()}}}
		},
		"unresolved upstream": func(s *Service) { s.Upstreams = []Upstream{{Name: "b", Namespace: "ns", LocalPort: 9000}} },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			svc := base
			change(&svc)
			out := build(t, svc)
			if out.BootstrapHash != ref.BootstrapHash || !bytes.Equal(out.Bootstrap, ref.Bootstrap) {
				t.Error("bootstrap changed; it must not depend on listeners or clusters")
			}
			if out.ConfigVersion == ref.ConfigVersion {
				t.Error("ConfigVersion did not change with the listeners/clusters")
			}
		})
	}

	for name, change := range map[string]func(*Service){
		"name":      func(s *Service) { s.Name = "other" },
		"namespace": func(s *Service) { s.Namespace = "other" },
	} {
		t.Run(name, func(t *testing.T) {
			svc := base
			change(&svc)
			if build(t, svc).BootstrapHash == ref.BootstrapHash {
				t.Error("the node identity changed but BootstrapHash did not")
			}
		})
	}
}

func TestBuildSidecarTrafficChangesVersion(t *testing.T) {
	svc := Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786, Upstreams: []Upstream{
		{Name: "b", Namespace: "ns", LocalPort: 9000, Target: &Target{ServicePort: 80, Traffic: MergeTraffic()}},
	}}
	ref := build(t, svc)
	svc.Upstreams[0].Target = &Target{ServicePort: 80, Traffic: MergeTraffic(&v1alpha1.TrafficPolicy{ConnectTimeout: dur("1s")})}
	if out := build(t, svc); out.ConfigVersion == ref.ConfigVersion {
		t.Error("a changed connect timeout did not change ConfigVersion")
	}
}

func TestBuildSidecarUnresolvedUpstream(t *testing.T) {
	out := build(t, Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786, Upstreams: []Upstream{
		{Name: "b", Namespace: "ns", LocalPort: 9000},
	}})
	_, listeners := parseListeners(t, out.Listeners)
	l := listenerNamed(t, listeners, "egress_9000")
	if host, port := socketOf(l); host != "127.0.0.1" || port != 9000 {
		t.Errorf("listens on %s:%d, want 127.0.0.1:9000", host, port)
	}
	if got := onlyRoutes(t, hcmOf(t, l))[0].GetDirectResponse().GetStatus(); got != 503 {
		t.Errorf("direct response %d, want 503", got)
	}
	_, clusters := parseClusters(t, out.Clusters)
	if len(clusters) != 1 || clusters[0].Name != localAppClusterName {
		t.Errorf("want only local_app for an unresolved upstream, got %d clusters", len(clusters))
	}
}

func TestBuildSidecarProtocols(t *testing.T) {
	for _, p := range []v1alpha1.Protocol{v1alpha1.ProtocolHTTP, v1alpha1.ProtocolHTTP2, v1alpha1.ProtocolGRPC, v1alpha1.ProtocolTCP} {
		t.Run(string(p), func(t *testing.T) {
			out := build(t, Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786, Protocol: p, Upstreams: []Upstream{
				{Name: "b", Namespace: "ns", LocalPort: 9000, Target: &Target{ServicePort: 80, Protocol: p, Traffic: MergeTraffic()}},
			}})
			_, listeners := parseListeners(t, out.Listeners)
			_, clusters := parseClusters(t, out.Clusters)
			for _, l := range listeners {
				if name := onlyFilter(t, l).Name; (name == tcpProxyFilterName) != (p == v1alpha1.ProtocolTCP) {
					t.Errorf("listener %q uses %s for protocol %s", l.Name, name, p)
				}
			}
			for _, c := range clusters {
				if got := http2Enabled(t, c); got != isHTTP2(p) {
					t.Errorf("cluster %q http2 = %v for protocol %s", c.Name, got, p)
				}
			}
		})
	}
}

func TestBuildSidecarClusterDomain(t *testing.T) {
	svc := Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786, Upstreams: []Upstream{
		{Name: "b", Namespace: "other", LocalPort: 9000, Target: &Target{ServicePort: 80, Traffic: MergeTraffic()}},
	}}
	for domain, want := range map[string]string{"": "b.other.svc.cluster.local", "corp.example": "b.other.svc.corp.example"} {
		res, err := BuildSidecar(svc, Options{ClusterDomain: domain})
		if err != nil {
			t.Fatal(err)
		}
		_, clusters := parseClusters(t, mustRender(t, res).Clusters)
		if host, _ := endpointOf(t, clusterNamed(t, clusters, "out.b.other")); host != want {
			t.Errorf("ClusterDomain %q: endpoint host %q, want %q", domain, host, want)
		}
	}
}

func TestBuildSidecarErrors(t *testing.T) {
	ok := func() Service {
		return Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786}
	}
	withUpstreams := func(ups ...Upstream) Service {
		s := ok()
		s.Upstreams = ups
		return s
	}
	target := &Target{ServicePort: 80, Traffic: MergeTraffic()}
	tests := []struct {
		name string
		svc  Service
		want string
	}{
		{"no name", Service{Namespace: "ns", Port: 1, ServicePort: 2}, "name and namespace"},
		{"port unset", Service{Name: "a", Namespace: "ns", ServicePort: 8786}, "port 0 is not a valid port"},
		{"servicePort out of range", Service{Name: "a", Namespace: "ns", Port: 1, ServicePort: 70000}, "servicePort 70000"},
		{"servicePort equals port", Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8081}, "servicePort 8081 clashes with port"},
		{"port on admin", Service{Name: "a", Namespace: "ns", Port: 9901, ServicePort: 8786}, "the Envoy admin port"},
		{"servicePort on status", Service{Name: "a", Namespace: "ns", Port: 1, ServicePort: 15021}, "the Envoy status port"},
		{"localPort on app port", withUpstreams(Upstream{Name: "b", Namespace: "ns", LocalPort: 8081}), "upstream ns/b localPort 8081 clashes with port"},
		{"duplicate localPort", withUpstreams(
			Upstream{Name: "b", Namespace: "ns", LocalPort: 9000},
			Upstream{Name: "c", Namespace: "ns", LocalPort: 9000},
		), "upstream ns/c localPort 9000 clashes with upstream ns/b localPort"},
		{"same upstream twice", withUpstreams(
			Upstream{Name: "b", Namespace: "ns", LocalPort: 9000, Target: target},
			Upstream{Name: "b", Namespace: "ns", LocalPort: 9001, Target: target},
		), "spec.upstreams[1] names MeshService ns/b, as spec.upstreams[0] does"},
		{"upstream servicePort unset", withUpstreams(Upstream{Name: "b", Namespace: "ns", LocalPort: 9000, Target: &Target{}}), "upstream ns/b: servicePort 0"},
		{"bad upstream duration", withUpstreams(Upstream{Name: "b", Namespace: "ns", LocalPort: 9000, Target: &Target{
			ServicePort: 80, Traffic: MergeTraffic(&v1alpha1.TrafficPolicy{ConnectTimeout: dur("fast")}),
		}}), `cluster "out.b.ns" (upstream ns/b): traffic.connectTimeout`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := BuildSidecar(tc.svc, Options{})
			if err == nil {
				t.Fatalf("want an error, got resources with version %s", out.Version)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}
