package controllers

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
)

// Reasons a PodCertificateRequest is Denied, one per check; the message says
// what was found.
const (
	DenyPodNotFound          = "PodNotFound"
	DenyPodUIDMismatch       = "PodUIDMismatch"
	DenyNodeMismatch         = "NodeMismatch"
	DenyServiceAccount       = "ServiceAccountMismatch"
	DenyNotAMember           = "NotAMeshMember"
	DenyMTLSDisabled         = "MTLSDisabled"
	DenyNoVolume             = "NoPodCertificateVolume"
	DenyUnsupportedKeyType   = "UnsupportedKeyType"
	DenyInvalidStubPKCS10Req = "InvalidStubPKCS10Request"
)

// supportedKeyType is the one key type the signer issues for: the one the
// operator puts in every pod's projection, and one Envoy can use.
const supportedKeyType = "ECDSAP256"

// requestFacts is what the signer read, live, about one request: the pod, the
// ServiceAccount it names and what the pod is a member of. A nil pointer means
// the API server said it does not exist; anything it could not find out is an
// error before judge is ever called.
type requestFacts struct {
	pod            *corev1.Pod
	serviceAccount *corev1.ServiceAccount
	member         *membership
}

// membership is the MeshService, or the mesh's gateway, a pod belongs to.
type membership struct {
	// owner names it for messages: "MeshService x" or "the gateway of ServiceMesh m".
	owner string
	// serviceAccount is the one its pods run as.
	serviceAccount string
	// mesh is its ServiceMesh, nil when absent (built-in defaults: mTLS Strict).
	mesh *meshv1alpha1.ServiceMesh
}

// verdict is what the signer does with a request: issue a leaf for spiffeID and
// key, or deny with reason.
type verdict struct {
	deny     bool
	reason   string
	message  string
	spiffeID string
	key      crypto.PublicKey
}

func denied(reason, format string, args ...any) verdict {
	return verdict{deny: true, reason: reason, message: fmt.Sprintf(format, args...)}
}

// judge runs every check on a request against the live pod. Each check that
// fails is definite (the facts are what the API server holds now), so the
// verdict is a Denial naming it; the kubelet will not ask again for this pod.
func judge(req *certificatesv1.PodCertificateRequest, f requestFacts, trustDomain string) verdict {
	spec := req.Spec
	pod := f.pod
	switch {
	case pod == nil:
		return denied(DenyPodNotFound, "pod %s/%s does not exist", req.Namespace, spec.PodName)
	case pod.UID != spec.PodUID:
		return denied(DenyPodUIDMismatch, "pod %s/%s has UID %s, the request names %s", pod.Namespace, pod.Name, pod.UID, spec.PodUID)
	case string(spec.NodeName) != pod.Spec.NodeName:
		return denied(DenyNodeMismatch, "pod %s/%s runs on node %q, the request comes from node %q", pod.Namespace, pod.Name, pod.Spec.NodeName, spec.NodeName)
	case pod.Spec.ServiceAccountName != spec.ServiceAccountName:
		return denied(DenyServiceAccount, "pod %s/%s runs as ServiceAccount %q, the request names %q", pod.Namespace, pod.Name, pod.Spec.ServiceAccountName, spec.ServiceAccountName)
	case f.serviceAccount == nil:
		return denied(DenyServiceAccount, "ServiceAccount %s/%s does not exist", req.Namespace, spec.ServiceAccountName)
	case f.serviceAccount.UID != spec.ServiceAccountUID:
		return denied(DenyServiceAccount, "ServiceAccount %s/%s has UID %s, the request names %s", req.Namespace, spec.ServiceAccountName, f.serviceAccount.UID, spec.ServiceAccountUID)
	case f.member == nil:
		return denied(DenyNotAMember, "pod %s/%s belongs to no MeshService and to no mesh gateway", pod.Namespace, pod.Name)
	case pod.Spec.ServiceAccountName != f.member.serviceAccount:
		return denied(DenyNotAMember, "pod %s/%s runs as ServiceAccount %q, but %s runs as %q", pod.Namespace, pod.Name, pod.Spec.ServiceAccountName, f.member.owner, f.member.serviceAccount)
	case !meshv1alpha1.NeedsCertificate(f.member.mesh):
		return denied(DenyMTLSDisabled, "%s is in ServiceMesh %s, whose spec.mtls.mode is Disabled (and whose delivery is not XDS)", f.member.owner, f.member.mesh.Name)
	}
	proj := podCertificateProjection(pod)
	if proj == nil {
		return denied(DenyNoVolume, "pod %s/%s mounts no podCertificate projection for signer %s", pod.Namespace, pod.Name, identity.SignerName)
	}
	if proj.KeyType != supportedKeyType {
		return denied(DenyUnsupportedKeyType, "pod %s/%s asks for key type %s; the signer issues only %s", pod.Namespace, pod.Name, proj.KeyType, supportedKeyType)
	}
	csr, err := x509.ParseCertificateRequest(spec.StubPKCS10Request)
	if err == nil {
		err = csr.CheckSignature()
	}
	if err != nil {
		return denied(DenyInvalidStubPKCS10Req, "spec.stubPKCS10Request: %v", err)
	}
	if k, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return denied(DenyUnsupportedKeyType, "spec.stubPKCS10Request holds a %s key; the signer issues only %s", keyTypeName(csr.PublicKey), supportedKeyType)
	}
	return verdict{spiffeID: identity.SPIFFEID(trustDomain, pod.Namespace, pod.Spec.ServiceAccountName), key: csr.PublicKey}
}

// podCertificateProjection is the pod's first podCertificate source for our signer.
func podCertificateProjection(pod *corev1.Pod) *corev1.PodCertificateProjection {
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if p := src.PodCertificate; p != nil && p.SignerName == identity.SignerName {
				return p
			}
		}
	}
	return nil
}

func keyTypeName(k crypto.PublicKey) string {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	default:
		return fmt.Sprintf("%T", k)
	}
}
