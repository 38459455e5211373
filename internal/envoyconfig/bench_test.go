package envoyconfig

import (
	"fmt"
	"testing"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

func BenchmarkBuildSidecar(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		svc := Service{Name: "a", Namespace: "ns", Port: 8080, ServicePort: 15006, Protocol: v1alpha1.ProtocolHTTP}
		for i := range n {
			svc.Upstreams = append(svc.Upstreams, Upstream{
				Name: fmt.Sprintf("svc-%d", i), Namespace: "ns", LocalPort: int32(20000 + i),
				Target: &Target{ServicePort: 15006, Protocol: v1alpha1.ProtocolHTTP, Traffic: MergeTraffic(&v1alpha1.TrafficPolicy{
					Timeout: dur("5s"),
					Retries: &v1alpha1.RetryPolicy{Attempts: i32(2)},
				})},
			})
		}
		b.Run(fmt.Sprintf("upstreams=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := BuildSidecar(svc, Options{ClusterDomain: "cluster.local"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
