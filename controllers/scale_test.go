package controllers

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The scale subresource is what `kubectl scale ms/x` and a
// HorizontalPodAutoscaler targeting a MeshService use. An HPA needs
// status.selector to find the pods whose metrics it averages.
var _ = Describe("MeshService scale subresource", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		SetDefaultEventuallyTimeout(20 * time.Second)
		SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	})

	getScale := func(g Gomega, ns, name string) *autoscalingv1.Scale {
		scale := &autoscalingv1.Scale{}
		g.ExpectWithOffset(1, k8sClient.SubResource("scale").Get(ctx, meshServiceKey(ns, name), scale)).To(Succeed())
		return scale
	}

	It("takes kubectl scale: spec.replicas sticks, the Deployment follows, and the scale shows the pods' selector", func() {
		Expect(k8sClient.Create(ctx, meshService(ns, "web", 8080, 15006))).To(Succeed())
		Eventually(get(&appsv1.Deployment{}, ns, "web")).Should(HaveField("Spec.Replicas", HaveValue(BeEquivalentTo(1))))

		By("writing spec.replicas through the scale subresource, as kubectl scale ms/web --replicas=3 does")
		scale := &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: 3}}
		Expect(k8sClient.SubResource("scale").Update(ctx, meshServiceKey(ns, "web"), client.WithSubResourceBody(scale))).To(Succeed())
		Expect(getMeshService(ns, "web").Spec.Replicas).To(HaveValue(BeEquivalentTo(3)))

		By("the Deployment follows")
		Eventually(get(&appsv1.Deployment{}, ns, "web")).Should(HaveField("Spec.Replicas", HaveValue(BeEquivalentTo(3))))

		By("the scale reports the Deployment's replicas and a selector that picks exactly its pods")
		markDeploymentAvailable(ns, "web")
		dep, err := get(&appsv1.Deployment{}, ns, "web")()
		Expect(err).NotTo(HaveOccurred())
		depSelector, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			s := getScale(g, ns, "web")
			g.Expect(s.Spec.Replicas).To(BeEquivalentTo(3))
			g.Expect(s.Status.Replicas).To(BeEquivalentTo(3))
			g.Expect(s.Status.Selector).NotTo(BeEmpty(), "an HPA cannot find the pods without status.selector")
			sel, err := labels.Parse(s.Status.Selector)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(sel.Matches(labels.Set(dep.Spec.Template.Labels))).To(BeTrue(),
				"selector %q must select the pod template's labels %v", s.Status.Selector, dep.Spec.Template.Labels)
			g.Expect(sel.String()).To(Equal(depSelector.String()))
		}).Should(Succeed())

		By("two reconciles later nothing has undone the scale")
		reconciledOnce(ns, "web")
		reconciledOnce(ns, "web")
		Expect(getMeshService(ns, "web").Spec.Replicas).To(HaveValue(BeEquivalentTo(3)))
		Expect(get(&appsv1.Deployment{}, ns, "web")()).To(HaveField("Spec.Replicas", HaveValue(BeEquivalentTo(3))))

		By("scaling the Deployment itself is undone: the MeshService's replicas own it")
		update(dep, func(d *appsv1.Deployment) { d.Spec.Replicas = ptr.To[int32](5) })
		Eventually(get(&appsv1.Deployment{}, ns, "web")).Should(HaveField("Spec.Replicas", HaveValue(BeEquivalentTo(3))))
	})
})
