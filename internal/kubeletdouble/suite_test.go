package kubeletdouble_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/envoymesh/envoymesh-operator/internal/kubeletdouble"
)

// The envtest tests run the double against a real kube-apiserver (PodCertificateRequest and
// ClusterTrustBundle are GA and on in v1.37) with a test-only signer standing in for the
// operator. envtest starts on the first test that needs it.

const signerName = "mesh.envoymesh.io/identity"

var (
	envOnce sync.Once
	testEnv *envtest.Environment
	envCS   kubernetes.Interface
	envErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if testEnv != nil {
		if err := testEnv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	os.Exit(code)
}

func apiServer(t *testing.T) kubernetes.Interface {
	t.Helper()
	envOnce.Do(func() {
		testEnv = &envtest.Environment{}
		cfg, err := testEnv.Start()
		if err != nil {
			envErr = err
			return
		}
		envCS, envErr = kubernetes.NewForConfig(cfg)
	})
	if envErr != nil {
		t.Fatalf("envtest: %v (is KUBEBUILDER_ASSETS set?)", envErr)
	}
	return envCS
}

// fixture is one test's node, namespace, ServiceAccount and running double.
type fixture struct {
	cs    kubernetes.Interface
	ns    string
	node  *corev1.Node
	sa    *corev1.ServiceAccount
	clock *clocktesting.FakeClock
	k     *kubeletdouble.Kubelet
	dir   string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	cs := apiServer(t)
	ctx := context.Background()
	suffix := utilrand.String(6)
	f := &fixture{cs: cs, ns: "kd-" + suffix, clock: clocktesting.NewFakeClock(time.Now()), dir: t.TempDir()}

	var err error
	if _, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if f.node, err = cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-" + suffix}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if f.sa, err = cs.CoreV1().ServiceAccounts(f.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "workload"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), f.ns, metav1.DeleteOptions{})
		_ = cs.CoreV1().Nodes().Delete(context.Background(), f.node.Name, metav1.DeleteOptions{})
	})

	f.k = kubeletdouble.New(kubeletdouble.Options{
		Client: cs, NodeName: f.node.Name, NodeUID: f.node.UID, Dir: f.dir,
		Clock: f.clock, Logger: testr.New(t),
	})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.k.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return f
}

// identityVolume is the volume the operator puts on meshed pods.
func identityVolume() corev1.Volume {
	return corev1.Volume{Name: "envoy-identity", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{
			{PodCertificate: &corev1.PodCertificateProjection{SignerName: signerName, KeyType: "ECDSAP256", CredentialBundlePath: "bundle.pem"}},
			{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{SignerName: ptr.To(signerName), LabelSelector: &metav1.LabelSelector{}, Path: "ca.pem"}},
		},
	}}}
}

// createPod binds a pod with the volume to the fixture's node directly: there is no scheduler.
func (f *fixture) createPod(t *testing.T, name string, mutate func(*corev1.Pod)) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
		Spec: corev1.PodSpec{
			NodeName:           f.node.Name,
			ServiceAccountName: f.sa.Name,
			Containers:         []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
			Volumes:            []corev1.Volume{identityVolume()},
		},
	}
	if mutate != nil {
		mutate(pod)
	}
	pod, err := f.cs.CoreV1().Pods(f.ns).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

