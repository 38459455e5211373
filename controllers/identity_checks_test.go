package controllers

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
)

// stubCSR is the kubelet's stub PKCS#10 request: empty but for the key.
func stubCSR(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// judgeCase is a member pod and the request its kubelet would file; each test
// case breaks one thing.
func judgeCase(t *testing.T) (*certificatesv1.PodCertificateRequest, requestFacts) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart-1", UID: "pod-uid"},
		Spec: corev1.PodSpec{NodeName: "node-a", ServiceAccountName: "cart", Volumes: []corev1.Volume{{
			Name: "envoy-identity", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{PodCertificate: &corev1.PodCertificateProjection{SignerName: identity.SignerName, KeyType: "ECDSAP256"}},
			}}},
		}}},
	}
	req := &certificatesv1.PodCertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "req-1"},
		Spec: certificatesv1.PodCertificateRequestSpec{
			SignerName: identity.SignerName, PodName: "cart-1", PodUID: "pod-uid",
			ServiceAccountName: "cart", ServiceAccountUID: "sa-uid", NodeName: "node-a", NodeUID: "node-uid",
			StubPKCS10Request: stubCSR(t, key),
		},
	}
	return req, requestFacts{
		pod:            pod,
		serviceAccount: &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart", UID: "sa-uid"}},
		member:         &membership{owner: "MeshService cart", serviceAccount: "cart"},
	}
}

func TestJudgeIssuesTheServiceAccountsSPIFFEID(t *testing.T) {
	req, f := judgeCase(t)
	v := judge(req, f, "example.org")
	if v.deny || v.spiffeID != "spiffe://example.org/ns/shop/sa/cart" || v.key == nil {
		t.Fatalf("verdict %+v, want an issue for spiffe://example.org/ns/shop/sa/cart", v)
	}
}

// TestJudgeDeniesNamingTheCheck tries each forbidden thing and sees it refused
// with the reason that names it.
func TestJudgeDeniesNamingTheCheck(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	disabled := &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: meshv1alpha1.ServiceMeshSpec{MTLS: &meshv1alpha1.MTLS{Mode: meshv1alpha1.MTLSDisabled}}}
	for _, tc := range []struct {
		name, reason, message string
		breakIt               func(*certificatesv1.PodCertificateRequest, *requestFacts)
	}{
		{"pod gone", DenyPodNotFound, "does not exist", func(_ *certificatesv1.PodCertificateRequest, f *requestFacts) { f.pod = nil }},
		{"another pod of that name", DenyPodUIDMismatch, "has UID pod-uid", func(r *certificatesv1.PodCertificateRequest, _ *requestFacts) { r.Spec.PodUID = "old-uid" }},
		{"another node", DenyNodeMismatch, `request comes from node "node-b"`, func(r *certificatesv1.PodCertificateRequest, _ *requestFacts) { r.Spec.NodeName = "node-b" }},
		{"another ServiceAccount", DenyServiceAccount, `runs as ServiceAccount "cart"`, func(r *certificatesv1.PodCertificateRequest, _ *requestFacts) {
			r.Spec.ServiceAccountName = "admin"
		}},
		{"ServiceAccount recreated", DenyServiceAccount, "has UID sa-uid", func(r *certificatesv1.PodCertificateRequest, _ *requestFacts) { r.Spec.ServiceAccountUID = "old" }},
		{"ServiceAccount gone", DenyServiceAccount, "does not exist", func(_ *certificatesv1.PodCertificateRequest, f *requestFacts) { f.serviceAccount = nil }},
		{"not a member", DenyNotAMember, "no MeshService", func(_ *certificatesv1.PodCertificateRequest, f *requestFacts) { f.member = nil }},
		{"member label, wrong ServiceAccount", DenyNotAMember, `MeshService cart runs as "payments"`, func(_ *certificatesv1.PodCertificateRequest, f *requestFacts) {
			f.member.serviceAccount = "payments"
		}},
		{"mesh Disabled", DenyMTLSDisabled, "Disabled", func(_ *certificatesv1.PodCertificateRequest, f *requestFacts) { f.member.mesh = disabled }},
		{"no projection", DenyNoVolume, "no podCertificate projection", func(_ *certificatesv1.PodCertificateRequest, f *requestFacts) { f.pod.Spec.Volumes = nil }},
		{"projection asks Ed25519", DenyUnsupportedKeyType, "key type ED25519", func(_ *certificatesv1.PodCertificateRequest, f *requestFacts) {
			f.pod.Spec.Volumes[0].Projected.Sources[0].PodCertificate.KeyType = "ED25519"
		}},
		{"RSA key", DenyUnsupportedKeyType, "*rsa.PublicKey", func(r *certificatesv1.PodCertificateRequest, _ *requestFacts) {
			r.Spec.StubPKCS10Request = stubCSR(t, rsaKey)
		}},
		{"P-384 key", DenyUnsupportedKeyType, "ECDSA P-384", func(r *certificatesv1.PodCertificateRequest, _ *requestFacts) {
			r.Spec.StubPKCS10Request = stubCSR(t, p384)
		}},
		{"garbage CSR", DenyInvalidStubPKCS10Req, "spec.stubPKCS10Request", func(r *certificatesv1.PodCertificateRequest, _ *requestFacts) { r.Spec.StubPKCS10Request = []byte("x") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, f := judgeCase(t)
			tc.breakIt(req, &f)
			v := judge(req, f, "cluster.local")
			if !v.deny || v.reason != tc.reason || !strings.Contains(v.message, tc.message) {
				t.Errorf("verdict %+v, want Denied %s with %q in the message", v, tc.reason, tc.message)
			}
		})
	}
}

func TestIdentityStatusAndCondition(t *testing.T) {
	ms := &meshv1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"}}
	id := identityStatus(ms, nil, "cluster.local")
	if id.ServiceAccount != "cart" || id.SPIFFEID != "spiffe://cluster.local/ns/shop/sa/cart" {
		t.Errorf("identity %+v", id)
	}
	if c := identityCondition(id, nil, nil); c.Status != metav1.ConditionTrue || c.Reason != ReasonAssigned {
		t.Errorf("condition %+v", c)
	}
	c := identityCondition(id, nil, []string{"checkout", "orders"})
	if c.Status != metav1.ConditionTrue || c.Reason != ReasonShared || !strings.Contains(c.Message, "checkout, orders") ||
		!strings.Contains(c.Message, "cannot tell them apart") {
		t.Errorf("shared condition %+v", c)
	}
	mesh := &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: meshv1alpha1.ServiceMeshSpec{MTLS: &meshv1alpha1.MTLS{Mode: meshv1alpha1.MTLSDisabled}}}
	id = identityStatus(ms, mesh, "cluster.local")
	if id.SPIFFEID != "" || id.ServiceAccount != "cart" {
		t.Errorf("disabled identity %+v", id)
	}
	if c := identityCondition(id, mesh, nil); c.Status != metav1.ConditionFalse || c.Reason != ReasonDisabled {
		t.Errorf("disabled condition %+v", c)
	}
}
