package controllers

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// Every traffic-policy rule of the schema, proven against the real API server:
// each entry breaks one rule of an otherwise valid MeshService and names the field
// and the words the error must carry.
var _ = Describe("TrafficPolicy validation", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	dur := func(s string) *meshv1alpha1.Duration { d := meshv1alpha1.Duration(s); return &d }
	tmo := func(s string) *meshv1alpha1.RequestTimeout { d := meshv1alpha1.RequestTimeout(s); return &d }
	sticky := func(lb meshv1alpha1.LoadBalancer) *meshv1alpha1.TrafficPolicy {
		return &meshv1alpha1.TrafficPolicy{LoadBalancer: lb, HashOn: &meshv1alpha1.HashOn{Header: "x-user-id"}}
	}
	tcp := func(tp *meshv1alpha1.TrafficPolicy) func(*meshv1alpha1.MeshService) {
		return func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Protocol = meshv1alpha1.ProtocolTCP
			ms.Spec.Traffic = tp
		}
	}
	traffic := func(tp *meshv1alpha1.TrafficPolicy) func(*meshv1alpha1.MeshService) {
		return func(ms *meshv1alpha1.MeshService) { ms.Spec.Traffic = tp }
	}

	DescribeTable("accepts",
		func(mutate func(*meshv1alpha1.MeshService)) {
			ms := meshService(ns, "good", 8080, 15006)
			mutate(ms)
			Expect(k8sClient.Create(ctx, ms)).To(Succeed())
		},
		Entry("hashOn with RingHash", traffic(sticky(meshv1alpha1.LoadBalancerRingHash))),
		Entry("hashOn with Maglev in an upstream's traffic", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Upstreams = []meshv1alpha1.Upstream{{Name: "b", LocalPort: 9001, Traffic: sticky(meshv1alpha1.LoadBalancerMaglev)}}
		}),
		Entry("retries with attempts only", traffic(&meshv1alpha1.TrafficPolicy{Retries: &meshv1alpha1.RetryPolicy{Attempts: ptr.To[int32](0)}})),
		Entry("a health check timeout shorter than its interval", traffic(&meshv1alpha1.TrafficPolicy{
			HealthCheck: &meshv1alpha1.HealthCheck{Timeout: dur("999ms"), Interval: dur("1s")}})),
		Entry("connection-level settings on a TCP service", tcp(&meshv1alpha1.TrafficPolicy{
			LoadBalancer: meshv1alpha1.LoadBalancerRingHash, ConnectTimeout: dur("1s"),
			CircuitBreaker:   &meshv1alpha1.CircuitBreaker{MaxConnections: ptr.To[int32](10)},
			OutlierDetection: &meshv1alpha1.OutlierDetection{Consecutive5xx: ptr.To[int32](3)},
			HealthCheck:      &meshv1alpha1.HealthCheck{Interval: dur("5s"), Timeout: dur("1s")},
		})),
		Entry("HTTP-only settings on an HTTP service", traffic(&meshv1alpha1.TrafficPolicy{
			Timeout: tmo("1s"), HealthCheck: &meshv1alpha1.HealthCheck{Path: "/healthz"}})),
		Entry("timeout 0s, no timeout, on a GRPC service", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Protocol = meshv1alpha1.ProtocolGRPC
			ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{Timeout: tmo("0s")}
		}),
	)

	DescribeTable("rejects",
		func(mutate func(*meshv1alpha1.MeshService), field, message string) {
			ms := meshService(ns, "bad", 8080, 15006)
			mutate(ms)
			err := k8sClient.Create(ctx, ms)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(field))
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("retries without attempts", traffic(&meshv1alpha1.TrafficPolicy{Retries: &meshv1alpha1.RetryPolicy{}}),
			"spec.traffic.retries.attempts", "attempts is required"),
		Entry("retries with perTryTimeout but no attempts", traffic(&meshv1alpha1.TrafficPolicy{
			Retries: &meshv1alpha1.RetryPolicy{PerTryTimeout: dur("1s")}}),
			"spec.traffic.retries.attempts", "attempts is required"),
		Entry("retries with retryOn but no attempts in an upstream's traffic", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Upstreams = []meshv1alpha1.Upstream{{Name: "b", LocalPort: 9001,
				Traffic: &meshv1alpha1.TrafficPolicy{Retries: &meshv1alpha1.RetryPolicy{RetryOn: "5xx"}}}}
		}, "spec.upstreams[0].traffic.retries.attempts", "attempts is required"),
		Entry("attempts over 10", traffic(&meshv1alpha1.TrafficPolicy{Retries: &meshv1alpha1.RetryPolicy{Attempts: ptr.To[int32](11)}}),
			"spec.traffic.retries.attempts", "less than or equal to 10"),
		Entry("hashOn with RoundRobin", traffic(sticky(meshv1alpha1.LoadBalancerRoundRobin)),
			"spec.traffic.hashOn", "RingHash or Maglev"),
		Entry("hashOn with LeastRequest", traffic(sticky(meshv1alpha1.LoadBalancerLeastRequest)),
			"spec.traffic.hashOn", "RingHash or Maglev"),
		Entry("hashOn with Random in an upstream's traffic", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Upstreams = []meshv1alpha1.Upstream{{Name: "b", LocalPort: 9001, Traffic: sticky(meshv1alpha1.LoadBalancerRandom)}}
		}, "spec.upstreams[0].traffic.hashOn", "RingHash or Maglev"),
		Entry("hashOn without a loadBalancer", traffic(sticky("")),
			"spec.traffic.hashOn", "RingHash or Maglev"),
		Entry("hashOn with an empty header", traffic(&meshv1alpha1.TrafficPolicy{
			LoadBalancer: meshv1alpha1.LoadBalancerRingHash, HashOn: &meshv1alpha1.HashOn{}}),
			"spec.traffic.hashOn.header", "at least 1 chars long"),
		Entry("hashOn with a header that is not an HTTP token", traffic(&meshv1alpha1.TrafficPolicy{
			LoadBalancer: meshv1alpha1.LoadBalancerRingHash, HashOn: &meshv1alpha1.HashOn{Header: "x user:id"}}),
			"spec.traffic.hashOn.header", "should match"),
		Entry("hashOn with an over-long header", traffic(&meshv1alpha1.TrafficPolicy{
			LoadBalancer: meshv1alpha1.LoadBalancerRingHash, HashOn: &meshv1alpha1.HashOn{Header: strings.Repeat("x", 257)}}),
			"spec.traffic.hashOn.header", "Too long"),
		Entry("timeout on a TCP service", tcp(&meshv1alpha1.TrafficPolicy{Timeout: tmo("1s")}),
			"spec.traffic.timeout", "spec.protocol is TCP"),
		Entry("retries on a TCP service", tcp(&meshv1alpha1.TrafficPolicy{Retries: &meshv1alpha1.RetryPolicy{Attempts: ptr.To[int32](1)}}),
			"spec.traffic.retries", "spec.protocol is TCP"),
		Entry("hashOn on a TCP service", tcp(sticky(meshv1alpha1.LoadBalancerMaglev)),
			"spec.traffic.hashOn", "spec.protocol is TCP"),
		Entry("healthCheck.path on a TCP service", tcp(&meshv1alpha1.TrafficPolicy{HealthCheck: &meshv1alpha1.HealthCheck{Path: "/healthz"}}),
			"spec.traffic.healthCheck.path", "spec.protocol is TCP"),
		Entry("a health check timeout equal to its interval", traffic(&meshv1alpha1.TrafficPolicy{
			HealthCheck: &meshv1alpha1.HealthCheck{Timeout: dur("1s"), Interval: dur("1000ms")}}),
			"spec.traffic.healthCheck.timeout", "shorter than traffic.healthCheck.interval"),
		Entry("a health check timeout longer than its interval in an upstream's traffic", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Upstreams = []meshv1alpha1.Upstream{{Name: "b", LocalPort: 9001,
				Traffic: &meshv1alpha1.TrafficPolicy{HealthCheck: &meshv1alpha1.HealthCheck{Timeout: dur("1m"), Interval: dur("10s")}}}}
		}, "spec.upstreams[0].traffic.healthCheck.timeout", "shorter than traffic.healthCheck.interval"),
		Entry("healthyThreshold 0", traffic(&meshv1alpha1.TrafficPolicy{HealthCheck: &meshv1alpha1.HealthCheck{HealthyThreshold: ptr.To[int32](0)}}),
			"spec.traffic.healthCheck.healthyThreshold", "greater than or equal to 1"),
		Entry("unhealthyThreshold 0", traffic(&meshv1alpha1.TrafficPolicy{HealthCheck: &meshv1alpha1.HealthCheck{UnhealthyThreshold: ptr.To[int32](0)}}),
			"spec.traffic.healthCheck.unhealthyThreshold", "greater than or equal to 1"),
		Entry("a health check path without a leading slash", traffic(&meshv1alpha1.TrafficPolicy{HealthCheck: &meshv1alpha1.HealthCheck{Path: "healthz"}}),
			"spec.traffic.healthCheck.path", "should match"),
		Entry("negative consecutive5xx", traffic(&meshv1alpha1.TrafficPolicy{OutlierDetection: &meshv1alpha1.OutlierDetection{Consecutive5xx: ptr.To[int32](-1)}}),
			"spec.traffic.outlierDetection.consecutive5xx", "greater than or equal to 0"),
		Entry("negative maxEjectionPercent", traffic(&meshv1alpha1.TrafficPolicy{OutlierDetection: &meshv1alpha1.OutlierDetection{MaxEjectionPercent: ptr.To[int32](-1)}}),
			"spec.traffic.outlierDetection.maxEjectionPercent", "greater than or equal to 0"),
		Entry("negative maxConnections", traffic(&meshv1alpha1.TrafficPolicy{CircuitBreaker: &meshv1alpha1.CircuitBreaker{MaxConnections: ptr.To[int32](-1)}}),
			"spec.traffic.circuitBreaker.maxConnections", "greater than or equal to 0"),
		Entry("negative maxPendingRequests", traffic(&meshv1alpha1.TrafficPolicy{CircuitBreaker: &meshv1alpha1.CircuitBreaker{MaxPendingRequests: ptr.To[int32](-1)}}),
			"spec.traffic.circuitBreaker.maxPendingRequests", "greater than or equal to 0"),
		Entry("negative maxRetries", traffic(&meshv1alpha1.TrafficPolicy{CircuitBreaker: &meshv1alpha1.CircuitBreaker{MaxRetries: ptr.To[int32](-1)}}),
			"spec.traffic.circuitBreaker.maxRetries", "greater than or equal to 0"),
		Entry("a retryOn that is not a comma-separated list", traffic(&meshv1alpha1.TrafficPolicy{
			Retries: &meshv1alpha1.RetryPolicy{Attempts: ptr.To[int32](1), RetryOn: "5xx, reset"}}),
			"spec.traffic.retries.retryOn", "should match"),
	)

	It("rejects hashOn without RingHash or Maglev in the mesh's defaults", func() {
		mesh := &meshv1alpha1.ServiceMesh{}
		mesh.Namespace, mesh.Name = ns, "default"
		mesh.Spec.Defaults = sticky(meshv1alpha1.LoadBalancerRandom)
		err := k8sClient.Create(ctx, mesh)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.defaults.hashOn"))
	})

	// CEL cannot see the callee's protocol from the caller, so the controller
	// reports HTTP-only settings in upstreams[].traffic for a TCP upstream.
	It("reports HTTP-only upstreams[].traffic for a TCP upstream as InvalidConfig", func() {
		db := meshService(ns, "db", 5432, 15006)
		db.Spec.Protocol = meshv1alpha1.ProtocolTCP
		Expect(k8sClient.Create(ctx, db)).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(ns, "web", 8080, 15006,
			meshv1alpha1.Upstream{Name: "db", LocalPort: 9001, Traffic: &meshv1alpha1.TrafficPolicy{Timeout: tmo("2s")}}))).To(Succeed())

		Eventually(conditionOf(ns, "web", meshv1alpha1.ConditionReady), 20*time.Second).Should(Equal("False/InvalidConfig"))
		msg := condition(getMeshService(ns, "web"), meshv1alpha1.ConditionReady).Message
		Expect(msg).To(ContainSubstring("spec.upstreams[0].traffic.timeout"))
		Expect(msg).To(ContainSubstring("TCP"))
		Eventually(eventReasons(ns, "web")).Should(ContainElement("Warning/InvalidConfig"))
	})
})

