package envoyconfig

import (
	"k8s.io/apimachinery/pkg/types"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// ServiceFor resolves a MeshService into a Service: upstream namespaces default to
// the MeshService's own, each Target comes from the upstream MeshServices the
// caller found (a missing or nil entry leaves Target nil), and traffic merges the
// caller's upstreams[].traffic, the upstream's spec.traffic and the mesh's
// defaults (mesh may be nil). The mesh's access log and tracing become
// Observability (see ObservabilityFor).
func ServiceFor(ms *v1alpha1.MeshService, found map[types.NamespacedName]*v1alpha1.MeshService, mesh *v1alpha1.ServiceMesh) Service {
	var meshDefaults *v1alpha1.TrafficPolicy
	if mesh != nil {
		meshDefaults = mesh.Spec.Defaults
	}
	svc := Service{
		Name:          ms.Name,
		Namespace:     ms.Namespace,
		Port:          ms.Spec.Port,
		ServicePort:   ms.Spec.ServicePort,
		Protocol:      ms.Spec.Protocol,
		Observability: ObservabilityFor(mesh),
	}
	for i, u := range ms.Spec.Upstreams {
		key := u.Key(ms.Namespace)
		up := Upstream{Name: key.Name, Namespace: key.Namespace, LocalPort: u.LocalPort}
		if callee := found[key]; callee != nil {
			up.Target = &Target{
				ServicePort: callee.Spec.ServicePort,
				Protocol:    callee.Spec.Protocol,
				Traffic:     MergeTraffic(u.Traffic, callee.Spec.Traffic, meshDefaults),
			}
			if callee.Spec.Protocol == v1alpha1.ProtocolTCP {
				up.Invalid = tcpOverrideProblem(i, up, u.Traffic)
			}
		}
		svc.Upstreams = append(svc.Upstreams, up)
	}
	return svc
}
