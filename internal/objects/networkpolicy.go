package objects

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
)

// NetworkPolicy admits ingress to a MeshService's pods only at the sidecar: its
// inbound listener (servicePort) and its status port. The sidecar does not
// intercept traffic, so without it the app's own port would be reachable around
// mTLS and authorization. Written in Strict mode only.
func NetworkPolicy(ms *meshv1alpha1.MeshService) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	port := func(p int32) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &intstr.IntOrString{Type: intstr.Int, IntVal: p}}
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   typeMeta("networking.k8s.io/v1", "NetworkPolicy"),
		ObjectMeta: objectMeta(ms, ms.Name),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: SelectorLabels(ms)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{port(ms.Spec.ServicePort), port(envoyconfig.StatusPort)},
			}},
		},
	}
}

// GatewayNetworkPolicyName is the name of the NetworkPolicy selecting a mesh's gateway pods.
func GatewayNetworkPolicyName(mesh *meshv1alpha1.ServiceMesh) string { return GatewayName(mesh) }

// GatewayNetworkPolicy admits ingress to a mesh's gateway pods only at Envoy's
// listener (envoyconfig.GatewayListenPort, the Service's target port) and its
// status port (envoyconfig.StatusPort: readiness and metrics). The admin port
// listens on loopback and needs no rule. Written whenever the gateway is.
func GatewayNetworkPolicy(mesh *meshv1alpha1.ServiceMesh) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	port := func(p int32) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &intstr.IntOrString{Type: intstr.Int, IntVal: p}}
	}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   typeMeta("networking.k8s.io/v1", "NetworkPolicy"),
		ObjectMeta: gatewayMeta(mesh, GatewayNetworkPolicyName(mesh)),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: GatewaySelectorLabels(mesh)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{port(envoyconfig.GatewayListenPort), port(envoyconfig.StatusPort)},
			}},
		},
	}
}
