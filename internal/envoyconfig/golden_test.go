package envoyconfig

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from the current output")

func meshService(ns, name string, port, servicePort int32, protocol v1alpha1.Protocol, ups ...v1alpha1.Upstream) *v1alpha1.MeshService {
	return &v1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.MeshServiceSpec{
			Port: port, ServicePort: servicePort, Protocol: protocol, Upstreams: ups,
		},
	}
}

func foundMap(mss ...*v1alpha1.MeshService) map[types.NamespacedName]*v1alpha1.MeshService {
	m := map[types.NamespacedName]*v1alpha1.MeshService{}
	for _, ms := range mss {
		m[types.NamespacedName{Namespace: ms.Namespace, Name: ms.Name}] = ms
	}
	return m
}

// seedMesh is the article's three services: A calls B and C through local egress ports.
func seedMesh() []*v1alpha1.MeshService {
	return []*v1alpha1.MeshService{
		meshService("default", "service-a", 8081, 8786, v1alpha1.ProtocolHTTP,
			v1alpha1.Upstream{Name: "service-b", LocalPort: 8788},
			v1alpha1.Upstream{Name: "service-c", LocalPort: 8791}),
		meshService("default", "service-b", 8082, 8789, v1alpha1.ProtocolHTTP),
		meshService("default", "service-c", 8083, 8790, v1alpha1.ProtocolHTTP),
	}
}

// featureMesh exercises every option: gRPC, TCP, a cross-namespace upstream, a
// missing upstream, and traffic policy from all three layers.
func featureMesh() (caller *v1alpha1.MeshService, found map[types.NamespacedName]*v1alpha1.MeshService, mesh *v1alpha1.ServiceMesh) {
	payments := meshService("shop", "payments", 9000, 15006, v1alpha1.ProtocolGRPC)
	payments.Spec.Traffic = &v1alpha1.TrafficPolicy{
		LoadBalancer: v1alpha1.LoadBalancerLeastRequest,
		Timeout:      tmo("3s"),
		Retries:      &v1alpha1.RetryPolicy{Attempts: i32(2), PerTryTimeout: dur("1s"), RetryOn: "unavailable,cancelled"},
		CircuitBreaker: &v1alpha1.CircuitBreaker{
			MaxConnections: i32(100), MaxPendingRequests: i32(50), MaxRequests: i32(200), MaxRetries: i32(3),
		},
		OutlierDetection: &v1alpha1.OutlierDetection{
			Consecutive5xx: i32(5), Interval: dur("10s"), BaseEjectionTime: dur("30s"), MaxEjectionPercent: i32(50),
		},
		HealthCheck: &v1alpha1.HealthCheck{Path: "/healthz", Interval: dur("5s"), Timeout: dur("500ms"), HealthyThreshold: i32(1), UnhealthyThreshold: i32(2)},
	}
	cache := meshService("infra", "cache", 6379, 16379, v1alpha1.ProtocolTCP)
	cache.Spec.Traffic = &v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerMaglev, HealthCheck: &v1alpha1.HealthCheck{}}
	caller = meshService("shop", "frontend", 8080, 15006, v1alpha1.ProtocolHTTP2,
		v1alpha1.Upstream{Name: "payments", LocalPort: 9101, Traffic: &v1alpha1.TrafficPolicy{
			Retries: &v1alpha1.RetryPolicy{Attempts: i32(4)},
		}},
		v1alpha1.Upstream{Name: "cache", Namespace: "infra", LocalPort: 9102},
		v1alpha1.Upstream{Name: "ghost", LocalPort: 9100},
	)
	mesh = &v1alpha1.ServiceMesh{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default"},
		Spec:       v1alpha1.ServiceMeshSpec{Defaults: &v1alpha1.TrafficPolicy{ConnectTimeout: dur("1s")}},
	}
	return caller, foundMap(payments, cache), mesh
}

// checkGolden compares got with testdata/<dir>/<file>, or rewrites it under -update.
func checkGolden(t *testing.T, dir, file string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", dir, file)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./internal/envoyconfig -update` to create it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from the generated output; review and run with -update if intended.\n--- got ---\n%s", path, got)
	}
}

func checkGoldenOutput(t *testing.T, dir string, out *Output) {
	t.Helper()
	checkGolden(t, dir, BootstrapFile, out.Bootstrap)
	checkGolden(t, dir, ListenersFile, out.Listeners)
	checkGolden(t, dir, ClustersFile, out.Clusters)
}

func TestGoldenSeedMesh(t *testing.T) {
	mss := seedMesh()
	found := foundMap(mss...)
	for _, ms := range mss {
		t.Run(ms.Name, func(t *testing.T) {
			out := build(t, ServiceFor(ms, found, nil))
			checkGoldenOutput(t, filepath.Join("seed", ms.Name), out)
		})
	}
}

func TestGoldenFeatures(t *testing.T) {
	caller, found, mesh := featureMesh()
	out := build(t, ServiceFor(caller, found, mesh))
	checkGoldenOutput(t, "features", out)
}