// The gateway route rules Envoy would otherwise refuse or misroute, proven
// against the real API server on a ServiceMesh.
var _ = Describe("Gateway route validation", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	withRoutes := func(routes ...meshv1alpha1.GatewayRoute) *meshv1alpha1.ServiceMesh {
		mesh := seedServiceMesh(ns)
		mesh.Spec.Gateway.Routes = routes
		return mesh
	}

	It("accepts hosts, and one prefix on several hosts", func() {
		Expect(k8sClient.Create(ctx, withRoutes(
			meshv1alpha1.GatewayRoute{Prefix: "/api", Service: "a"},
			meshv1alpha1.GatewayRoute{Prefix: "/api", Host: "api.example.com", Service: "a"},
			meshv1alpha1.GatewayRoute{Prefix: "/api", Host: "*.example.com:8443", Service: "a"},
			meshv1alpha1.GatewayRoute{Prefix: "/static/", Host: "cdn-1.example.com", Service: "a"},
		))).To(Succeed())
	})

	DescribeTable("rejects",
		func(route meshv1alpha1.GatewayRoute, field, message string) {
			err := k8sClient.Create(ctx, withRoutes(route))
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(field))
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("a prefix with a query", meshv1alpha1.GatewayRoute{Prefix: "/api?v=2", Service: "a"},
			"spec.gateway.routes[0].prefix", "spec.gateway.routes[].prefix must not contain ? or #"),
		Entry("a prefix with a fragment", meshv1alpha1.GatewayRoute{Prefix: "/docs#top", Service: "a"},
			"spec.gateway.routes[0].prefix", "spec.gateway.routes[].prefix must not contain ? or #"),
		Entry("a bare * host", meshv1alpha1.GatewayRoute{Prefix: "/", Host: "*", Service: "a"},
			"spec.gateway.routes[0].host", "spec.gateway.routes[].host must be a lowercase host name"),
		Entry("an inner wildcard", meshv1alpha1.GatewayRoute{Prefix: "/", Host: "api.*.com", Service: "a"},
			"spec.gateway.routes[0].host", "spec.gateway.routes[].host must be a lowercase host name"),
		Entry("a suffix wildcard", meshv1alpha1.GatewayRoute{Prefix: "/", Host: "api.*", Service: "a"},
			"spec.gateway.routes[0].host", "spec.gateway.routes[].host must be a lowercase host name"),
		Entry("an uppercase host", meshv1alpha1.GatewayRoute{Prefix: "/", Host: "API.example.com", Service: "a"},
			"spec.gateway.routes[0].host", "spec.gateway.routes[].host must be a lowercase host name"),
		Entry("a host with a scheme", meshv1alpha1.GatewayRoute{Prefix: "/", Host: "https://example.com", Service: "a"},
			"spec.gateway.routes[0].host", "spec.gateway.routes[].host must be a lowercase host name"),
		Entry("a host with a path", meshv1alpha1.GatewayRoute{Prefix: "/", Host: "example.com/api", Service: "a"},
			"spec.gateway.routes[0].host", "spec.gateway.routes[].host must be a lowercase host name"),
	)

	It("rejects one prefix twice on the same host", func() {
		err := k8sClient.Create(ctx, withRoutes(
			meshv1alpha1.GatewayRoute{Prefix: "/api", Host: "api.example.com", Service: "a"},
			meshv1alpha1.GatewayRoute{Prefix: "/api", Host: "api.example.com", Service: "b"},
		))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
		Expect(err.Error()).To(ContainSubstring("spec.gateway.routes[].prefix must be unique per spec.gateway.routes[].host"))
	})
})