func (f *fixture) pcrs(t *testing.T) []certificatesv1.PodCertificateRequest {
	t.Helper()
	l, err := f.cs.CertificatesV1().PodCertificateRequests(f.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// testSigner is a two-level ECDSA CA that issues or denies PCRs on /status the way the API
// server's validation wants: notBefore now (whole seconds), lifetime within maxExpirationSeconds,
// beginRefreshAt at least 10 minutes from either end.
type testSigner struct {
	rootPEM  []byte
	inter    *x509.Certificate
	interKey *ecdsa.PrivateKey
	interPEM []byte
}

func newTestSigner(t *testing.T) *testSigner {
	t.Helper()
	rootKey := newKey(t)
	root := selfSign(t, rootKey, "test root")
	interKey := newKey(t)
	inter := sign(t, &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: "test intermediate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, &interKey.PublicKey, root, rootKey)
	return &testSigner{rootPEM: pemCert(root), inter: inter, interKey: interKey, interPEM: pemCert(inter)}
}

// issue signs the PCR's stub request's key with the given lifetime and refresh offset. The chain
// carries text between its blocks, which the kubelet drops.
func (s *testSigner) issue(t *testing.T, pcr *certificatesv1.PodCertificateRequest, lifetime, refreshAfter time.Duration) *certificatesv1.PodCertificateRequest {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(pcr.Spec.StubPKCS10Request)
	if err != nil {
		t.Fatal(err)
	}
	notBefore := time.Now().Truncate(time.Second)
	leaf := sign(t, &x509.Certificate{
		SerialNumber: serial(t), NotBefore: notBefore, NotAfter: notBefore.Add(lifetime),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}, csr.PublicKey, s.inter, s.interKey)
	pcr = pcr.DeepCopy()
	pcr.Status = certificatesv1.PodCertificateRequestStatus{
		Conditions: []metav1.Condition{{
			Type: certificatesv1.PodCertificateRequestConditionTypeIssued, Status: metav1.ConditionTrue,
			Reason: "Issued", Message: "issued by the test signer", LastTransitionTime: metav1.Now(),
		}},
		CertificateChain: string(pemCert(leaf)) + "intermediate:\n" + string(s.interPEM),
		NotBefore:        ptr.To(metav1.NewTime(notBefore)),
		BeginRefreshAt:   ptr.To(metav1.NewTime(notBefore.Add(refreshAfter))),
		NotAfter:         ptr.To(metav1.NewTime(notBefore.Add(lifetime))),
	}
	return s.updateStatus(t, pcr)
}

func (s *testSigner) deny(t *testing.T, pcr *certificatesv1.PodCertificateRequest, reason, message string) {
	t.Helper()
	pcr = pcr.DeepCopy()
	pcr.Status.Conditions = []metav1.Condition{{
		Type: certificatesv1.PodCertificateRequestConditionTypeDenied, Status: metav1.ConditionTrue,
		Reason: reason, Message: message, LastTransitionTime: metav1.Now(),
	}}
	s.updateStatus(t, pcr)
}

func (s *testSigner) updateStatus(t *testing.T, pcr *certificatesv1.PodCertificateRequest) *certificatesv1.PodCertificateRequest {
	t.Helper()
	out, err := envCS.CertificatesV1().PodCertificateRequests(pcr.Namespace).UpdateStatus(context.Background(), pcr, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("UpdateStatus %s: %v", pcr.Name, err)
	}
	return out
}

// trustBundle publishes a root for a signer; the name must start with the signer's name, "/" as ":".
func trustBundle(t *testing.T, signer, suffix string, labels map[string]string, pems ...[]byte) *certificatesv1.ClusterTrustBundle {
	t.Helper()
	ctb := &certificatesv1.ClusterTrustBundle{
		ObjectMeta: metav1.ObjectMeta{Name: strings.ReplaceAll(signer, "/", ":") + ":" + suffix, Labels: labels},
		Spec:       certificatesv1.ClusterTrustBundleSpec{SignerName: signer, TrustBundle: string(joinPEM(pems...))},
	}
	out, err := envCS.CertificatesV1().ClusterTrustBundles().Create(context.Background(), ctb, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = envCS.CertificatesV1().ClusterTrustBundles().Delete(context.Background(), out.Name, metav1.DeleteOptions{})
	})
	return out
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func selfSign(t *testing.T, key *ecdsa.PrivateKey, cn string) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(72 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	return sign(t, tmpl, &key.PublicKey, tmpl, key)
}

func sign(t *testing.T, tmpl *x509.Certificate, pub any, parent *x509.Certificate, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func joinPEM(pems ...[]byte) []byte {
	var out []byte
	for _, p := range pems {
		out = append(out, p...)
	}
	return out
}
