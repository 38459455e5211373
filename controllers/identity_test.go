package controllers

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/kubeletdouble"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// There is no kubelet in envtest: kubeletdouble plays the Pod Certificate half
// of one, for one node per spec, filing and refreshing requests exactly as the
// kubelet does and writing the files the sidecar would read.
var _ = Describe("Workload identity: the operator signs Pod Certificates", func() {
	var (
		ns      string
		node    *corev1.Node
		kubelet *kubeletdouble.Kubelet
		clock   *clocktesting.FakeClock
	)

	BeforeEach(func() {
		ns = newNamespace()
		SetDefaultEventuallyTimeout(20 * time.Second)
		SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
		node = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-" + ns}}
		Expect(k8sClient.Create(ctx, node)).To(Succeed())
		DeferCleanup(func() { Expect(k8sClient.Delete(ctx, node)).To(Succeed()) })

		clock = clocktesting.NewFakeClock(time.Now())
		kubelet = kubeletdouble.New(kubeletdouble.Options{
			Client: kubernetes.NewForConfigOrDie(cfg), NodeName: node.Name, NodeUID: node.UID,
			Dir: GinkgoT().TempDir(), Clock: clock, Logger: GinkgoLogr,
		})
		kctx, stop := context.WithCancel(ctx)
		DeferCleanup(stop)
		go func() {
			defer GinkgoRecover()
			Expect(kubelet.Run(kctx)).To(Succeed())
		}()
	})

	// runPod creates a pod as the Deployment controller and the scheduler would:
	// from the template the operator wrote, on this spec's node.
	runPod := func(deployment, name string, mutate ...func(*corev1.Pod)) *corev1.Pod {
		GinkgoHelper()
		dep := &appsv1.Deployment{}
		Eventually(get(dep, ns, deployment)).Should(Not(BeNil()))
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: dep.Spec.Template.Labels},
			Spec:       *dep.Spec.Template.Spec.DeepCopy(),
		}
		pod.Spec.NodeName = node.Name
		for _, m := range mutate {
			m(pod)
		}
		Expect(k8sClient.Create(ctx, pod)).To(Succeed())
		return pod
	}
	stateOf := func(pod *corev1.Pod) func() kubeletdouble.State {
		return func() kubeletdouble.State { return kubelet.State(pod.UID, objects.IdentityVolumeName) }
	}
	phaseOf := func(pod *corev1.Pod) func() kubeletdouble.Phase {
		return func() kubeletdouble.Phase { return stateOf(pod)().Phase }
	}

	It("gives every member pod a certificate naming only its SPIFFE ID, chaining to the trust bundle, and a new one on refresh", func() {
		Expect(k8sClient.Create(ctx, meshService(ns, "cart", 8080, 15006))).To(Succeed())
		spiffeID := "spiffe://cluster.local/ns/" + ns + "/sa/cart"
		Eventually(func() *meshv1alpha1.IdentityStatus { return getMeshService(ns, "cart").Status.Identity }).
			Should(Equal(&meshv1alpha1.IdentityStatus{ServiceAccount: "cart", SPIFFEID: spiffeID}))
		Expect(conditionOf(ns, "cart", meshv1alpha1.ConditionIdentity)()).To(Equal("True/Assigned"))

		sa := &corev1.ServiceAccount{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "cart"}, sa)).To(Succeed())
		Expect(metav1.IsControlledBy(sa, getMeshService(ns, "cart"))).To(BeTrue())
		Expect(sa.AutomountServiceAccountToken).To(Equal(ptr.To(false)))

		pods := []*corev1.Pod{runPod("cart", "cart-1"), runPod("cart", "cart-2")}
		for _, pod := range pods {
			Eventually(phaseOf(pod)).Should(Equal(kubeletdouble.PhaseIssued))
			leaf, key := credentials(kubelet, pod)
			expectIdentity(leaf, key, spiffeID, trustAnchorsFile(kubelet, pod))
		}

		By("refreshing at beginRefreshAt: a new request with a new key, and a new certificate")
		pod := pods[0]
		first, firstKey := credentials(kubelet, pod)
		clock.SetTime(stateOf(pod)().BeginRefreshAt.Add(time.Second))
		Eventually(func() int { return stateOf(pod)().Requests }).Should(Equal(2))
		Eventually(func() bool { s := stateOf(pod)(); return s.Phase == kubeletdouble.PhaseIssued && !s.Refreshing }).Should(BeTrue())
		second, secondKey := credentials(kubelet, pod)
		Expect(second.SerialNumber).NotTo(Equal(first.SerialNumber))
		Expect(secondKey.(*ecdsa.PublicKey).Equal(firstKey)).To(BeFalse(), "the refresh reused the key")
		expectIdentity(second, secondKey, spiffeID, trustAnchorsFile(kubelet, pod))
	})

	It("gives the gateway the identity of its own ServiceAccount", func() {
		mesh := &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge"},
			Spec: meshv1alpha1.ServiceMeshSpec{Gateway: &meshv1alpha1.Gateway{Enabled: true}}}
		Expect(k8sClient.Create(ctx, mesh)).To(Succeed())
		pod := runPod("edge-gateway", "edge-gateway-1")
		Eventually(phaseOf(pod)).Should(Equal(kubeletdouble.PhaseIssued))
		leaf, key := credentials(kubelet, pod)
		expectIdentity(leaf, key, "spiffe://cluster.local/ns/"+ns+"/sa/edge-gateway", trustAnchorsFile(kubelet, pod))
	})

	It("denies, naming the reason, a pod that is no member, one that claims a member's label but runs as another ServiceAccount, and an unsupported key type", func() {
		Expect(k8sClient.Create(ctx, meshService(ns, "cart", 8080, 15006))).To(Succeed())
		Expect(k8sClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "intruder"}})).To(Succeed())

		stranger := runPod("cart", "stranger", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "stranger"} })
		impostor := runPod("cart", "impostor", func(p *corev1.Pod) { p.Spec.ServiceAccountName = "intruder" })
		rsaPod := runPod("cart", "rsa", func(p *corev1.Pod) {
			for _, v := range p.Spec.Volumes {
				if v.Name == objects.IdentityVolumeName {
					v.Projected.Sources[0].PodCertificate.KeyType = "RSA3072"
				}
			}
		})
		for pod, reason := range map[*corev1.Pod]string{stranger: DenyNotAMember, impostor: DenyNotAMember, rsaPod: DenyUnsupportedKeyType} {
			Eventually(phaseOf(pod)).Should(Equal(kubeletdouble.PhaseDenied), pod.Name)
			Expect(stateOf(pod)().Reason).To(Equal(reason), pod.Name)
			Expect(stateOf(pod)().Requests).To(Equal(1), "%s: a denial is final, the kubelet does not ask again", pod.Name)
			_, err := os.Stat(filepath.Join(kubelet.VolumeDir(pod.UID, objects.IdentityVolumeName), "bundle.pem"))
			Expect(os.IsNotExist(err)).To(BeTrue(), "%s got credentials", pod.Name)
		}
		Expect(stateOf(impostor)().Message).To(ContainSubstring(`runs as ServiceAccount "intruder", but MeshService cart runs as "cart"`))
	})

	It("denies a request whose pod UID, node or ServiceAccount does not match the live pod", func() {
		Expect(k8sClient.Create(ctx, meshService(ns, "cart", 8080, 15006))).To(Succeed())
		// A pod of a node that files nothing, so only the requests below exist.
		pod := runPod("cart", "cart-1", func(p *corev1.Pod) { p.Spec.NodeName = "quiet-" + node.Name })
		sa := &corev1.ServiceAccount{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "cart"}, sa)).To(Succeed())

		for reason, forge := range map[string]func(*certificatesv1.PodCertificateRequestSpec){
			DenyPodUIDMismatch: func(s *certificatesv1.PodCertificateRequestSpec) { s.PodUID = "0f1e2d3c-0000-0000-0000-000000000000" },
			DenyNodeMismatch:   func(s *certificatesv1.PodCertificateRequestSpec) { s.NodeName = types.NodeName(node.Name) },
			DenyServiceAccount: func(s *certificatesv1.PodCertificateRequestSpec) { s.ServiceAccountUID = "not-the-uid" },
		} {
			req := kubeletRequest(pod, sa, "quiet-"+node.Name, forge)
			Expect(k8sClient.Create(ctx, req)).To(Succeed())
			Eventually(func() string { return pcrVerdict(req) }).Should(Equal("Denied/"+reason), reason)
		}

		By("issuing the unforged request of the same pod")
		req := kubeletRequest(pod, sa, "quiet-"+node.Name, nil)
		Expect(k8sClient.Create(ctx, req)).To(Succeed())
		Eventually(func() string { return pcrVerdict(req) }).Should(Equal("Issued/Issued"))
	})

	It("gives a mesh with mTLS Disabled no volume and no certificates", func() {
		mesh := &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
			Spec: meshv1alpha1.ServiceMeshSpec{MTLS: &meshv1alpha1.MTLS{Mode: meshv1alpha1.MTLSDisabled}}}
		Expect(k8sClient.Create(ctx, mesh)).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(ns, "cart", 8080, 15006))).To(Succeed())
		Eventually(conditionOf(ns, "cart", meshv1alpha1.ConditionIdentity)).Should(Equal("False/Disabled"))
		Expect(getMeshService(ns, "cart").Status.Identity).To(Equal(&meshv1alpha1.IdentityStatus{ServiceAccount: "cart"}))
		dep := &appsv1.Deployment{}
		Eventually(get(dep, ns, "cart")).Should(Not(BeNil()))
		for _, v := range dep.Spec.Template.Spec.Volumes {
			Expect(v.Name).NotTo(Equal(objects.IdentityVolumeName))
		}

		By("denying a pod that asks anyway")
		withIdentity := objects.Deployment(meshService(ns, "cart", 8080, 15006), objects.DefaultSidecar(testEnvoyImage), "h", true)
		pod := runPod("cart", "cart-1", func(p *corev1.Pod) {
			for _, v := range withIdentity.Spec.Template.Spec.Volumes {
				if v.Name == objects.IdentityVolumeName {
					p.Spec.Volumes = append(p.Spec.Volumes, v)
				}
			}
		})
		Eventually(phaseOf(pod)).Should(Equal(kubeletdouble.PhaseDenied))
		Expect(stateOf(pod)().Reason).To(Equal(DenyMTLSDisabled))
	})

	It("says when MeshServices share a ServiceAccount, and stops saying it when they no longer do", func() {
		for _, name := range []string{"cart", "orders"} {
			ms := meshService(ns, name, 8080, 15006)
			ms.Spec.Template.Spec.ServiceAccountName = "shop"
			Expect(k8sClient.Create(ctx, ms)).To(Succeed())
		}
		Eventually(conditionOf(ns, "cart", meshv1alpha1.ConditionIdentity)).Should(Equal("True/Shared"))
		Eventually(conditionOf(ns, "orders", meshv1alpha1.ConditionIdentity)).Should(Equal("True/Shared"))
		Expect(condition(getMeshService(ns, "cart"), meshv1alpha1.ConditionIdentity).Message).To(ContainSubstring("shared with MeshService orders"))
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "cart"}, &corev1.ServiceAccount{})).NotTo(Succeed(),
			"a ServiceAccount the template names is the user's: none is created")

		update(getMeshService(ns, "orders"), func(ms *meshv1alpha1.MeshService) { ms.Spec.Template.Spec.ServiceAccountName = "" })
		Eventually(conditionOf(ns, "cart", meshv1alpha1.ConditionIdentity)).Should(Equal("True/Assigned"))
		Eventually(conditionOf(ns, "orders", meshv1alpha1.ConditionIdentity)).Should(Equal("True/Assigned"))
	})

	It("signs with the CA of the existing Secret, and on a CA change publishes the new bundle beside the old", func() {
		Expect(k8sClient.Create(ctx, meshService(ns, "cart", 8080, 15006))).To(Succeed())
		secret := &corev1.Secret{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: managerNamespace, Name: DefaultCASecretName}, secret)).To(Succeed())
		current, err := identity.ParseCA(secret.Data)
		Expect(err).NotTo(HaveOccurred())
		Expect(current.ID()).To(Equal(suiteCA.ID()), "the manager replaced the CA the Secret held before it started")
		pod := runPod("cart", "cart-1")
		Eventually(phaseOf(pod)).Should(Equal(kubeletdouble.PhaseIssued))
		leaf, _ := credentials(kubelet, pod)
		Expect(leaf.CheckSignatureFrom(current.Cert)).To(Succeed(), "not signed by the Secret's CA")

		By("replacing the CA in the Secret")
		next, err := identity.GenerateCA("cluster.local", time.Now())
		Expect(err).NotTo(HaveOccurred())
		data, err := next.SecretData()
		Expect(err).NotTo(HaveOccurred())
		update(secret, func(s *corev1.Secret) { s.Data = data })

		Eventually(get(&certificatesv1.ClusterTrustBundle{}, "", next.BundleName())).Should(Not(BeNil()))
		old := &certificatesv1.ClusterTrustBundle{}
		Eventually(func() string {
			Expect(k8sClient.Get(ctx, types.NamespacedName{Name: current.BundleName()}, old)).To(Succeed(), "the old bundle must stay")
			return old.Annotations[identity.RetireAfterAnnotation]
		}).ShouldNot(BeEmpty())
		retire, err := time.Parse(time.RFC3339, old.Annotations[identity.RetireAfterAnnotation])
		Expect(err).NotTo(HaveOccurred())
		Expect(retire).To(BeTemporally(">", time.Now().Add(identity.MaxLeafLifetime)), "retired before the last leaf of the old CA expires")

		By("the pods' trust bundle holds both CAs, and new leaves come from the new CA once its bundle had time to propagate")
		Eventually(func() []string { return caIDs(trustAnchorsFile(kubelet, pod)) }).Should(ConsistOf(current.ID(), next.ID()))
		time.Sleep(bundlePropagation)
		fresh := runPod("cart", "cart-2")
		Eventually(phaseOf(fresh)).Should(Equal(kubeletdouble.PhaseIssued))
		leaf, key := credentials(kubelet, fresh)
		Expect(leaf.CheckSignatureFrom(next.Cert)).To(Succeed(), "not signed by the new CA")
		expectIdentity(leaf, key, "spiffe://cluster.local/ns/"+ns+"/sa/cart", trustAnchorsFile(kubelet, fresh))
	})
})