// TestGoldenFilesLoad reads every golden file back as Envoy would and validates
// each resource, so a hand-edited or stale golden file cannot hide an invalid config.
func TestGoldenFilesLoad(t *testing.T) {
	if *update {
		t.Skip("golden files are being rewritten")
	}
	var dirs []string
	for _, pattern := range []string{"*", "*/*"} {
		found, err := filepath.Glob(filepath.Join("testdata", pattern, ListenersFile))
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, found...)
	}
	// seed/service-a,b,c, features, gateway and gateway-hosts; under security/
	// each mode's lds.yaml, the egress caller and the gateway; under
	// observability/ each case's lds.yaml (and cds.yaml when it traces); under
	// xds/ service-a and the gateway.
	if want := 6 + len(securityGoldenCases) + 2 + len(observabilityGoldenCases) + 2; len(dirs) != want {
		t.Fatalf("found %d golden directories, want %d: %v", len(dirs), want, dirs)
	}
	for _, lds := range dirs {
		dir := filepath.Dir(lds)
		t.Run(dir, func(t *testing.T) {
			out := &Output{}
			for name, dst := range map[string]*[]byte{BootstrapFile: &out.Bootstrap, ListenersFile: &out.Listeners, ClustersFile: &out.Clusters,
				SDSIdentityFile: &out.SDSIdentity, SDSTrustFile: &out.SDSTrust} {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				*dst = b
			}
			if out.Bootstrap != nil {
				if err := parseBootstrap(t, out.Bootstrap).ValidateAll(); err != nil {
					t.Errorf("bootstrap: %v", err)
				}
			}
			lv, listeners := parseListeners(t, out.Listeners)
			for _, l := range listeners {
				if err := l.ValidateAll(); err != nil {
					t.Errorf("listener %q: %v", l.Name, err)
				}
			}
			if out.Clusters != nil {
				cv, clusters := parseClusters(t, out.Clusters)
				if lv == "" || lv != cv {
					t.Errorf("version_info: lds %q, cds %q; want equal and non-empty", lv, cv)
				}
				for _, c := range clusters {
					if err := c.ValidateAll(); err != nil {
						t.Errorf("cluster %q: %v", c.Name, err)
					}
				}
			}
			// Deep, through every typed config, once all files are there.
			if out.Bootstrap != nil && out.Clusters != nil {
				out.ConfigVersion = lv
				if err := validateRendered(out); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// TestSeedTopology encodes the article's wiring on the parsed output: each sidecar
// accepts callers on its service port and forwards to its app on loopback, and
// service-a reaches B and C through loopback egress ports and STRICT_DNS clusters.
func TestSeedTopology(t *testing.T) {
	type egress struct {
		localPort uint32
		cluster   string
		host      string
		port      uint32
	}
	tests := []struct {
		name        string
		servicePort uint32
		appPort     uint32
		egress      []egress
	}{
		{name: "service-a", servicePort: 8786, appPort: 8081, egress: []egress{
			{8788, "out.service-b.default", "service-b.default.svc.cluster.local", 8789},
			{8791, "out.service-c.default", "service-c.default.svc.cluster.local", 8790},
		}},
		{name: "service-b", servicePort: 8789, appPort: 8082},
		{name: "service-c", servicePort: 8790, appPort: 8083},
	}
	mss := seedMesh()
	found := foundMap(mss...)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := build(t, ServiceFor(mss[i], found, nil))
			_, listeners := parseListeners(t, out.Listeners)
			_, clusters := parseClusters(t, out.Clusters)
			if len(listeners) != 1+len(tc.egress) || len(clusters) != 1+len(tc.egress) {
				t.Fatalf("got %d listeners and %d clusters, want %d of each", len(listeners), len(clusters), 1+len(tc.egress))
			}

			in := listenerNamed(t, listeners, inboundListenerName)
			if host, port := socketOf(in); host != "0.0.0.0" || port != tc.servicePort {
				t.Errorf("inbound listener on %s:%d, want 0.0.0.0:%d", host, port, tc.servicePort)
			}
			if got := onlyRoutes(t, hcmOf(t, in))[0].GetRoute().GetCluster(); got != localAppClusterName {
				t.Errorf("inbound routes to %q, want %q", got, localAppClusterName)
			}
			app := clusterNamed(t, clusters, localAppClusterName)
			if host, port := endpointOf(t, app); host != "127.0.0.1" || port != tc.appPort {
				t.Errorf("local_app at %s:%d, want 127.0.0.1:%d", host, port, tc.appPort)
			}
			if app.GetType() != clusterv3.Cluster_STATIC {
				t.Errorf("local_app type %v, want STATIC", app.GetType())
			}

			for _, e := range tc.egress {
				l := listenerNamed(t, listeners, egressListenerName(int32(e.localPort)))
				if host, port := socketOf(l); host != "127.0.0.1" || port != e.localPort {
					t.Errorf("egress listener on %s:%d, want 127.0.0.1:%d", host, port, e.localPort)
				}
				if got := onlyRoutes(t, hcmOf(t, l))[0].GetRoute().GetCluster(); got != e.cluster {
					t.Errorf("egress %d routes to %q, want %q", e.localPort, got, e.cluster)
				}
				c := clusterNamed(t, clusters, e.cluster)
				if host, port := endpointOf(t, c); host != e.host || port != e.port {
					t.Errorf("cluster %q endpoint %s:%d, want %s:%d", e.cluster, host, port, e.host, e.port)
				}
				if c.GetType() != clusterv3.Cluster_STRICT_DNS {
					t.Errorf("cluster %q type %v, want STRICT_DNS", e.cluster, c.GetType())
				}
				if c.LbPolicy != clusterv3.Cluster_ROUND_ROBIN {
					t.Errorf("cluster %q lb_policy %v, want ROUND_ROBIN", e.cluster, c.LbPolicy)
				}
				if got := c.GetConnectTimeout().AsDuration(); got != 250*time.Millisecond {
					t.Errorf("cluster %q connect_timeout %v, want 0.25s", e.cluster, got)
				}
			}
		})
	}
}
