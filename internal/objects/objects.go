// Package objects builds the Kubernetes objects the operator writes for a
// MeshService and for a ServiceMesh's gateway. Every function is pure: the same
// inputs give the same object, so server-side apply only changes what really changed.
package objects

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// Labels and annotations the operator puts on what it writes.
const (
	// ServiceLabel selects the pods of a MeshService; it is the Deployment's
	// (immutable) selector and the headless Service's selector.
	ServiceLabel = "mesh.envoymesh.io/service"
	// BootstrapHashAnnotation on the pod template rolls pods when, and only when,
	// the Envoy bootstrap changes; listener and cluster changes are hot-reloaded.
	BootstrapHashAnnotation = "mesh.envoymesh.io/bootstrap-hash"
	// ConfigVersionAnnotation on the ConfigMap records its lds/cds version.
	ConfigVersionAnnotation = "mesh.envoymesh.io/config-version"

	nameLabel = "app.kubernetes.io/name"
	// ManagedByLabel is on every object and pod we write: the manager caches only
	// the pods that carry it.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	partOfLabel    = "app.kubernetes.io/part-of"
	// ManagedBy is the value of app.kubernetes.io/managed-by on every object we write.
	ManagedBy = "envoymesh-operator"
)

// ConfigMapSuffix ends the name of every ConfigMap holding an Envoy config.
const ConfigMapSuffix = "-envoy"

// ConfigMapName is the name of the ConfigMap holding a MeshService's Envoy config.
func ConfigMapName(ms *meshv1alpha1.MeshService) string { return ms.Name + ConfigMapSuffix }

// SelectorLabels are the labels that pick a MeshService's pods.
func SelectorLabels(ms *meshv1alpha1.MeshService) map[string]string {
	return map[string]string{ServiceLabel: ms.Name}
}

// commonLabels go on every object written for ms.
func commonLabels(ms *meshv1alpha1.MeshService) map[string]string {
	return map[string]string{
		ServiceLabel:   ms.Name,
		nameLabel:      ms.Name,
		ManagedByLabel: ManagedBy,
		partOfLabel:    ms.Spec.Mesh,
	}
}

// objectMeta is the metadata of an object named name, controlled by ms so that
// deleting the MeshService garbage-collects it.
func objectMeta(ms *meshv1alpha1.MeshService, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       ms.Namespace,
		Labels:          commonLabels(ms),
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ms, meshv1alpha1.GroupVersion.WithKind("MeshService"))},
	}
}
