// Package v1alpha1 contains the mesh.envoymesh.io/v1alpha1 API: MeshService and ServiceMesh.
// +kubebuilder:object:generate=true
// +groupName=mesh.envoymesh.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "mesh.envoymesh.io", Version: "v1alpha1"}

	// SchemeBuilder adds the Go types to a scheme; each kind registers itself in init.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
