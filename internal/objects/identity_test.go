package objects

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

func TestServiceAccountIsOwnedAndCarriesNoToken(t *testing.T) {
	ms := testMeshService()
	sa := ServiceAccount(ms)
	if sa.Name != "service-a" || sa.Namespace != ms.Namespace || !metav1.IsControlledBy(sa, ms) {
		t.Errorf("ServiceAccount %s/%s controlled by the MeshService: %v", sa.Namespace, sa.Name, metav1.IsControlledBy(sa, ms))
	}
	if ptr.Deref(sa.AutomountServiceAccountToken, true) {
		t.Error("automountServiceAccountToken must be false")
	}
	gw := GatewayServiceAccount(testServiceMesh())
	if gw.Name != "edge-gateway" || ptr.Deref(gw.AutomountServiceAccountToken, true) {
		t.Errorf("gateway ServiceAccount %s, automount %v", gw.Name, gw.AutomountServiceAccountToken)
	}
}

func TestPodsRunAsTheServiceAccount(t *testing.T) {
	ms := testMeshService()
	if got := Deployment(ms, DefaultSidecar("envoy:1"), "h", true).Spec.Template.Spec.ServiceAccountName; got != "service-a" || !OwnsServiceAccount(ms) {
		t.Errorf("serviceAccountName %q, owned %v: want the MeshService's own", got, OwnsServiceAccount(ms))
	}
	ms.Spec.Template.Spec.ServiceAccountName = "payments"
	if got := Deployment(ms, DefaultSidecar("envoy:1"), "h", true).Spec.Template.Spec.ServiceAccountName; got != "payments" || OwnsServiceAccount(ms) {
		t.Errorf("serviceAccountName %q, owned %v: want the template's, not created by us", got, OwnsServiceAccount(ms))
	}
}

// TestIdentityVolume pins what the kubelet is asked for: the pod certificate from
// our signer with a P-256 key, and every trust bundle of the signer ({} selector:
// nil would match none), mounted read-only into the sidecar only.
func TestIdentityVolume(t *testing.T) {
	spec := Deployment(testMeshService(), DefaultSidecar("envoy:1"), "h", true).Spec.Template.Spec
	want := corev1.Volume{Name: "envoy-identity", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{
			{PodCertificate: &corev1.PodCertificateProjection{
				SignerName: "mesh.envoymesh.io/identity", KeyType: "ECDSAP256", CredentialBundlePath: "bundle.pem",
			}},
			{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{
				SignerName: ptr.To("mesh.envoymesh.io/identity"), LabelSelector: &metav1.LabelSelector{}, Path: "ca.pem",
			}},
		},
	}}}
	if d := cmp.Diff(want, spec.Volumes[len(spec.Volumes)-1]); d != "" {
		t.Errorf("identity volume (-want +got):\n%s", d)
	}
	for _, c := range append(spec.Containers, spec.InitContainers[1:]...) {
		for _, m := range c.VolumeMounts {
			if m.Name == IdentityVolumeName {
				t.Errorf("container %q mounts the identity: only the sidecar may", c.Name)
			}
		}
	}
	mount := spec.InitContainers[0].VolumeMounts[len(spec.InitContainers[0].VolumeMounts)-1]
	if d := cmp.Diff(corev1.VolumeMount{Name: IdentityVolumeName, MountPath: "/var/run/envoymesh/identity", ReadOnly: true}, mount); d != "" {
		t.Errorf("sidecar mount (-want +got):\n%s", d)
	}
}

func TestDisabledMTLSGetsNoIdentityVolume(t *testing.T) {
	spec := Deployment(testMeshService(), DefaultSidecar("envoy:1"), "h", false).Spec.Template.Spec
	for _, v := range spec.Volumes {
		if v.Name == IdentityVolumeName {
			t.Error("a MeshService of a Disabled mesh got the identity volume")
		}
	}
	mesh := testServiceMesh()
	mesh.Spec.MTLS = &meshv1alpha1.MTLS{Mode: meshv1alpha1.MTLSDisabled}
	for _, v := range GatewayDeployment(mesh, DefaultSidecar("envoy:1"), "h").Spec.Template.Spec.Volumes {
		if v.Name == IdentityVolumeName {
			t.Error("the gateway of a Disabled mesh got the identity volume")
		}
	}
}

// TestNetworkPolicyAdmitsOnlyTheSidecar: ingress reaches servicePort and the
// status port, never the app's port.
func TestNetworkPolicyAdmitsOnlyTheSidecar(t *testing.T) {
	ms := testMeshService()
	np := NetworkPolicy(ms)
	if np.Name != ms.Name || !metav1.IsControlledBy(np, ms) {
		t.Errorf("NetworkPolicy %s, controlled %v", np.Name, metav1.IsControlledBy(np, ms))
	}
	if d := cmp.Diff(SelectorLabels(ms), np.Spec.PodSelector.MatchLabels); d != "" {
		t.Errorf("pod selector (-want +got):\n%s", d)
	}
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 0 {
		t.Fatalf("ingress %+v: want one rule, from anywhere", np.Spec.Ingress)
	}
	var ports []int32
	for _, p := range np.Spec.Ingress[0].Ports {
		ports = append(ports, p.Port.IntVal)
	}
	if d := cmp.Diff([]int32{ms.Spec.ServicePort, 15021}, ports); d != "" {
		t.Errorf("ports (-want +got):\n%s", d)
	}
}