// credentials reads the pod's credential bundle as the sidecar would: the PKCS#8
// key, then the chain.
func credentials(k *kubeletdouble.Kubelet, pod *corev1.Pod) (*x509.Certificate, crypto.PublicKey) {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(k.VolumeDir(pod.UID, objects.IdentityVolumeName), "bundle.pem"))
	Expect(err).NotTo(HaveOccurred())
	keyBlock, rest := pem.Decode(data)
	Expect(keyBlock).NotTo(BeNil())
	Expect(keyBlock.Type).To(Equal("PRIVATE KEY"))
	key, err := x509.ParsePKCS8PrivateKey(keyBlock.Bytes)
	Expect(err).NotTo(HaveOccurred())
	certBlock, _ := pem.Decode(rest)
	Expect(certBlock).NotTo(BeNil())
	leaf, err := x509.ParseCertificate(certBlock.Bytes)
	Expect(err).NotTo(HaveOccurred())
	return leaf, key.(crypto.Signer).Public()
}

func trustAnchorsFile(k *kubeletdouble.Kubelet, pod *corev1.Pod) []byte {
	GinkgoHelper()
	data, err := os.ReadFile(filepath.Join(k.VolumeDir(pod.UID, objects.IdentityVolumeName), "ca.pem"))
	Expect(err).NotTo(HaveOccurred())
	return data
}

