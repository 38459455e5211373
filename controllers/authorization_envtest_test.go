package controllers

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// The policy writes itself from the call graph: these specs change the graph and
// watch each callee's authorized callers (and each caller's view) follow.
var _ = Describe("Authorization follows the declared call graph", func() {
	BeforeEach(func() {
		SetDefaultEventuallyTimeout(20 * time.Second)
		SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	})

	authorized := func(ns, name string) func() []string {
		return func() []string {
			c := getMeshService(ns, name).Status.AuthorizedCallers
			if c == nil {
				return nil
			}
			return c.SPIFFEIDs
		}
	}
	spiffe := func(ns, sa string) string { return "spiffe://cluster.local/ns/" + ns + "/sa/" + sa }
	upstreamAuthorized := func(ns, name string) func() []bool {
		return func() []bool {
			var out []bool
			for _, u := range getMeshService(ns, name).Status.Upstreams {
				out = append(out, u.Authorized)
			}
			return out
		}
	}

	It("adds a caller when it declares the service and removes it when it stops", func() {
		ns := newNamespace()
		Expect(k8sClient.Create(ctx, meshService(ns, "payments", 8080, 15006))).To(Succeed())
		Eventually(func() *meshv1alpha1.AuthorizedCallers { return getMeshService(ns, "payments").Status.AuthorizedCallers }).
			Should(Equal(&meshv1alpha1.AuthorizedCallers{Count: 0}))

		Expect(k8sClient.Create(ctx, meshService(ns, "cart", 8080, 15006, meshv1alpha1.Upstream{Name: "payments", LocalPort: 9001}))).To(Succeed())
		Eventually(authorized(ns, "payments")).Should(Equal([]string{spiffe(ns, "cart")}))
		Eventually(conditionOf(ns, "cart", meshv1alpha1.ConditionUpstreamsAuthorized)).Should(Equal("True/Authorized"))
		Expect(upstreamAuthorized(ns, "cart")()).To(Equal([]bool{true}))

		update(getMeshService(ns, "cart"), func(ms *meshv1alpha1.MeshService) { ms.Spec.Upstreams = nil })
		Eventually(authorized(ns, "payments")).Should(BeEmpty())
	})

	It("refuses a caller of another namespace until the callee consents, and tells the caller why", func() {
		shop, billing := newNamespace(), newNamespace()
		Expect(k8sClient.Create(ctx, meshService(shop, "payments", 8080, 15006))).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(billing, "invoicer", 8080, 15006,
			meshv1alpha1.Upstream{Name: "payments", Namespace: shop, LocalPort: 9001}))).To(Succeed())

		Eventually(conditionOf(billing, "invoicer", meshv1alpha1.ConditionUpstreamsAuthorized)).Should(Equal("False/Refused"))
		Expect(condition(getMeshService(billing, "invoicer"), meshv1alpha1.ConditionUpstreamsAuthorized).Message).
			To(ContainSubstring("does not consent to namespace " + billing))
		Expect(upstreamAuthorized(billing, "invoicer")()).To(Equal([]bool{false}))
		Consistently(authorized(shop, "payments"), "1s").Should(BeEmpty(), "a declaration alone must not authorize another namespace")

		update(getMeshService(shop, "payments"), func(ms *meshv1alpha1.MeshService) {
			ms.Spec.AllowFrom = []meshv1alpha1.AllowFrom{{Namespace: billing}}
		})
		Eventually(authorized(shop, "payments")).Should(Equal([]string{spiffe(billing, "invoicer")}))
		Eventually(conditionOf(billing, "invoicer", meshv1alpha1.ConditionUpstreamsAuthorized)).Should(Equal("True/Authorized"))
	})

	It("refuses a gateway route into another namespace until it consents", func() {
		edge, shop := newNamespace(), newNamespace()
		Expect(k8sClient.Create(ctx, meshService(shop, "payments-admin", 8080, 15006))).To(Succeed())
		mesh := &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: edge, Name: "public"},
			Spec: meshv1alpha1.ServiceMeshSpec{Gateway: &meshv1alpha1.Gateway{Enabled: true, ServiceType: "LoadBalancer",
				Routes: []meshv1alpha1.GatewayRoute{{Prefix: "/", Service: "payments-admin", Namespace: shop}}}}}
		Expect(k8sClient.Create(ctx, mesh)).To(Succeed())

		routes := func() string {
			m := &meshv1alpha1.ServiceMesh{}
			Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: edge, Name: "public"}, m)).To(Succeed())
			c := meta.FindStatusCondition(m.Status.Conditions, ConditionRoutesResolved)
			if c == nil {
				return ""
			}
			return string(c.Status) + "/" + c.Reason
		}
		Eventually(routes).Should(Equal("False/NotAllowed"))
		Consistently(authorized(shop, "payments-admin"), "1s").Should(BeEmpty())
		gatewayRoutes := func() string {
			cm := &corev1.ConfigMap{}
			if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: edge, Name: "public-gateway-envoy"}, cm); err != nil {
				return err.Error()
			}
			return cm.Data["lds.yaml"]
		}
		Eventually(gatewayRoutes).Should(And(ContainSubstring("status: 403"), ContainSubstring("does not consent")),
			"the route answers 403 saying why")

		update(getMeshService(shop, "payments-admin"), func(ms *meshv1alpha1.MeshService) {
			ms.Spec.AllowFrom = []meshv1alpha1.AllowFrom{{Namespace: edge, ServiceAccount: "public-gateway"}}
		})
		Eventually(routes).Should(Equal("True/Resolved"))
		Eventually(authorized(shop, "payments-admin")).Should(Equal([]string{spiffe(edge, "public-gateway")}))
		Eventually(gatewayRoutes).ShouldNot(ContainSubstring("status: 403"))
	})

	It("writes the Strict-mode NetworkPolicy and removes it when the mesh turns Permissive", func() {
		ns := newNamespace()
		mesh := &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}
		Expect(k8sClient.Create(ctx, mesh)).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(ns, "payments", 8080, 15006))).To(Succeed())
		np := &networkingv1.NetworkPolicy{}
		Eventually(get(np, ns, "payments")).Should(Not(BeNil()))
		Expect(metav1.IsControlledBy(np, getMeshService(ns, "payments"))).To(BeTrue())

		update(mesh, func(m *meshv1alpha1.ServiceMesh) { m.Spec.MTLS = &meshv1alpha1.MTLS{Mode: meshv1alpha1.MTLSPermissive} })
		Eventually(func() bool {
			return apierrors.IsNotFound(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "payments"}, &networkingv1.NetworkPolicy{}))
		}).Should(BeTrue())
	})
})
