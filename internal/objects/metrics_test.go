package objects

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

func TestScrapeAnnotationsOnMeshServicePods(t *testing.T) {
	ms := &meshv1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Name: "cart", Namespace: "shop"},
		Spec: meshv1alpha1.MeshServiceSpec{
			Mesh: "m", ServicePort: 8080,
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"note": "kept"}}},
		},
	}
	got := Deployment(ms, DefaultSidecar("envoy:1"), "h", false).Spec.Template.Annotations
	want := map[string]string{
		"note": "kept", BootstrapHashAnnotation: "h",
		"prometheus.io/scrape": "true", "prometheus.io/port": "15021", "prometheus.io/path": "/stats/prometheus",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("template annotations (-want +got):\n%s", d)
	}
}

// An app that asks to be scraped itself keeps its own prometheus.io/* annotations,
// all of them: ours are not mixed in.
func TestScrapeAnnotationsKeepTheUsers(t *testing.T) {
	for _, own := range []map[string]string{
		{"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
		{"prometheus.io/path": "/metrics"},
		{"prometheus.io/scrape": "false"},
	} {
		ms := &meshv1alpha1.MeshService{
			ObjectMeta: metav1.ObjectMeta{Name: "cart", Namespace: "shop"},
			Spec: meshv1alpha1.MeshServiceSpec{
				Mesh: "m", ServicePort: 8080,
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: own}},
			},
		}
		got := Deployment(ms, DefaultSidecar("envoy:1"), "h", false).Spec.Template.Annotations
		want := merge(own, map[string]string{BootstrapHashAnnotation: "h"})
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("user annotations %v (-want +got):\n%s", own, d)
		}
		if len(ms.Spec.Template.Annotations) != len(own) {
			t.Errorf("the MeshService's template was modified: %v", ms.Spec.Template.Annotations)
		}
	}
}

func TestPodMonitor(t *testing.T) {
	mesh := &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "shop", UID: "u1"}}
	pm := PodMonitor(mesh)
	if pm.GetAPIVersion() != "monitoring.coreos.com/v1" || pm.GetKind() != "PodMonitor" ||
		pm.GetName() != "m-proxies" || pm.GetNamespace() != "shop" {
		t.Fatalf("identity %s %s %s/%s", pm.GetAPIVersion(), pm.GetKind(), pm.GetNamespace(), pm.GetName())
	}
	owner := metav1.GetControllerOf(pm)
	if owner == nil || owner.Kind != "ServiceMesh" || owner.Name != "m" || owner.UID != "u1" {
		t.Errorf("controller %+v, want the ServiceMesh", owner)
	}
	match, _, _ := unstructured.NestedStringMap(pm.Object, "spec", "selector", "matchLabels")
	if d := cmp.Diff(map[string]string{"app.kubernetes.io/part-of": "m", "app.kubernetes.io/managed-by": "envoymesh-operator"}, match); d != "" {
		t.Errorf("selector (-want +got):\n%s", d)
	}
	eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
	if d := cmp.Diff([]any{map[string]any{"port": "envoy-status", "path": "/stats/prometheus"}}, eps); d != "" {
		t.Errorf("endpoints (-want +got):\n%s", d)
	}

	if got, _, _ := unstructured.NestedStringSlice(pm.Object, "spec", "podTargetLabels"); !cmp.Equal(got, []string{"app.kubernetes.io/name", "app.kubernetes.io/part-of"}) {
		t.Errorf("podTargetLabels %v", got)
	}

	// The selector picks the mesh's sidecar pods and gateway pods, each with
	// a container port of that name, and nobody else's.
	sel := labels.SelectorFromSet(match)
	ms := &meshv1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Name: "cart", Namespace: "shop"}, Spec: meshv1alpha1.MeshServiceSpec{Mesh: "m", ServicePort: 8080}}
	for what, tmpl := range map[string]corev1.PodTemplateSpec{
		"sidecar": Deployment(ms, DefaultSidecar("envoy:1"), "h", false).Spec.Template,
		"gateway": GatewayDeployment(mesh, DefaultSidecar("envoy:1"), "h").Spec.Template,
	} {
		if !sel.Matches(labels.Set(tmpl.Labels)) {
			t.Errorf("%s pod labels %v not selected", what, tmpl.Labels)
		}
		if !hasNamedPort(tmpl.Spec, "envoy-status", 15021) {
			t.Errorf("%s pod has no container port envoy-status 15021", what)
		}
	}
	other := &meshv1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Name: "cart", Namespace: "shop"}, Spec: meshv1alpha1.MeshServiceSpec{Mesh: "n", ServicePort: 8080}}
	if sel.Matches(labels.Set(Deployment(other, DefaultSidecar("envoy:1"), "h", false).Spec.Template.Labels)) {
		t.Error("another mesh's pods are selected")
	}
}

func hasNamedPort(spec corev1.PodSpec, name string, port int32) bool {
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		for _, p := range c.Ports {
			if p.Name == name && p.ContainerPort == port {
				return true
			}
		}
	}
	return false
}
