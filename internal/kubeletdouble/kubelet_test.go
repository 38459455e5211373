package kubeletdouble_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/envoymesh/envoymesh-operator/internal/kubeletdouble"
)

const (
	wait = 15 * time.Second
	poll = 20 * time.Millisecond
)

// TestIssueWriteRefresh follows one pod: the request the double files, the volume written once
// the request is issued and a trust bundle exists, a refresh with a new key that swaps the files
// only once issued, and a trust bundle added later.
func TestIssueWriteRefresh(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	signer := newTestSigner(t)
	other := newTestSigner(t)
	trustBundle(t, "other.example.com/ca", "x", nil, other.rootPEM)

	pod := f.createPod(t, "meshed", nil)
	var first certificatesv1.PodCertificateRequest
	g.Eventually(func() []certificatesv1.PodCertificateRequest { return f.pcrs(t) }, wait, poll).Should(HaveLen(1))
	first = f.pcrs(t)[0]

	// The request as the kubelet files it, accepted by the API server.
	g.Expect(first.GenerateName).To(Equal("req-"))
	g.Expect(first.Name).To(HavePrefix("req-"))
	g.Expect(first.OwnerReferences).To(Equal([]metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}}))
	g.Expect(first.Spec.SignerName).To(Equal(signerName))
	g.Expect(first.Spec.PodName).To(Equal(pod.Name))
	g.Expect(first.Spec.PodUID).To(Equal(pod.UID))
	g.Expect(first.Spec.ServiceAccountName).To(Equal(f.sa.Name))
	g.Expect(first.Spec.ServiceAccountUID).To(Equal(f.sa.UID))
	g.Expect(string(first.Spec.NodeName)).To(Equal(f.node.Name))
	g.Expect(first.Spec.NodeUID).To(Equal(f.node.UID))
	// The projection leaves maxExpirationSeconds unset: the double copies nil, the API server defaults it.
	g.Expect(first.Spec.MaxExpirationSeconds).To(Equal(ptr.To[int32](86400)))
	firstKey := stubKey(t, &first)
	g.Expect(firstKey.Curve).To(Equal(elliptic.P256()))

	st := f.k.State(pod.UID, "envoy-identity")
	g.Expect(st.Phase).To(Equal(kubeletdouble.PhaseWaiting))
	g.Expect(st.Requests).To(Equal(1))
	g.Expect(st.CurrentPCR).To(Equal(first.Name))

	// Issued, but no trust bundle of the signer yet: like the kubelet, the volume is not written.
	issued := signer.issue(t, &first, time.Hour, 30*time.Minute)
	g.Eventually(func() kubeletdouble.State { return f.k.State(pod.UID, "envoy-identity") }, wait, poll).Should(And(
		HaveField("Phase", kubeletdouble.PhaseIssued),
		HaveField("IssuedPCR", first.Name),
		HaveField("NotAfter", BeTemporally("==", issued.Status.NotAfter.Time)),
		HaveField("BeginRefreshAt", BeTemporally("==", issued.Status.BeginRefreshAt.Time)),
		HaveField("MountError", ContainSubstring("matched zero ClusterTrustBundles")),
	))
	dir := f.k.VolumeDir(pod.UID, "envoy-identity")
	g.Expect(filepath.Join(dir, "..data")).NotTo(BeAnExistingFile())

	// The signer's trust bundle appears: the volume is written.
	trustBundle(t, signerName, "root", nil, signer.rootPEM)
	g.Eventually(func() string { return f.k.State(pod.UID, "envoy-identity").MountError }, wait, poll).Should(BeEmpty())
	g.Expect(dir).To(Equal(filepath.Join(f.dir, string(pod.UID), "volumes", "kubernetes.io~projected", "envoy-identity")))
	for _, name := range []string{"bundle.pem", "ca.pem"} {
		g.Expect(os.Readlink(filepath.Join(dir, name))).To(Equal(filepath.Join("..data", name)))
		fi, err := os.Stat(filepath.Join(dir, name))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(fi.Mode()).To(Equal(kubeletdouble.ProjectedFileAccess(pod, pod.Spec.Volumes[0].Projected).Mode))
		g.Expect(fi.Mode()).To(Equal(os.FileMode(0o644)))
	}
	oldData, err := os.Readlink(filepath.Join(dir, "..data"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(oldData).To(MatchRegexp(`^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d+$`))

	oldBundle := readFile(t, dir, "bundle.pem")
	key := checkBundle(t, oldBundle, issued, signer)
	g.Expect(key.PublicKey.Equal(firstKey)).To(BeTrue())
	g.Expect(readFile(t, dir, "ca.pem")).To(Equal(signer.rootPEM), "ca.pem has the signer's root and not the other signer's")

	// Past beginRefreshAt a new request with a new key is filed; the old files stay meanwhile.
	f.clock.SetTime(issued.Status.BeginRefreshAt.Time)
	g.Eventually(func() int {
		f.clock.Step(time.Minute) // the refresh pass runs every minute of the double's clock
		return f.k.State(pod.UID, "envoy-identity").Requests
	}, wait, poll).Should(Equal(2))
	st = f.k.State(pod.UID, "envoy-identity")
	g.Expect(st.Phase).To(Equal(kubeletdouble.PhaseIssued))
	g.Expect(st.Refreshing).To(BeTrue())
	g.Expect(st.IssuedPCR).To(Equal(first.Name))
	g.Eventually(func() []certificatesv1.PodCertificateRequest { return f.pcrs(t) }, wait, poll).Should(HaveLen(2))
	var second certificatesv1.PodCertificateRequest
	for _, p := range f.pcrs(t) {
		if p.Name != first.Name {
			second = p
		}
	}
	g.Expect(second.Name).To(Equal(st.CurrentPCR))
	g.Expect(stubKey(t, &second).Equal(firstKey)).To(BeFalse(), "a refresh uses a new key")
	g.Expect(readFile(t, dir, "bundle.pem")).To(Equal(oldBundle))

	// Issued (for longer than the fake clock has run ahead): the files are swapped at once.
	reissued := signer.issue(t, &second, 24*time.Hour, 23*time.Hour)
	g.Eventually(func() []byte { return readFile(t, dir, "bundle.pem") }, wait, poll).ShouldNot(Equal(oldBundle))
	newKey := checkBundle(t, readFile(t, dir, "bundle.pem"), reissued, signer)
	g.Expect(newKey.PublicKey.Equal(stubKey(t, &second))).To(BeTrue())
	newData, err := os.Readlink(filepath.Join(dir, "..data"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(newData).NotTo(Equal(oldData))
	g.Expect(filepath.Join(dir, oldData)).NotTo(BeADirectory(), "the old timestamped directory is removed")
	st = f.k.State(pod.UID, "envoy-identity")
	g.Expect(st).To(And(HaveField("Phase", kubeletdouble.PhaseIssued), HaveField("Refreshing", false),
		HaveField("IssuedPCR", second.Name), HaveField("Requests", 2)))

	// A second bundle of the signer (one root repeated): ca.pem holds both roots, once each.
	newRoot := newTestSigner(t)
	trustBundle(t, signerName, "next", map[string]string{"rotation": "next"}, newRoot.rootPEM, signer.rootPEM)
	g.Eventually(func() int { return countCerts(readFile(t, dir, "ca.pem")) }, wait, poll).Should(Equal(2))
	ca := readFile(t, dir, "ca.pem")
	g.Expect(bytes.Contains(ca, signer.rootPEM) && bytes.Contains(ca, newRoot.rootPEM)).To(BeTrue())
	g.Expect(bytes.Contains(ca, other.rootPEM)).To(BeFalse())
}

// TestDeniedIsTerminal: a denied request ends the projection, records the condition, posts the
// kubelet's Warning Event and files no further request, however late the clock.
func TestDeniedIsTerminal(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	signer := newTestSigner(t)
	trustBundle(t, signerName, "denied", nil, signer.rootPEM)
	pod := f.createPod(t, "denied", func(p *corev1.Pod) {
		pc := p.Spec.Volumes[0].Projected.Sources[0].PodCertificate
		pc.MaxExpirationSeconds = ptr.To[int32](7200)
		pc.UserAnnotations = map[string]string{"mesh.envoymesh.io/service": "a"}
	})
	g.Eventually(func() []certificatesv1.PodCertificateRequest { return f.pcrs(t) }, wait, poll).Should(HaveLen(1))
	pcr := f.pcrs(t)[0]
	g.Expect(pcr.Spec.MaxExpirationSeconds).To(Equal(ptr.To[int32](7200)))
	g.Expect(pcr.Spec.UnverifiedUserAnnotations).To(Equal(map[string]string{"mesh.envoymesh.io/service": "a"}))

	signer.deny(t, &pcr, "NotMeshed", "the pod is in no mesh")
	g.Eventually(func() kubeletdouble.State { return f.k.State(pod.UID, "envoy-identity") }, wait, poll).Should(And(
		HaveField("Phase", kubeletdouble.PhaseDenied),
		HaveField("Reason", "NotMeshed"),
		HaveField("Message", "the pod is in no mesh"),
		HaveField("MountError", ContainSubstring("permanently denied")),
	))

	// The kubelet's call is Eventf(pod, Warning, "Denied", <condition reason>, <sentence>): the
	// reason is the format, so the sentence lands in a %!(EXTRA ...) suffix.
	sentence := fmt.Sprintf("PodCertificateRequest %s/%s was denied, reason=%q, message=%q", f.ns, pcr.Name, "NotMeshed", "the pod is in no mesh")
	g.Eventually(func() []corev1.Event {
		l, err := f.cs.CoreV1().Events(f.ns).List(context.Background(), metav1.ListOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		return l.Items
	}, wait, poll).Should(ContainElement(And(
		HaveField("InvolvedObject.UID", pod.UID),
		HaveField("Type", corev1.EventTypeWarning),
		HaveField("Reason", "Denied"),
		HaveField("Message", "NotMeshed%!(EXTRA string="+sentence+")"),
		HaveField("Source.Component", "kubelet"),
		HaveField("Source.Host", f.node.Name),
	)))

	for range 5 {
		f.clock.Step(2 * time.Hour)
	}
	g.Consistently(func() int { return len(f.pcrs(t)) }, time.Second, 100*time.Millisecond).Should(Equal(1))
	g.Expect(f.k.State(pod.UID, "envoy-identity").Requests).To(Equal(1))
	g.Expect(filepath.Join(f.k.VolumeDir(pod.UID, "envoy-identity"), "..data")).NotTo(BeAnExistingFile())
}

// TestFsGroupModes: with fsGroup the files are 0600 then, by SetVolumeOwnership, 0640, as
// ProjectedFileAccess says; keyPath and certificateChainPath get the key and the chain.
func TestFsGroupModes(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t)
	signer := newTestSigner(t)
	trustBundle(t, signerName, "fsgroup", nil, signer.rootPEM)
	pod := f.createPod(t, "fsgroup", func(p *corev1.Pod) {
		p.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: ptr.To[int64](2000)}
		p.Spec.Volumes[0].Projected.DefaultMode = ptr.To[int32](0o400)
		pc := p.Spec.Volumes[0].Projected.Sources[0].PodCertificate
		pc.KeyPath, pc.CertificateChainPath = "tls.key", "tls.crt"
	})
	g.Eventually(func() []certificatesv1.PodCertificateRequest { return f.pcrs(t) }, wait, poll).Should(HaveLen(1))
	pcr := f.pcrs(t)[0]
	issued := signer.issue(t, &pcr, time.Hour, 30*time.Minute)

	dir := f.k.VolumeDir(pod.UID, "envoy-identity")
	g.Eventually(filepath.Join(dir, "tls.crt"), wait, poll).Should(BeAnExistingFile())
	want := kubeletdouble.ProjectedFileAccess(pod, pod.Spec.Volumes[0].Projected)
	g.Expect(want).To(Equal(kubeletdouble.FileAccess{Mode: 0o640, GID: 2000}))
	for _, name := range []string{"bundle.pem", "ca.pem", "tls.key", "tls.crt"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(fi.Mode()).To(Equal(want.Mode), name)
	}
	data, err := os.Readlink(filepath.Join(dir, "..data"))
	g.Expect(err).NotTo(HaveOccurred())
	fi, err := os.Stat(filepath.Join(dir, data))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fi.Mode()).To(Equal(os.ModeDir|os.ModeSetgid|0o755), "SetVolumeOwnership's directory mode")
	g.Expect(append(readFile(t, dir, "tls.key"), readFile(t, dir, "tls.crt")...)).To(Equal(readFile(t, dir, "bundle.pem")))
	checkBundle(t, readFile(t, dir, "bundle.pem"), issued, signer)

	// The pod goes: its directory goes with it.
	g.Expect(f.cs.CoreV1().Pods(f.ns).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})).To(Succeed())
	g.Eventually(filepath.Join(f.dir, string(pod.UID)), wait, poll).ShouldNot(BeADirectory())
}

