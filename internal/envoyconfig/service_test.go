package envoyconfig

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

func TestServiceFor(t *testing.T) {
	callee := func(ns, name string, servicePort int32, p v1alpha1.Protocol, tp *v1alpha1.TrafficPolicy) *v1alpha1.MeshService {
		ms := meshService(ns, name, 1, servicePort, p)
		ms.Spec.Traffic = tp
		return ms
	}
	caller := meshService("shop", "web", 8080, 15006, v1alpha1.ProtocolHTTP2,
		v1alpha1.Upstream{Name: "cart", LocalPort: 9001, Traffic: &v1alpha1.TrafficPolicy{Timeout: tmo("1s")}},
		v1alpha1.Upstream{Name: "db", Namespace: "data", LocalPort: 9002},
		v1alpha1.Upstream{Name: "gone", LocalPort: 9003},
		v1alpha1.Upstream{Name: "nil-entry", LocalPort: 9004},
		v1alpha1.Upstream{Name: "cart", Namespace: "other", LocalPort: 9005},
	)
	found := foundMap(
		callee("shop", "cart", 15006, v1alpha1.ProtocolGRPC, &v1alpha1.TrafficPolicy{Timeout: tmo("5s"), LoadBalancer: v1alpha1.LoadBalancerRandom}),
		callee("data", "db", 5432, v1alpha1.ProtocolTCP, nil),
		callee("data", "gone", 80, v1alpha1.ProtocolHTTP, nil), // same name, other namespace: must not resolve "gone"
	)
	found[types.NamespacedName{Namespace: "shop", Name: "nil-entry"}] = nil
	mesh := &v1alpha1.ServiceMesh{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default"},
		Spec:       v1alpha1.ServiceMeshSpec{Defaults: &v1alpha1.TrafficPolicy{ConnectTimeout: dur("2s"), LoadBalancer: v1alpha1.LoadBalancerMaglev}},
	}

	tests := []struct {
		name string
		mesh *v1alpha1.ServiceMesh
		want Service
	}{
		{
			name: "with mesh defaults",
			mesh: mesh,
			want: Service{
				Name: "web", Namespace: "shop", Port: 8080, ServicePort: 15006, Protocol: v1alpha1.ProtocolHTTP2,
				Upstreams: []Upstream{
					{Name: "cart", Namespace: "shop", LocalPort: 9001, Target: &Target{
						ServicePort: 15006, Protocol: v1alpha1.ProtocolGRPC,
						Traffic: v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerRandom, ConnectTimeout: dur("2s"), Timeout: tmo("1s")},
					}},
					{Name: "db", Namespace: "data", LocalPort: 9002, Target: &Target{
						ServicePort: 5432, Protocol: v1alpha1.ProtocolTCP,
						Traffic: v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerMaglev, ConnectTimeout: dur("2s")},
					}},
					{Name: "gone", Namespace: "shop", LocalPort: 9003},
					{Name: "nil-entry", Namespace: "shop", LocalPort: 9004},
					{Name: "cart", Namespace: "other", LocalPort: 9005},
				},
			},
		},
		{
			name: "without a mesh",
			want: Service{
				Name: "web", Namespace: "shop", Port: 8080, ServicePort: 15006, Protocol: v1alpha1.ProtocolHTTP2,
				Upstreams: []Upstream{
					{Name: "cart", Namespace: "shop", LocalPort: 9001, Target: &Target{
						ServicePort: 15006, Protocol: v1alpha1.ProtocolGRPC,
						Traffic: v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerRandom, ConnectTimeout: dur("250ms"), Timeout: tmo("1s")},
					}},
					{Name: "db", Namespace: "data", LocalPort: 9002, Target: &Target{
						ServicePort: 5432, Protocol: v1alpha1.ProtocolTCP,
						Traffic: v1alpha1.TrafficPolicy{LoadBalancer: v1alpha1.LoadBalancerRoundRobin, ConnectTimeout: dur("250ms")},
					}},
					{Name: "gone", Namespace: "shop", LocalPort: 9003},
					{Name: "nil-entry", Namespace: "shop", LocalPort: 9004},
					{Name: "cart", Namespace: "other", LocalPort: 9005},
				},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, ServiceFor(caller, found, tc.mesh)); diff != "" {
				t.Errorf("ServiceFor (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServiceForNoUpstreams(t *testing.T) {
	got := ServiceFor(meshService("ns", "leaf", 8082, 8789, v1alpha1.ProtocolTCP), nil, nil)
	want := Service{Name: "leaf", Namespace: "ns", Port: 8082, ServicePort: 8789, Protocol: v1alpha1.ProtocolTCP}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ServiceFor (-want +got):\n%s", diff)
	}
}
