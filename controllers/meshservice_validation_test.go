package controllers

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// Every rule of the MeshService schema, proven against the real API server: each
// entry breaks one rule of an otherwise valid object and names the field the
// error must point at.
var _ = Describe("MeshService validation", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	dur := func(s string) *meshv1alpha1.Duration { d := meshv1alpha1.Duration(s); return &d }
	tmo := func(s string) *meshv1alpha1.RequestTimeout { d := meshv1alpha1.RequestTimeout(s); return &d }
	up := func(name string, port int32) meshv1alpha1.Upstream {
		return meshv1alpha1.Upstream{Name: name, LocalPort: port}
	}

	It("accepts a valid MeshService and fills the defaults", func() {
		ms := meshService(ns, "valid", 8080, 0)
		ms.Spec.Upstreams = []meshv1alpha1.Upstream{up("b", 9001), {Name: "b", Namespace: "other", LocalPort: 9002}}
		ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{ConnectTimeout: dur("1m30.5s"), LoadBalancer: meshv1alpha1.LoadBalancerMaglev}
		Expect(k8sClient.Create(ctx, ms)).To(Succeed())
		got := getMeshService(ns, "valid")
		Expect(got.Spec.Mesh).To(Equal("default"))
		Expect(got.Spec.Replicas).To(HaveValue(BeEquivalentTo(1)))
		Expect(got.Spec.ServicePort).To(BeEquivalentTo(15006))
		Expect(got.Spec.Protocol).To(Equal(meshv1alpha1.ProtocolHTTP))
	})

	DescribeTable("rejects",
		func(mutate func(*meshv1alpha1.MeshService), field, message string) {
			ms := meshService(ns, "bad", 8080, 15006)
			mutate(ms)
			err := k8sClient.Create(ctx, ms)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(field))
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("port 0", func(ms *meshv1alpha1.MeshService) { ms.Spec.Port = 0 }, "spec.port", "greater than or equal to 1"),
		Entry("port above 65535", func(ms *meshv1alpha1.MeshService) { ms.Spec.Port = 65536 }, "spec.port", "less than or equal to 65535"),
		Entry("servicePort above 65535", func(ms *meshv1alpha1.MeshService) { ms.Spec.ServicePort = 70000 }, "spec.servicePort", "less than or equal to 65535"),
		Entry("localPort 0", func(ms *meshv1alpha1.MeshService) { ms.Spec.Upstreams = []meshv1alpha1.Upstream{up("b", 0)} },
			"spec.upstreams[0].localPort", "greater than or equal to 1"),
		Entry("port equal to servicePort", func(ms *meshv1alpha1.MeshService) { ms.Spec.ServicePort = 8080 },
			"spec.servicePort", "must differ"),
		Entry("localPort equal to port", func(ms *meshv1alpha1.MeshService) { ms.Spec.Upstreams = []meshv1alpha1.Upstream{up("b", 8080)} },
			"spec.upstreams", "localPort must differ from spec.port and spec.servicePort"),
		Entry("localPort equal to servicePort", func(ms *meshv1alpha1.MeshService) { ms.Spec.Upstreams = []meshv1alpha1.Upstream{up("b", 15006)} },
			"spec.upstreams", "localPort must differ from spec.port and spec.servicePort"),
		Entry("duplicate localPorts", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Upstreams = []meshv1alpha1.Upstream{up("b", 9001), up("c", 9001)}
		}, "spec.upstreams", "localPort must be unique"),
		Entry("reserved admin port as port", func(ms *meshv1alpha1.MeshService) { ms.Spec.Port = 9901 }, "spec.port", "reserved"),
		Entry("reserved status port as servicePort", func(ms *meshv1alpha1.MeshService) { ms.Spec.ServicePort = 15021 }, "spec.servicePort", "reserved"),
		Entry("reserved port as localPort", func(ms *meshv1alpha1.MeshService) { ms.Spec.Upstreams = []meshv1alpha1.Upstream{up("b", 9901)} },
			"spec.upstreams[0].localPort", "reserved"),
		Entry("no containers field", func(ms *meshv1alpha1.MeshService) { ms.Spec.Template.Spec.Containers = nil },
			"spec.template.spec.containers", "Required value"),
		Entry("an empty container list", func(ms *meshv1alpha1.MeshService) { ms.Spec.Template.Spec.Containers = []corev1.Container{} },
			"spec.template", "at least one container"),
		Entry("unknown protocol", func(ms *meshv1alpha1.MeshService) { ms.Spec.Protocol = "UDP" },
			"spec.protocol", "supported values"),
		Entry("unknown loadBalancer", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{LoadBalancer: "Fastest"}
		}, "spec.traffic.loadBalancer", "supported values"),
		Entry("upstream name that is not a DNS-1123 label", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Upstreams = []meshv1alpha1.Upstream{up("Service_B", 9001)}
		}, "spec.upstreams[0].name", "should match"),
		Entry("upstream namespace that is not a DNS-1123 label", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Upstreams = []meshv1alpha1.Upstream{{Name: "b", Namespace: "Other.NS", LocalPort: 9001}}
		}, "spec.upstreams[0].namespace", "should match"),
		Entry("negative replicas", func(ms *meshv1alpha1.MeshService) { ms.Spec.Replicas = ptr.To[int32](-1) },
			"spec.replicas", "greater than or equal to 0"),
		Entry("mesh name that is not a DNS-1123 label", func(ms *meshv1alpha1.MeshService) { ms.Spec.Mesh = "My Mesh" },
			"spec.mesh", "should match"),
		Entry("malformed connectTimeout", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{ConnectTimeout: dur("250 ms")}
		}, "spec.traffic.connectTimeout", "should match"),
		Entry("connectTimeout without a unit", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{ConnectTimeout: dur("250")}
		}, "spec.traffic.connectTimeout", "should match"),
		Entry("zero retries.perTryTimeout (only traffic.timeout may be 0s)", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{Retries: &meshv1alpha1.RetryPolicy{Attempts: ptr.To[int32](1), PerTryTimeout: dur("0s")}}
		}, "spec.traffic.retries.perTryTimeout", "positive duration"),
		Entry("negative timeout", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{Timeout: tmo("-1s")}
		}, "spec.traffic.timeout", "should match"),
		Entry("overflowing duration", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{Timeout: tmo("9999999999999h")}
		}, "spec.traffic.timeout", ""),
		Entry("the name of its mesh's gateway", func(ms *meshv1alpha1.MeshService) { ms.Name = "default-gateway" },
			"metadata.name", "must not be spec.mesh + '-gateway'"),
		Entry("the name of its named mesh's gateway", func(ms *meshv1alpha1.MeshService) { ms.Name, ms.Spec.Mesh = "shop-gateway", "shop" },
			"metadata.name", "belongs to the mesh's gateway objects"),
		Entry("malformed retries.perTryTimeout", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{Retries: &meshv1alpha1.RetryPolicy{PerTryTimeout: dur("1d")}}
		}, "spec.traffic.retries.perTryTimeout", "should match"),
		Entry("malformed outlierDetection.interval", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{OutlierDetection: &meshv1alpha1.OutlierDetection{Interval: dur("-5s")}}
		}, "spec.traffic.outlierDetection.interval", "should match"),
		Entry("malformed outlierDetection.baseEjectionTime", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{OutlierDetection: &meshv1alpha1.OutlierDetection{BaseEjectionTime: dur("soon")}}
		}, "spec.traffic.outlierDetection.baseEjectionTime", "should match"),
		Entry("malformed healthCheck.interval", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{HealthCheck: &meshv1alpha1.HealthCheck{Interval: dur("1.5")}}
		}, "spec.traffic.healthCheck.interval", "should match"),
		Entry("malformed healthCheck.timeout", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{HealthCheck: &meshv1alpha1.HealthCheck{Timeout: dur("1s ")}}
		}, "spec.traffic.healthCheck.timeout", "should match"),
		Entry("malformed duration in an upstream's traffic", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Upstreams = []meshv1alpha1.Upstream{{Name: "b", LocalPort: 9001,
				Traffic: &meshv1alpha1.TrafficPolicy{ConnectTimeout: dur("fast")}}}
		}, "spec.upstreams[0].traffic.connectTimeout", "should match"),
		Entry("maxEjectionPercent over 100", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{OutlierDetection: &meshv1alpha1.OutlierDetection{MaxEjectionPercent: ptr.To[int32](101)}}
		}, "spec.traffic.outlierDetection.maxEjectionPercent", "less than or equal to 100"),
		Entry("negative circuit breaker", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{CircuitBreaker: &meshv1alpha1.CircuitBreaker{MaxRequests: ptr.To[int32](-1)}}
		}, "spec.traffic.circuitBreaker.maxRequests", "greater than or equal to 0"),
		Entry("unknown sidecar logLevel", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Sidecar = &meshv1alpha1.SidecarSettings{LogLevel: "loud"}
		}, "spec.sidecar.logLevel", "supported values"),
		Entry("disruption with both bounds", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Disruption = &meshv1alpha1.Disruption{MaxUnavailable: intOrString(1), MinAvailable: intOrString(1)}
		}, "spec.disruption", "exactly one of maxUnavailable and minAvailable"),
		Entry("disruption with neither bound", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Disruption = &meshv1alpha1.Disruption{}
		}, "spec.disruption", "exactly one of maxUnavailable and minAvailable"),
		Entry("negative disruption.maxUnavailable", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Disruption = &meshv1alpha1.Disruption{MaxUnavailable: intOrString(-1)}
		}, "spec.disruption.maxUnavailable", "a number ≥ 0 or a percentage"),
		Entry("disruption.minAvailable neither a number nor a percentage", func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Disruption = &meshv1alpha1.Disruption{MinAvailable: intOrString("half")}
		}, "spec.disruption.minAvailable", "a number ≥ 0 or a percentage"),
	)

	It("accepts a disruption bound as a number or a percentage", func() {
		for name, d := range map[string]meshv1alpha1.Disruption{
			"max-number":  {MaxUnavailable: intOrString(0)},
			"min-percent": {MinAvailable: intOrString("50%")},
		} {
			ms := meshService(ns, name, 8080, 15006)
			ms.Spec.Disruption = &d
			Expect(k8sClient.Create(ctx, ms)).To(Succeed(), name)
		}
	})

	It("accepts traffic.timeout 0s (no timeout) and another mesh's gateway name", func() {
		ms := meshService(ns, "default-gateway", 8080, 15006)
		ms.Spec.Mesh = "shop"
		ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{Timeout: tmo("0s")}
		Expect(k8sClient.Create(ctx, ms)).To(Succeed())
		Expect(*getMeshService(ns, "default-gateway").Spec.Traffic.Timeout).To(BeEquivalentTo("0s"))
	})

	It("rejects moving a MeshService into the mesh whose gateway has its name", func() {
		ms := meshService(ns, "shop-gateway", 8080, 15006)
		Expect(k8sClient.Create(ctx, ms)).To(Succeed())
		ms = getMeshService(ns, "shop-gateway")
		ms.Spec.Mesh = "shop"
		err := k8sClient.Update(ctx, ms)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
		Expect(err.Error()).To(ContainSubstring("must not be spec.mesh + '-gateway'"))
	})

	It("rejects an update that breaks a rule", func() {
		ms := meshService(ns, "upd", 8080, 15006)
		Expect(k8sClient.Create(ctx, ms)).To(Succeed())
		ms = getMeshService(ns, "upd")
		ms.Spec.Template.Spec.Containers = []corev1.Container{}
		err := k8sClient.Update(ctx, ms)
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
	})
})

// spec.gateway.disruption carries the same rules as a MeshService's.
var _ = Describe("Gateway disruption validation", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	DescribeTable("rejects",
		func(d meshv1alpha1.Disruption, field, message string) {
			mesh := seedServiceMesh(ns)
			mesh.Spec.Gateway.Disruption = &d
			err := k8sClient.Create(ctx, mesh)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(field))
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("both bounds", meshv1alpha1.Disruption{MaxUnavailable: intOrString("10%"), MinAvailable: intOrString(1)},
			"spec.gateway.disruption", "exactly one of maxUnavailable and minAvailable"),
		Entry("neither bound", meshv1alpha1.Disruption{},
			"spec.gateway.disruption", "exactly one of maxUnavailable and minAvailable"),
		Entry("a malformed percentage", meshv1alpha1.Disruption{MaxUnavailable: intOrString("10 %")},
			"spec.gateway.disruption.maxUnavailable", "a number ≥ 0 or a percentage"),
	)
})

// intOrString is an IntOrString of an int or a string.
func intOrString[T int | string](v T) *intstr.IntOrString {
	switch v := any(v).(type) {
	case int:
		return ptr.To(intstr.FromInt(v))
	default:
		return ptr.To(intstr.FromString(v.(string)))
	}
}