// checkBundle parses a credential bundle: a PKCS#8 PRIVATE KEY block, then exactly the issued
// chain as bare CERTIFICATE blocks; the key is the leaf's and the chain verifies to the root.
func checkBundle(t *testing.T, bundle []byte, pcr *certificatesv1.PodCertificateRequest, s *testSigner) *ecdsa.PrivateKey {
	t.Helper()
	g := NewWithT(t)
	block, rest := pem.Decode(bundle)
	g.Expect(block).NotTo(BeNil())
	g.Expect(block.Type).To(Equal("PRIVATE KEY"))
	g.Expect(block.Headers).To(BeEmpty())
	anyKey, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	g.Expect(err).NotTo(HaveOccurred())
	key, ok := anyKey.(*ecdsa.PrivateKey)
	g.Expect(ok).To(BeTrue(), "ECDSAP256 gives an ECDSA key")
	g.Expect(key.Curve).To(Equal(elliptic.P256()))

	leafBlock, _ := pem.Decode([]byte(pcr.Status.CertificateChain))
	g.Expect(string(rest)).To(Equal(string(pem.EncodeToMemory(leafBlock))+string(s.interPEM)), "the chain without the text between blocks")
	leaf, err := x509.ParseCertificate(leafBlock.Bytes)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(key.PublicKey.Equal(leaf.PublicKey)).To(BeTrue(), "the key matches the leaf")

	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	g.Expect(roots.AppendCertsFromPEM(s.rootPEM)).To(BeTrue())
	inters.AddCert(s.inter)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	g.Expect(err).NotTo(HaveOccurred())
	return key
}

func stubKey(t *testing.T, pcr *certificatesv1.PodCertificateRequest) *ecdsa.PublicKey {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(pcr.Spec.StubPKCS10Request)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("stub request key is %T", csr.PublicKey)
	}
	return pub
}

func readFile(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return b
}

func countCerts(b []byte) int {
	return strings.Count(string(b), "-----BEGIN CERTIFICATE-----")
}
