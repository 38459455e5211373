package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// podMonitor is an empty PodMonitor named name, for Get.
func podMonitor(name string) *unstructured.Unstructured {
	pm := &unstructured.Unstructured{}
	pm.SetGroupVersionKind(podMonitorGVK)
	pm.SetName(name)
	return pm
}

func withPodMonitor(on bool) func(*meshv1alpha1.ServiceMesh) {
	return func(m *meshv1alpha1.ServiceMesh) { m.Spec.Metrics = &meshv1alpha1.Metrics{PodMonitor: on} }
}

// The suite loads the Prometheus Operator's real PodMonitor CRD
// (testdata/crds), so what the operator writes passes its schema.
var _ = Describe("ServiceMesh PodMonitor", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		SetDefaultEventuallyTimeout(20 * time.Second)
		SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	})

	It("writes <mesh>-proxies scraping the sidecars and the gateway while spec.metrics.podMonitor is set, and removes it after", func() {
		mesh := &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "m"}}
		withPodMonitor(true)(mesh)
		Expect(k8sClient.Create(ctx, mesh)).To(Succeed())

		pm := podMonitor("m-proxies")
		Eventually(func(g Gomega) { controlledBy(g, mesh, pm) }).Should(Succeed())
		match, _, _ := unstructured.NestedStringMap(pm.Object, "spec", "selector", "matchLabels")
		Expect(match).To(Equal(map[string]string{
			"app.kubernetes.io/part-of": "m", "app.kubernetes.io/managed-by": "envoymesh-operator",
		}))
		eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
		Expect(eps).To(Equal([]any{map[string]any{"port": "envoy-status", "path": "/stats/prometheus"}}))
		Expect(metav1.GetControllerOf(pm).Kind).To(Equal("ServiceMesh"))
		targetLabels, _, _ := unstructured.NestedStringSlice(pm.Object, "spec", "podTargetLabels")
		Expect(targetLabels).To(ConsistOf("app.kubernetes.io/name", "app.kubernetes.io/part-of"))
		Eventually(meshCondition(ns, "m", ConditionMetricsScraped)).Should(Equal("True/" + ReasonPodMonitorApplied))

		By("drift is undone at the next reconcile of the mesh")
		update(pm, func(u *unstructured.Unstructured) {
			Expect(unstructured.SetNestedSlice(u.Object, []any{map[string]any{"port": "envoy-status", "path": "/elsewhere"}}, "spec", "podMetricsEndpoints")).To(Succeed())
		})
		// Any change of the mesh's spec reconciles it.
		update(mesh, func(m *meshv1alpha1.ServiceMesh) { m.Spec.Defaults = &meshv1alpha1.TrafficPolicy{} })
		Eventually(func(g Gomega) {
			got := podMonitor("m-proxies")
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "m-proxies"}, got)).To(Succeed())
			eps, _, _ := unstructured.NestedSlice(got.Object, "spec", "podMetricsEndpoints")
			g.Expect(eps).To(Equal([]any{map[string]any{"port": "envoy-status", "path": "/stats/prometheus"}}))
		}).Should(Succeed())

		By("podMonitor false: the PodMonitor and the condition are gone")
		update(mesh, withPodMonitor(false))
		Eventually(func(g Gomega) { notFound(g, ns, podMonitor("m-proxies")) }).Should(Succeed())
		Eventually(meshCondition(ns, "m", ConditionMetricsScraped)).Should(Equal("<none>"))
	})

	It("leaves a foreign PodMonitor of that name alone and reports the conflict", func() {
		foreign := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
			"metadata": map[string]any{"namespace": ns, "name": "m-proxies"},
			"spec": map[string]any{
				"selector":            map[string]any{"matchLabels": map[string]any{"app": "theirs"}},
				"podMetricsEndpoints": []any{map[string]any{"port": "metrics"}},
			},
		}}
		Expect(k8sClient.Create(ctx, foreign)).To(Succeed())
		mesh := &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "m"}}
		withPodMonitor(true)(mesh)
		Expect(k8sClient.Create(ctx, mesh)).To(Succeed())

		Eventually(meshCondition(ns, "m", ConditionMetricsScraped)).Should(Equal("False/" + ReasonConflict))
		Expect(getServiceMesh(ns, "m").Status.Conditions).To(ContainElement(HaveField("Message", ContainSubstring(`PodMonitor "m-proxies" already exists`))))
		Eventually(eventReasonsFor("ServiceMesh", ns, "m")).Should(ContainElement("Warning/" + ReasonConflict))

		update(mesh, withPodMonitor(false))
		Eventually(meshCondition(ns, "m", ConditionMetricsScraped)).Should(Equal("<none>"))
		got := podMonitor("m-proxies")
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "m-proxies"}, got)).To(Succeed())
		Expect(got.GetUID()).To(Equal(foreign.GetUID()))
		Expect(got.GetOwnerReferences()).To(BeEmpty())
		match, _, _ := unstructured.NestedStringMap(got.Object, "spec", "selector", "matchLabels")
		Expect(match).To(Equal(map[string]string{"app": "theirs"}))
	})
})

