package v1alpha1

import "k8s.io/apimachinery/pkg/types"

// Key is the upstream MeshService's namespace/name; an empty namespace means the
// calling MeshService's own.
func (u Upstream) Key(callerNamespace string) types.NamespacedName {
	return types.NamespacedName{Namespace: orDefault(u.Namespace, callerNamespace), Name: u.Name}
}

// Key is the routed MeshService's namespace/name; an empty namespace means the
// mesh's own.
func (r GatewayRoute) Key(meshNamespace string) types.NamespacedName {
	return types.NamespacedName{Namespace: orDefault(r.Namespace, meshNamespace), Name: r.Service}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