// expectIdentity checks a leaf as a peer would: it chains to the anchors the
// kubelet wrote from the ClusterTrustBundles, for client and server use, is
// issued to the pod's key, and names nothing but spiffeID.
func expectIdentity(leaf *x509.Certificate, key crypto.PublicKey, spiffeID string, anchors []byte) {
	GinkgoHelper()
	roots := x509.NewCertPool()
	Expect(roots.AppendCertsFromPEM(anchors)).To(BeTrue())
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}})
	Expect(err).NotTo(HaveOccurred())
	Expect(leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key)).To(BeTrue(), "not issued to the pod's key")
	Expect(leaf.URIs).To(HaveLen(1))
	Expect(leaf.URIs[0].String()).To(Equal(spiffeID))
	Expect(leaf.DNSNames).To(BeEmpty())
	Expect(leaf.IPAddresses).To(BeEmpty())
	Expect(leaf.EmailAddresses).To(BeEmpty())
	Expect(leaf.Subject.String()).To(BeEmpty())
	Expect(leaf.IsCA).To(BeFalse())
	Expect(leaf.NotAfter.Sub(leaf.NotBefore)).To(BeNumerically("<=", identity.MaxLeafLifetime))
}

// caIDs are the IDs (identity.CA.ID) of the certificates in a PEM bundle.
func caIDs(anchors []byte) []string {
	var ids []string
	for block, rest := pem.Decode(anchors); block != nil; block, rest = pem.Decode(rest) {
		cert, err := x509.ParseCertificate(block.Bytes)
		Expect(err).NotTo(HaveOccurred())
		ids = append(ids, (&identity.CA{Cert: cert}).ID())
	}
	return ids
}

