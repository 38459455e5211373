package objects

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
)

// IdentityVolumeName is the projected volume through which the kubelet hands the
// sidecar its Pod Certificate and the mesh's trust anchors.
const IdentityVolumeName = "envoy-identity"

// identityKeyType is the key the kubelet generates for the sidecar: Envoy
// negotiates ECDSA P-256 everywhere, but not Ed25519.
const identityKeyType = "ECDSAP256"

// ServiceAccountName is the ServiceAccount a MeshService's pods run as, and so
// their identity: the template's, else the one the operator creates, named after
// the MeshService.
func ServiceAccountName(ms *meshv1alpha1.MeshService) string {
	if sa := ms.Spec.Template.Spec.ServiceAccountName; sa != "" {
		return sa
	}
	return ms.Name
}

// OwnsServiceAccount reports whether the operator creates the pods' ServiceAccount
// (the template names none).
func OwnsServiceAccount(ms *meshv1alpha1.MeshService) bool {
	return ms.Spec.Template.Spec.ServiceAccountName == ""
}

// ServiceAccount gives a MeshService an identity of its own. It carries no token
// by default: Envoy never talks to the API server, and an app that does can ask
// for one in its template.
func ServiceAccount(ms *meshv1alpha1.MeshService) *corev1.ServiceAccount {
	return serviceAccount(objectMeta(ms, ms.Name))
}

// GatewayServiceAccountName is the ServiceAccount, and so the identity, of a
// mesh's gateway.
func GatewayServiceAccountName(mesh *meshv1alpha1.ServiceMesh) string { return GatewayName(mesh) }

// GatewayServiceAccount is the identity of a mesh's gateway.
func GatewayServiceAccount(mesh *meshv1alpha1.ServiceMesh) *corev1.ServiceAccount {
	return serviceAccount(gatewayMeta(mesh, GatewayServiceAccountName(mesh)))
}

func serviceAccount(meta metav1.ObjectMeta) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		TypeMeta:                     typeMeta("v1", "ServiceAccount"),
		ObjectMeta:                   meta,
		AutomountServiceAccountToken: ptr.To(false),
	}
}

// identityVolume asks the kubelet for the pod's certificate from the operator's
// signer and for the signer's trust anchors. The labelSelector is empty rather
// than nil on purpose: a nil selector matches no ClusterTrustBundle at all. The
// files keep the kubelet's default mode (0644, or 0600/0640 with fsGroup), which
// the sidecar's non-root user can read (see the restricted pod security test).
func identityVolume() corev1.Volume {
	return corev1.Volume{
		Name: IdentityVolumeName,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{
				{PodCertificate: &corev1.PodCertificateProjection{
					SignerName:           identity.SignerName,
					KeyType:              identityKeyType,
					CredentialBundlePath: envoyconfig.CredentialBundleFile,
				}},
				{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{
					SignerName:    ptr.To(identity.SignerName),
					LabelSelector: &metav1.LabelSelector{},
					Path:          envoyconfig.TrustBundleFile,
				}},
			},
		}},
	}
}

// identityMount gives the volume to the sidecar alone, read-only: the app never
// sees the private key.
func identityMount() corev1.VolumeMount {
	return corev1.VolumeMount{Name: IdentityVolumeName, MountPath: envoyconfig.IdentityDir, ReadOnly: true}
}

// withIdentity adds the identity volume to a pod whose Envoy container is envoy.
func withIdentity(spec *corev1.PodSpec, envoy *corev1.Container) {
	spec.Volumes = append(spec.Volumes, identityVolume())
	envoy.VolumeMounts = append(envoy.VolumeMounts, identityMount())
}