// Without the CRD (an API server the suite's envtest is not: it loads it),
// the mesh reports MetricsScraped False, PodMonitorCRDMissing, asks to be
// looked at again later, and sends nothing: the fake client's REST mapper knows
// no PodMonitor, as the manager's would not.
func TestPodMonitorCRDMissing(t *testing.T) {
	mapper := meta.NewDefaultRESTMapper(nil)
	c := fake.NewClientBuilder().WithScheme(Scheme()).WithRESTMapper(mapper).Build()
	r := &ServiceMeshReconciler{Client: c}
	mesh := &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "m", Generation: 3}}
	withPodMonitor(true)(mesh)

	var status meshv1alpha1.ServiceMeshStatus
	retry, err := r.reconcilePodMonitor(context.Background(), mesh, &status)
	if err != nil || !retry {
		t.Fatalf("retry %v, err %v: want a retry without an error", retry, err)
	}
	cond := meta.FindStatusCondition(status.Conditions, ConditionMetricsScraped)
	if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != ReasonPodMonitorCRDMissing || cond.ObservedGeneration != 3 {
		t.Fatalf("condition %+v", cond)
	}
	for _, want := range []string{"Prometheus Operator", "prometheus.io/scrape"} {
		if !strings.Contains(cond.Message, want) {
			t.Errorf("message %q does not mention %q", cond.Message, want)
		}
	}

	// podMonitor false with the condition present: nothing to delete without the CRD.
	withPodMonitor(false)(mesh)
	if _, err := r.reconcilePodMonitor(context.Background(), mesh, &status); err != nil {
		t.Fatal(err)
	}
	if meta.FindStatusCondition(status.Conditions, ConditionMetricsScraped) != nil {
		t.Errorf("condition left: %+v", status.Conditions)
	}
}

// A miss is remembered briefly, then discovery is asked again; a hit is the mapper's.
func TestPodMonitorCRDCheckCachesMisses(t *testing.T) {
	counting := &countingMapper{RESTMapper: meta.NewDefaultRESTMapper(nil)}
	var p podMonitorCRD
	now := time.Now()
	for range 3 {
		if ok, err := p.installed(counting, now); ok || err != nil {
			t.Fatalf("installed %v, %v: want false", ok, err)
		}
	}
	if counting.calls != 1 {
		t.Errorf("%d mapper calls within the recheck period, want 1", counting.calls)
	}
	installed := meta.NewDefaultRESTMapper(nil)
	installed.Add(podMonitorGVK, meta.RESTScopeNamespace)
	counting.RESTMapper = installed
	if ok, _ := p.installed(counting, now.Add(podMonitorCRDRecheck/2)); ok {
		t.Error("a miss is believed for the recheck period")
	}
	if ok, err := p.installed(counting, now.Add(podMonitorCRDRecheck)); !ok || err != nil {
		t.Errorf("installed %v, %v after the recheck period: want true", ok, err)
	}
}

type countingMapper struct {
	meta.RESTMapper
	calls int
}

func (m *countingMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	m.calls++
	return m.RESTMapper.RESTMapping(gk, versions...)
}
