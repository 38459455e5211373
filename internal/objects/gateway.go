package objects

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
)

// GatewayLabel selects the pods of a mesh's gateway; its value is the ServiceMesh's
// name. It is the gateway Deployment's (immutable) selector and the Service's.
const GatewayLabel = "mesh.envoymesh.io/gateway"

// Defaults of spec.gateway, for a ServiceMesh the API server has not defaulted.
const (
	defaultGatewayPort        = 80
	defaultGatewayServiceType = corev1.ServiceTypeClusterIP
	gatewayPortName           = "http"
)

// GatewaySuffix ends the name of a mesh's gateway Deployment and Service.
const GatewaySuffix = "-gateway"

// GatewayName is the name of a mesh's gateway Deployment and Service.
func GatewayName(mesh *meshv1alpha1.ServiceMesh) string { return mesh.Name + GatewaySuffix }

// GatewayConfigMapName is the name of the ConfigMap holding the gateway's Envoy config.
func GatewayConfigMapName(mesh *meshv1alpha1.ServiceMesh) string {
	return GatewayName(mesh) + ConfigMapSuffix
}

// GatewaySelectorLabels are the labels that pick a mesh's gateway pods.
func GatewaySelectorLabels(mesh *meshv1alpha1.ServiceMesh) map[string]string {
	return map[string]string{GatewayLabel: mesh.Name}
}

// GatewayConfigMap holds the gateway's bootstrap and its file-watched listeners and clusters.
func GatewayConfigMap(mesh *meshv1alpha1.ServiceMesh, cfg *envoyconfig.Output) *corev1.ConfigMap {
	return envoyConfigMap(gatewayMeta(mesh, GatewayConfigMapName(mesh)), cfg)
}

// GatewayService exposes the gateway at spec.gateway.port and maps it to the port
// Envoy can bind as non-root.
func GatewayService(mesh *meshv1alpha1.ServiceMesh) *corev1.Service {
	gw := ptr.Deref(mesh.Spec.Gateway, meshv1alpha1.Gateway{})
	port := gw.Port
	if port == 0 {
		port = defaultGatewayPort
	}
	serviceType := gw.ServiceType
	if serviceType == "" {
		serviceType = defaultGatewayServiceType
	}
	return &corev1.Service{
		TypeMeta:   typeMeta("v1", "Service"),
		ObjectMeta: gatewayMeta(mesh, GatewayName(mesh)),
		Spec: corev1.ServiceSpec{
			Type:     serviceType,
			Selector: GatewaySelectorLabels(mesh),
			Ports: []corev1.ServicePort{{
				Name:       gatewayPortName,
				Protocol:   corev1.ProtocolTCP,
				Port:       port,
				TargetPort: intstr.FromInt32(envoyconfig.GatewayListenPort),
			}},
		},
	}
}

// GatewayDeployment runs the mesh's front Envoy: a pod of its own with Envoy as
// its only, regular container, set up like a sidecar. The pod satisfies the
// restricted Pod Security Standard, and bootstrapHash is the only config-derived
// value in the template, so only a bootstrap change rolls the gateway. It runs as
// its own ServiceAccount and, unless the mesh's mTLS is Disabled, gets its
// certificate like a sidecar.
func GatewayDeployment(mesh *meshv1alpha1.ServiceMesh, sc Sidecar, bootstrapHash string) *appsv1.Deployment {
	gw := ptr.Deref(mesh.Spec.Gateway, meshv1alpha1.Gateway{})
	envoy := envoyContainer(sc, corev1.ContainerPort{
		Name: gatewayPortName, ContainerPort: envoyconfig.GatewayListenPort, Protocol: corev1.ProtocolTCP,
	})
	spec := corev1.PodSpec{
		ServiceAccountName: GatewayServiceAccountName(mesh),
		Volumes:            []corev1.Volume{configVolume(GatewayConfigMapName(mesh))},
		// Envoy never talks to the API server, and an internet-facing
		// pod should not carry a token it does not need.
		AutomountServiceAccountToken: ptr.To(false),
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot:   ptr.To(true),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	if meshv1alpha1.NeedsCertificate(mesh) {
		withIdentity(&spec, &envoy)
	}
	spec.Containers = []corev1.Container{envoy}
	return &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: gatewayMeta(mesh, GatewayName(mesh)),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(ptr.Deref(gw.Replicas, 1)),
			Selector: &metav1.LabelSelector{MatchLabels: GatewaySelectorLabels(mesh)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      gatewayLabels(mesh),
					Annotations: merge(ScrapeAnnotations(), map[string]string{BootstrapHashAnnotation: bootstrapHash}),
				},
				Spec: spec,
			},
		},
	}
}

// GatewayPodDisruptionBudgetName is the name of the PodDisruptionBudget of a
// mesh's gateway pods.
func GatewayPodDisruptionBudgetName(mesh *meshv1alpha1.ServiceMesh) string { return GatewayName(mesh) }

// GatewayPodDisruptionBudget bounds the voluntary disruptions of a mesh's
// gateway pods by spec.gateway.disruption. The caller writes it only while the
// gateway is enabled and spec.gateway.disruption is set.
func GatewayPodDisruptionBudget(mesh *meshv1alpha1.ServiceMesh) *policyv1.PodDisruptionBudget {
	var d *meshv1alpha1.Disruption
	if mesh.Spec.Gateway != nil {
		d = mesh.Spec.Gateway.Disruption
	}
	return podDisruptionBudget(gatewayMeta(mesh, GatewayPodDisruptionBudgetName(mesh)), GatewaySelectorLabels(mesh), d)
}

// gatewayLabels go on every object written for a mesh's gateway.
func gatewayLabels(mesh *meshv1alpha1.ServiceMesh) map[string]string {
	return map[string]string{
		GatewayLabel:   mesh.Name,
		nameLabel:      GatewayName(mesh),
		ManagedByLabel: ManagedBy,
		partOfLabel:    mesh.Name,
	}
}

// gatewayMeta is the metadata of a gateway object named name, controlled by the
// ServiceMesh so that deleting the mesh garbage-collects its gateway.
func gatewayMeta(mesh *meshv1alpha1.ServiceMesh, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:            name,
		Namespace:       mesh.Namespace,
		Labels:          gatewayLabels(mesh),
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(mesh, meshv1alpha1.GroupVersion.WithKind("ServiceMesh"))},
	}
}
