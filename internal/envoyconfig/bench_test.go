package envoyconfig

import (
	"fmt"
	"testing"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// BenchmarkBuildSidecar measures what a reconcile pays for a sidecar's config:
// "build" is BuildSidecar alone (typed resources, validation and the version),
// all that a reconcile whose config is unchanged spends; "render" adds Render,
// which only a changed config pays.
func BenchmarkBuildSidecar(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		svc := Service{Name: "a", Namespace: "ns", Port: 8080, ServicePort: 15006, Protocol: v1alpha1.ProtocolHTTP}
		for i := range n {
			svc.Upstreams = append(svc.Upstreams, Upstream{
				Name: fmt.Sprintf("svc-%d", i), Namespace: "ns", LocalPort: int32(20000 + i),
				Target: &Target{ServicePort: 15006, Protocol: v1alpha1.ProtocolHTTP, Traffic: MergeTraffic(&v1alpha1.TrafficPolicy{
					Timeout: tmo("5s"),
					Retries: &v1alpha1.RetryPolicy{Attempts: i32(2)},
				})},
			})
		}
		opts := Options{ClusterDomain: "cluster.local"}
		b.Run(fmt.Sprintf("upstreams=%d/build", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := BuildSidecar(svc, opts); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("upstreams=%d/build+render", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := BuildSidecar(svc, opts)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Render(res); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
