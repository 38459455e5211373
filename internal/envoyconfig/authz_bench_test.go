package envoyconfig

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
)

// The callee's config as its callers grow, and as the mesh around it grows: the
// authorization policy lists one SPIFFE ID per caller, so the callee's bytes must
// grow with its callers and with nothing else. hack/bench reports these figures
// (docs/benchmarks.md, "Authorization: a new caller").

const authzNamespace = "bench"

// authzMeshService is a MeshService as the API server returns it for hack/bench's
// workload (protocol defaulted to HTTP), calling the given upstreams.
func authzMeshService(name string, upstreams ...string) *v1alpha1.MeshService {
	ms := &v1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Namespace: authzNamespace, Name: name},
		Spec:       v1alpha1.MeshServiceSpec{Port: 8080, ServicePort: 15006, Protocol: v1alpha1.ProtocolHTTP},
	}
	for i, u := range upstreams {
		ms.Spec.Upstreams = append(ms.Spec.Upstreams, v1alpha1.Upstream{Name: u, LocalPort: int32(20001 + i)})
	}
	return ms
}

// authzMesh is the callee "hub" (no upstreams, as in hack/bench's scenario),
// callers caller-0 … caller-(callers-1), each naming hub, and unrelated services
// other-i, each calling other-(i+1) and other-(i+2) (mod unrelated) and never hub.
func authzMesh(callers, unrelated int) []*v1alpha1.MeshService {
	mesh := []*v1alpha1.MeshService{authzMeshService("hub")}
	for i := range callers {
		mesh = append(mesh, authzMeshService(fmt.Sprintf("caller-%d", i), "hub"))
	}
	for i := range unrelated {
		mesh = append(mesh, authzMeshService(fmt.Sprintf("other-%d", i),
			fmt.Sprintf("other-%d", (i+1)%unrelated), fmt.Sprintf("other-%d", (i+2)%unrelated)))
	}
	return mesh
}

// calleeService is what the MeshService controller builds the config of the
// mesh's first service from in the default mesh (mTLS Strict, authorization
// Enforce): its upstreams resolved from the mesh, and as principals the SPIFFE
// IDs of every MeshService of the mesh that names it in spec.upstreams, found by
// scanning the whole mesh (the controller asks its upstream index the same).
func calleeService(mesh []*v1alpha1.MeshService) Service {
	callee := mesh[0]
	byKey := make(map[types.NamespacedName]*v1alpha1.MeshService, len(mesh))
	for _, ms := range mesh {
		byKey[types.NamespacedName{Namespace: ms.Namespace, Name: ms.Name}] = ms
	}
	self := types.NamespacedName{Namespace: callee.Namespace, Name: callee.Name}
	var ids []string
	for _, ms := range mesh {
		for _, u := range ms.Spec.Upstreams {
			if u.Key(ms.Namespace) == self {
				ids = append(ids, identity.SPIFFEID("cluster.local", ms.Namespace, ms.Name))
			}
		}
	}
	slices.Sort(ids)
	found := map[types.NamespacedName]*v1alpha1.MeshService{}
	for _, u := range callee.Spec.Upstreams {
		if up := byKey[u.Key(callee.Namespace)]; up != nil {
			found[u.Key(callee.Namespace)] = up
		}
	}
	svc := ServiceFor(callee, found, nil)
	svc.Security = &Security{MTLS: v1alpha1.MTLSStrict, Authorization: v1alpha1.AuthorizationEnforce, Principals: slices.Compact(ids)}
	return svc
}

// calleeConfig builds and renders the config of the mesh's first service.
func calleeConfig(mesh []*v1alpha1.MeshService) (*Output, error) {
	return buildAndRender(calleeService(mesh))
}

func buildAndRender(svc Service) (*Output, error) {
	res, err := BuildSidecar(svc, Options{ClusterDomain: "cluster.local"})
	if err != nil {
		return nil, err
	}
	return Render(res)
}

// dataBytes is the size of the ConfigMap data objects.ConfigMap makes of out:
// every file it writes.
func dataBytes(out *Output) int {
	return len(out.Bootstrap) + len(out.Listeners) + len(out.Clusters) + len(out.SDSIdentity) + len(out.SDSTrust)
}

// TestAuthzCalleeBytes holds the shape the benchmark reports: the callee's
// lds.yaml names every caller and grows with them, and neither it nor any other
// file changes when 990 unrelated services join the mesh.
func TestAuthzCalleeBytes(t *testing.T) {
	var last int
	for _, callers := range []int{10, 100, 1000} {
		small, err := calleeConfig(authzMesh(callers, 10))
		if err != nil {
			t.Fatal(err)
		}
		large, err := calleeConfig(authzMesh(callers, 1000))
		if err != nil {
			t.Fatal(err)
		}
		for i := range callers {
			id := identity.SPIFFEID("cluster.local", authzNamespace, fmt.Sprintf("caller-%d", i))
			if !strings.Contains(string(small.Listeners), `"`+id+`"`) && !strings.Contains(string(small.Listeners), " "+id+"\n") {
				t.Fatalf("callers=%d: lds.yaml does not name %s", callers, id)
			}
		}
		if small.ConfigVersion != large.ConfigVersion || dataBytes(small) != dataBytes(large) ||
			string(small.Listeners) != string(large.Listeners) || string(small.Clusters) != string(large.Clusters) ||
			string(small.Bootstrap) != string(large.Bootstrap) {
			t.Errorf("callers=%d: the callee's config changed with 990 unrelated services: %d B (version %s) against %d B (version %s)",
				callers, dataBytes(small), small.ConfigVersion, dataBytes(large), large.ConfigVersion)
		}
		if len(small.Listeners) <= last {
			t.Errorf("callers=%d: lds.yaml is %d B, not more than the %d B of fewer callers", callers, len(small.Listeners), last)
		}
		last = len(small.Listeners)
		t.Logf("callers=%d: lds.yaml %d B, ConfigMap data %d B (10 and 1000 unrelated services alike)", callers, len(small.Listeners), dataBytes(small))
	}
}

// BenchmarkAuthzCallee builds and renders the callee's config (what a reconcile
// of the callee pays when a caller comes or goes; finding the callers, outside
// the loop, is an index lookup in the controller) with 10, 100 and 1000
// callers, in a mesh with 10 and with 1000 unrelated services besides, and
// reports the bytes of its lds.yaml (lds-B) and of its whole ConfigMap data
// (data-B).
func BenchmarkAuthzCallee(b *testing.B) {
	for _, callers := range []int{10, 100, 1000} {
		for _, unrelated := range []int{10, 1000} {
			svc := calleeService(authzMesh(callers, unrelated))
			b.Run(fmt.Sprintf("callers=%d/unrelated=%d", callers, unrelated), func(b *testing.B) {
				b.ReportAllocs()
				var out *Output
				for b.Loop() {
					var err error
					if out, err = buildAndRender(svc); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(out.Listeners)), "lds-B")
				b.ReportMetric(float64(dataBytes(out)), "data-B")
			})
		}
	}
}
