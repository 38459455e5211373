package plugin

import (
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// meshService creates a MeshService calling upstreams ("name" or "ns/name") and
// writes status as the operator would.
func meshService(ns, name, mesh string, upstreams []string, status meshv1alpha1.MeshServiceStatus) *meshv1alpha1.MeshService {
	ms := &meshv1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: meshv1alpha1.MeshServiceSpec{
			Mesh: mesh, Port: 8080,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}},
		},
	}
	for i, u := range upstreams {
		up := meshv1alpha1.Upstream{Name: u, LocalPort: int32(9001 + i)}
		if n, s, ok := cut(u); ok {
			up.Namespace, up.Name = n, s
		}
		ms.Spec.Upstreams = append(ms.Spec.Upstreams, up)
	}
	ExpectWithOffset(1, k8sClient.Create(ctx, ms)).To(Succeed())
	status.ObservedGeneration = ms.Generation
	ms.Status = status
	ExpectWithOffset(1, k8sClient.Status().Update(ctx, ms)).To(Succeed())
	return ms
}

func serviceMesh(ns, name string, spec meshv1alpha1.ServiceMeshSpec, status meshv1alpha1.ServiceMeshStatus) *meshv1alpha1.ServiceMesh {
	m := &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
	ExpectWithOffset(1, k8sClient.Create(ctx, m)).To(Succeed())
	status.ObservedGeneration = m.Generation
	m.Status = status
	ExpectWithOffset(1, k8sClient.Status().Update(ctx, m)).To(Succeed())
	return m
}

func cut(s string) (string, string, bool) {
	for i := range s {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return "", s, false
}

func at(t time.Time) *metav1.Time { mt := metav1.NewTime(t); return &mt }

var readyConds = []metav1.Condition{
	condition(meshv1alpha1.ConditionReady, true, "Available", "ready"),
	condition(meshv1alpha1.ConditionUpstreamsResolved, true, "Resolved", "all resolved"),
	condition(meshv1alpha1.ConditionUpstreamsAuthorized, true, "Authorized", "all accept"),
}

func meshv1alpha1MeshServiceStatusReady() meshv1alpha1.MeshServiceStatus {
	return meshv1alpha1.MeshServiceStatus{Conditions: readyConds}
}
