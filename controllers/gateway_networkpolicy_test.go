package controllers

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

var _ = Describe("Gateway NetworkPolicy", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		SetDefaultEventuallyTimeout(20 * time.Second)
		SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	})

	It("admits only the gateway's listener and status port, is restored when edited, and goes with the gateway", func() {
		Expect(k8sClient.Create(ctx, seedServiceMesh(ns))).To(Succeed())
		tcp := corev1.ProtocolTCP
		want := []networkingv1.NetworkPolicyPort{
			{Protocol: &tcp, Port: ptrIntOrString(8080)},
			{Protocol: &tcp, Port: ptrIntOrString(15021)},
		}
		var np *networkingv1.NetworkPolicy
		Eventually(func(g Gomega) {
			var err error
			np, err = get(&networkingv1.NetworkPolicy{}, ns, "default-gateway")()
			g.Expect(err).NotTo(HaveOccurred())
			controlledBy(g, getServiceMesh(ns, "default"), named(&networkingv1.NetworkPolicy{}, "default-gateway"))
		}).Should(Succeed())
		Expect(np.Spec.PodSelector.MatchLabels).To(Equal(map[string]string{objects.GatewayLabel: "default"}))
		Expect(np.Spec.PolicyTypes).To(Equal([]networkingv1.PolicyType{networkingv1.PolicyTypeIngress}))
		Expect(np.Spec.Ingress).To(HaveLen(1))
		Expect(np.Spec.Ingress[0].From).To(BeEmpty())
		Expect(np.Spec.Ingress[0].Ports).To(Equal(want))

		By("it selects the gateway Deployment's pods")
		dep, err := get(&appsv1.Deployment{}, ns, "default-gateway")()
		Expect(err).NotTo(HaveOccurred())
		for k, v := range np.Spec.PodSelector.MatchLabels {
			Expect(dep.Spec.Template.Labels).To(HaveKeyWithValue(k, v))
		}

		By("an edit that opens another port is reverted")
		update(np, func(p *networkingv1.NetworkPolicy) {
			p.Spec.Ingress[0].Ports = append(p.Spec.Ingress[0].Ports, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: ptrIntOrString(9901)})
		})
		Eventually(func(g Gomega) {
			got, err := get(&networkingv1.NetworkPolicy{}, ns, "default-gateway")()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.Spec.Ingress).To(HaveLen(1))
			g.Expect(got.Spec.Ingress[0].Ports).To(Equal(want))
		}).Should(Succeed())

		By("disabling the gateway removes it with the gateway's other objects")
		update(getServiceMesh(ns, "default"), func(m *meshv1alpha1.ServiceMesh) { m.Spec.Gateway.Enabled = false })
		Eventually(func(g Gomega) {
			notFound(g, ns, named(&networkingv1.NetworkPolicy{}, "default-gateway"), named(&appsv1.Deployment{}, "default-gateway"))
		}).Should(Succeed())
	})
})

func ptrIntOrString(p int) *intstr.IntOrString {
	v := intstr.FromInt32(int32(p))
	return &v
}