// kubeletRequest is the request the kubelet on node would file for pod (fresh
// P-256 key, stub CSR, generateName req-, owned by the pod), forged by forge.
func kubeletRequest(pod *corev1.Pod, sa *corev1.ServiceAccount, node string, forge func(*certificatesv1.PodCertificateRequestSpec)) *certificatesv1.PodCertificateRequest {
	GinkgoHelper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	Expect(err).NotTo(HaveOccurred())
	req := &certificatesv1.PodCertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, GenerateName: "req-", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID, Controller: ptr.To(false),
		}}},
		Spec: certificatesv1.PodCertificateRequestSpec{
			SignerName: identity.SignerName, PodName: pod.Name, PodUID: pod.UID,
			ServiceAccountName: sa.Name, ServiceAccountUID: sa.UID,
			NodeName: types.NodeName(node), NodeUID: "node-uid", MaxExpirationSeconds: ptr.To[int32](86400),
			StubPKCS10Request: csr,
		},
	}
	if forge != nil {
		forge(&req.Spec)
	}
	return req
}

// pcrVerdict is "<condition>/<reason>" of a concluded request, "" while pending.
func pcrVerdict(req *certificatesv1.PodCertificateRequest) string {
	got := &certificatesv1.PodCertificateRequest{}
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(req), got); err != nil {
		return err.Error()
	}
	for _, t := range []string{"Issued", "Denied", "Failed"} {
		if c := meta.FindStatusCondition(got.Status.Conditions, t); c != nil {
			return t + "/" + c.Reason
		}
	}
	return ""
}
