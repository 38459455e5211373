package objects

import (
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// PodDisruptionBudgetName is the name of the PodDisruptionBudget of a
// MeshService's pods: the MeshService's own.
func PodDisruptionBudgetName(ms *meshv1alpha1.MeshService) string { return ms.Name }

// PodDisruptionBudget bounds the voluntary disruptions (evictions, as a node
// drain makes them) of a MeshService's pods by spec.disruption. The caller
// writes it only while spec.disruption is set.
func PodDisruptionBudget(ms *meshv1alpha1.MeshService) *policyv1.PodDisruptionBudget {
	return podDisruptionBudget(objectMeta(ms, PodDisruptionBudgetName(ms)), SelectorLabels(ms), ms.Spec.Disruption)
}

// podDisruptionBudget selects the pods labelled selector with d's bound.
// Unhealthy pods may always be evicted: they serve nothing, and a pod stuck
// not ready (a crash-looping app, an Envoy that never got its config) must not
// hold up a node drain for ever.
func podDisruptionBudget(meta metav1.ObjectMeta, selector map[string]string, d *meshv1alpha1.Disruption) *policyv1.PodDisruptionBudget {
	d = ptr.To(ptr.Deref(d, meshv1alpha1.Disruption{}))
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   typeMeta("policy/v1", "PodDisruptionBudget"),
		ObjectMeta: meta,
		Spec: policyv1.PodDisruptionBudgetSpec{
			Selector:                   &metav1.LabelSelector{MatchLabels: selector},
			MaxUnavailable:             d.MaxUnavailable,
			MinAvailable:               d.MinAvailable,
			UnhealthyPodEvictionPolicy: ptr.To(policyv1.AlwaysAllow),
		},
	}
}
