package objects

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// Service is the headless Service of a MeshService. Being headless, its DNS name
// resolves to the pod IPs, which is what the callers' STRICT_DNS clusters need,
// and callers dial the sidecar's inbound listener at exactly servicePort.
func Service(ms *meshv1alpha1.MeshService) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: objectMeta(ms, ms.Name),
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  SelectorLabels(ms),
			Ports: []corev1.ServicePort{{
				Name:        PortName(ms.Spec.Protocol),
				Protocol:    corev1.ProtocolTCP,
				AppProtocol: appProtocol(ms.Spec.Protocol),
				Port:        ms.Spec.ServicePort,
				TargetPort:  intstr.FromInt32(ms.Spec.ServicePort),
			}},
		},
	}
}

// PortName names the service port by protocol, as Kubernetes and meshes expect
// (http, http2, grpc, tcp).
func PortName(p meshv1alpha1.Protocol) string {
	if p == "" {
		p = meshv1alpha1.ProtocolHTTP
	}
	return strings.ToLower(string(p))
}

func appProtocol(p meshv1alpha1.Protocol) *string {
	var s string
	switch p {
	case meshv1alpha1.ProtocolHTTP2, meshv1alpha1.ProtocolGRPC:
		s = "kubernetes.io/h2c"
	case meshv1alpha1.ProtocolTCP:
		return nil
	default:
		s = "http"
	}
	return &s
}
