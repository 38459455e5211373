package scoped

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/controllers"
)

func meshService(ns, name string, upstreams ...meshv1alpha1.Upstream) *meshv1alpha1.MeshService {
	return &meshv1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: meshv1alpha1.MeshServiceSpec{
			Port: 8080, ServicePort: 15006, Upstreams: upstreams,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "app", Image: "example.com/" + name + ":1",
			}}}},
		},
	}
}

// cacheMisses are the log lines, since the spec began, of reads the manager's
// cache refused: a reconcile that failed, or a watch handler that did, on a
// namespace it does not watch.
func cacheMisses() []string {
	var out []string
	for _, line := range strings.Split(managerLog.Since(logMark), "\n") {
		if strings.Contains(line, "unknown namespace for the cache") {
			out = append(out, line)
		}
	}
	return out
}

// logMark is where managerLog stood when the running spec began.
var logMark int

var _ = Describe("An operator watching one namespace", func() {
	BeforeEach(func() {
		logMark = managerLog.Len()
		SetDefaultEventuallyTimeout(20 * time.Second)
		SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	})

	It("reports an upstream in a namespace it does not watch as a condition, and reconciles the rest", func() {
		// The upstream exists: only the operator cannot see it.
		Expect(k8sClient.Create(ctx, meshService(unwatched, "backend"))).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(watched, "cache"))).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(watched, "frontend",
			meshv1alpha1.Upstream{Name: "backend", Namespace: unwatched, LocalPort: 9001},
			meshv1alpha1.Upstream{Name: "cache", LocalPort: 9002},
		))).To(Succeed())

		var ms *meshv1alpha1.MeshService
		Eventually(func(g Gomega) {
			ms = &meshv1alpha1.MeshService{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: watched, Name: "frontend"}, ms)).To(Succeed())
			g.Expect(ms.Status.ObservedGeneration).To(BeEquivalentTo(1))
		}).Should(Succeed())
		c := meta.FindStatusCondition(ms.Status.Conditions, meshv1alpha1.ConditionUpstreamsResolved)
		Expect(c).NotTo(BeNil())
		Expect(c.Status).To(Equal(metav1.ConditionFalse))
		Expect(c.Reason).To(Equal(controllers.ReasonNamespaceNotWatched))
		Expect(c.Message).To(ContainSubstring(unwatched + "/backend"))
		Expect(c.Message).To(ContainSubstring(watched))
		Expect(c.Message).NotTo(ContainSubstring(watched + "/cache"))
		Expect(ms.Status.Upstreams).To(ConsistOf(
			And(HaveField("Namespace", unwatched), HaveField("Name", "backend"), HaveField("Resolved", false)),
			And(HaveField("Namespace", watched), HaveField("Name", "cache"), HaveField("Resolved", true)),
		))

		By("everything else of the MeshService is written")
		for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &corev1.ConfigMap{}} {
			name := "frontend"
			if _, ok := obj.(*corev1.ConfigMap); ok {
				name = "frontend-envoy"
			}
			Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: watched, Name: name}, obj)).To(Succeed())
		}

		By("a new generation is reconciled too, and no read failed on the way")
		// The declaration watch queues the unwatched upstream (a callee's policy
		// names its callers) before the new generation, and one worker serves
		// the queue in order: once generation 2 is observed, that request has
		// been served.
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ms), ms)).To(Succeed())
		ms.Spec.Replicas = ptr.To[int32](2)
		Expect(k8sClient.Update(ctx, ms)).To(Succeed())
		Eventually(func(g Gomega) {
			got := &meshv1alpha1.MeshService{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(ms), got)).To(Succeed())
			g.Expect(got.Status.ObservedGeneration).To(BeEquivalentTo(2))
		}).Should(Succeed())
		Expect(cacheMisses()).To(BeEmpty())

		By("the MeshService of the other namespace is left alone")
		other := &meshv1alpha1.MeshService{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: unwatched, Name: "backend"}, other)).To(Succeed())
		Expect(other.Status.ObservedGeneration).To(BeZero())
		Expect(other.Status.Conditions).To(BeEmpty())
	})

	It("reports a gateway route to a namespace it does not watch in RoutesResolved, and runs the gateway", func() {
		Expect(k8sClient.Create(ctx, meshService(unwatched, "shop"))).To(Succeed())
		mesh := &meshv1alpha1.ServiceMesh{
			ObjectMeta: metav1.ObjectMeta{Namespace: watched, Name: "edge"},
			Spec: meshv1alpha1.ServiceMeshSpec{Gateway: &meshv1alpha1.Gateway{
				Enabled: true,
				Routes:  []meshv1alpha1.GatewayRoute{{Prefix: "/shop", Service: "shop", Namespace: unwatched}},
			}},
		}
		Expect(k8sClient.Create(ctx, mesh)).To(Succeed())

		Eventually(func(g Gomega) {
			got := &meshv1alpha1.ServiceMesh{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(mesh), got)).To(Succeed())
			g.Expect(got.Status.ObservedGeneration).To(BeEquivalentTo(1))
			c := meta.FindStatusCondition(got.Status.Conditions, controllers.ConditionRoutesResolved)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(controllers.ReasonNamespaceNotWatched))
			g.Expect(c.Message).To(ContainSubstring(unwatched + "/shop"))
			g.Expect(c.Message).To(ContainSubstring(watched))
		}).Should(Succeed())
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: watched, Name: "edge-gateway"}, &appsv1.Deployment{})).To(Succeed())

		By("no read failed on the way")
		// The route queued its target for the MeshService controller (a callee's
		// policy names the gateways routing to it) when the mesh was created. A
		// MeshService created now is queued behind it, and one worker serves the
		// queue in order: once it is reconciled, that request has been served.
		Expect(k8sClient.Create(ctx, meshService(watched, "marker"))).To(Succeed())
		Eventually(func(g Gomega) {
			got := &meshv1alpha1.MeshService{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: watched, Name: "marker"}, got)).To(Succeed())
			g.Expect(got.Status.ObservedGeneration).To(BeEquivalentTo(1))
		}).Should(Succeed())
		Expect(cacheMisses()).To(BeEmpty())
	})
})
