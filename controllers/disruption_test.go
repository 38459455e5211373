package controllers

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// spec.disruption and spec.gateway.disruption give the pods a
// PodDisruptionBudget, which node drains respect.
var _ = Describe("PodDisruptionBudgets", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		SetDefaultEventuallyTimeout(20 * time.Second)
		SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	})

	pdbOf := func(name string) func() (*policyv1.PodDisruptionBudget, error) {
		return get(&policyv1.PodDisruptionBudget{}, ns, name)
	}
	// selectsTemplateOf asserts that pdb selects exactly the pods of the Deployment dep.
	selectsTemplateOf := func(pdb *policyv1.PodDisruptionBudget, dep string) {
		d, err := get(&appsv1.Deployment{}, ns, dep)()
		ExpectWithOffset(1, err).NotTo(HaveOccurred())
		ExpectWithOffset(1, pdb.Spec.Selector).To(Equal(d.Spec.Selector))
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		ExpectWithOffset(1, err).NotTo(HaveOccurred())
		ExpectWithOffset(1, sel.Matches(labels.Set(d.Spec.Template.Labels))).To(BeTrue())
	}

	It("writes the MeshService's budget, follows spec.disruption and deletes the budget when it is removed", func() {
		ms := meshService(ns, "api", 8080, 15006)
		ms.Spec.Disruption = &meshv1alpha1.Disruption{MinAvailable: ptr.To(intstr.FromInt32(1))}
		Expect(k8sClient.Create(ctx, ms)).To(Succeed())

		var pdb *policyv1.PodDisruptionBudget
		Eventually(func(g Gomega) {
			var err error
			pdb, err = pdbOf("api")()
			g.Expect(err).NotTo(HaveOccurred())
			controlledBy(g, getMeshService(ns, "api"), named(&policyv1.PodDisruptionBudget{}, "api"))
		}).Should(Succeed())
		Expect(pdb.Spec.MinAvailable).To(Equal(ptr.To(intstr.FromInt32(1))))
		Expect(pdb.Spec.MaxUnavailable).To(BeNil())
		Expect(pdb.Labels).To(HaveKeyWithValue(objects.ManagedByLabel, objects.ManagedBy))
		selectsTemplateOf(pdb, "api")

		By("changing to maxUnavailable replaces minAvailable")
		update(meshServiceKey(ns, "api"), func(m *meshv1alpha1.MeshService) {
			m.Spec.Disruption = &meshv1alpha1.Disruption{MaxUnavailable: ptr.To(intstr.FromString("25%"))}
		})
		Eventually(func(g Gomega) {
			got, err := pdbOf("api")()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.Spec.MaxUnavailable).To(Equal(ptr.To(intstr.FromString("25%"))))
			g.Expect(got.Spec.MinAvailable).To(BeNil())
		}).Should(Succeed())

		By("removing spec.disruption deletes the budget")
		update(meshServiceKey(ns, "api"), func(m *meshv1alpha1.MeshService) { m.Spec.Disruption = nil })
		Eventually(func(g Gomega) { notFound(g, ns, named(&policyv1.PodDisruptionBudget{}, "api")) }).Should(Succeed())
	})

	It("never overwrites nor deletes a PodDisruptionBudget of the name it does not own", func() {
		foreign := &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "guarded", Labels: map[string]string{"owner": "someone-else"}},
			Spec: policyv1.PodDisruptionBudgetSpec{
				MinAvailable: ptr.To(intstr.FromInt32(2)),
				Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "theirs"}},
			},
		}
		Expect(k8sClient.Create(ctx, foreign)).To(Succeed())

		By("without spec.disruption the foreign budget is none of its business")
		Expect(k8sClient.Create(ctx, meshService(ns, "guarded", 8080, 15006))).To(Succeed())
		Eventually(func() int64 { return getMeshService(ns, "guarded").Status.ObservedGeneration }).Should(BeEquivalentTo(1))
		reconciledOnce(ns, "guarded")
		got, err := pdbOf("guarded")()
		Expect(err).NotTo(HaveOccurred())
		Expect(got.UID).To(Equal(foreign.UID))

		By("asking for a budget of that name is a conflict, and the foreign one stays as it was")
		update(meshServiceKey(ns, "guarded"), func(m *meshv1alpha1.MeshService) {
			m.Spec.Disruption = &meshv1alpha1.Disruption{MaxUnavailable: ptr.To(intstr.FromInt32(1))}
		})
		Eventually(conditionOf(ns, "guarded", meshv1alpha1.ConditionReady)).Should(Equal("False/Conflict"))
		Expect(condition(getMeshService(ns, "guarded"), meshv1alpha1.ConditionReady).Message).To(ContainSubstring(`PodDisruptionBudget "guarded"`))
		got, err = pdbOf("guarded")()
		Expect(err).NotTo(HaveOccurred())
		Expect(got.UID).To(Equal(foreign.UID))
		Expect(got.OwnerReferences).To(BeEmpty())
		Expect(got.Labels).To(Equal(map[string]string{"owner": "someone-else"}))
		Expect(got.Spec.MinAvailable).To(Equal(ptr.To(intstr.FromInt32(2))))
		Expect(got.Spec.MaxUnavailable).To(BeNil())
		Expect(got.Spec.Selector.MatchLabels).To(Equal(map[string]string{"app": "theirs"}))
	})

	It("writes the gateway's budget from spec.gateway.disruption, and deletes it when unset or when the gateway is disabled", func() {
		mesh := seedServiceMesh(ns)
		mesh.Spec.Gateway.Disruption = &meshv1alpha1.Disruption{MaxUnavailable: ptr.To(intstr.FromInt32(1))}
		Expect(k8sClient.Create(ctx, mesh)).To(Succeed())

		var pdb *policyv1.PodDisruptionBudget
		Eventually(func(g Gomega) {
			var err error
			pdb, err = pdbOf("default-gateway")()
			g.Expect(err).NotTo(HaveOccurred())
			controlledBy(g, getServiceMesh(ns, "default"), named(&policyv1.PodDisruptionBudget{}, "default-gateway"))
		}).Should(Succeed())
		Expect(pdb.Spec.MaxUnavailable).To(Equal(ptr.To(intstr.FromInt32(1))))
		Expect(pdb.Spec.MinAvailable).To(BeNil())
		Expect(pdb.Labels).To(HaveKeyWithValue(objects.ManagedByLabel, objects.ManagedBy))
		selectsTemplateOf(pdb, "default-gateway")

		By("changing the bound updates it")
		update(getServiceMesh(ns, "default"), func(m *meshv1alpha1.ServiceMesh) {
			m.Spec.Gateway.Disruption = &meshv1alpha1.Disruption{MinAvailable: ptr.To(intstr.FromString("50%"))}
		})
		Eventually(func(g Gomega) {
			got, err := pdbOf("default-gateway")()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.Spec.MinAvailable).To(Equal(ptr.To(intstr.FromString("50%"))))
			g.Expect(got.Spec.MaxUnavailable).To(BeNil())
		}).Should(Succeed())

		By("unsetting it deletes the budget, the gateway stays")
		update(getServiceMesh(ns, "default"), func(m *meshv1alpha1.ServiceMesh) { m.Spec.Gateway.Disruption = nil })
		Eventually(func(g Gomega) { notFound(g, ns, named(&policyv1.PodDisruptionBudget{}, "default-gateway")) }).Should(Succeed())
		Expect(get(&appsv1.Deployment{}, ns, "default-gateway")()).NotTo(BeNil())

		By("setting it again and disabling the gateway deletes it with the gateway")
		update(getServiceMesh(ns, "default"), func(m *meshv1alpha1.ServiceMesh) {
			m.Spec.Gateway.Disruption = &meshv1alpha1.Disruption{MaxUnavailable: ptr.To(intstr.FromInt32(1))}
		})
		Eventually(func() error { _, err := pdbOf("default-gateway")(); return err }).Should(Succeed())
		update(getServiceMesh(ns, "default"), func(m *meshv1alpha1.ServiceMesh) { m.Spec.Gateway.Enabled = false })
		Eventually(func(g Gomega) {
			notFound(g, ns, named(&policyv1.PodDisruptionBudget{}, "default-gateway"), named(&appsv1.Deployment{}, "default-gateway"))
		}).Should(Succeed())
	})
})
