//go:build e2e

package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// The kubelet double (bin/kubeletdouble) plays the kwok node's kubelet for Pod
// Certificates: it files the requests and writes each pod's identity volume
// under the state dir, where these specs read it as the sidecar would.
var _ = Describe("workload identity on a local cluster", Ordered, func() {
	const identityNS = "e2e-identity"
	ctx := context.Background()

	restrictedApp := corev1.Container{Name: "app", Image: "example.com/app:1", SecurityContext: &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false), RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1000),
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}}
	meshService := func(name, mesh string, replicas int32) *meshv1alpha1.MeshService {
		return &meshv1alpha1.MeshService{
			ObjectMeta: metav1.ObjectMeta{Namespace: identityNS, Name: name},
			Spec: meshv1alpha1.MeshServiceSpec{
				Mesh: mesh, Replicas: ptr.To(replicas), Port: 8080, ServicePort: 15006,
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{restrictedApp}}},
			},
		}
	}
	volumeFile := func(pod *corev1.Pod, file string) ([]byte, error) {
		return os.ReadFile(filepath.Join(stateDir, "kubelet", string(pod.UID), "volumes", "kubernetes.io~projected", "envoy-identity", file))
	}
	podsOf := func(g Gomega, service string) []corev1.Pod {
		pods := &corev1.PodList{}
		g.Expect(k8sClient.List(ctx, pods, client.InNamespace(identityNS), client.MatchingLabels{"mesh.envoymesh.io/service": service})).To(Succeed())
		return pods.Items
	}
	requestsFor := func(g Gomega, pod string) []certificatesv1.PodCertificateRequest {
		list := &certificatesv1.PodCertificateRequestList{}
		g.Expect(k8sClient.List(ctx, list, client.InNamespace(identityNS))).To(Succeed())
		var out []certificatesv1.PodCertificateRequest
		for _, r := range list.Items {
			if r.Spec.PodName == pod {
				out = append(out, r)
			}
		}
		return out
	}

	BeforeAll(func() {
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: identityNS, Labels: map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
		}}})).To(Succeed())
	})

	It("gives every member pod a certificate naming only its SPIFFE ID that chains to the ClusterTrustBundle", func() {
		Expect(k8sClient.Create(ctx, meshService("cart", "default", 2))).To(Succeed())
		spiffeID := "spiffe://cluster.local/ns/" + identityNS + "/sa/cart"
		Eventually(func(g Gomega) {
			ms := &meshv1alpha1.MeshService{}
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: identityNS, Name: "cart"}, ms)).To(Succeed())
			g.Expect(ms.Status.Identity).To(Equal(&meshv1alpha1.IdentityStatus{ServiceAccount: "cart", SPIFFEID: spiffeID}))
			g.Expect(meta.IsStatusConditionTrue(ms.Status.Conditions, meshv1alpha1.ConditionIdentity)).To(BeTrue())

			bundles := &certificatesv1.ClusterTrustBundleList{}
			g.Expect(k8sClient.List(ctx, bundles)).To(Succeed())
			roots := x509.NewCertPool()
			for _, b := range bundles.Items {
				if b.Spec.SignerName == "mesh.envoymesh.io/identity" {
					g.Expect(roots.AppendCertsFromPEM([]byte(b.Spec.TrustBundle))).To(BeTrue())
				}
			}
			pods := podsOf(g, "cart")
			g.Expect(pods).To(HaveLen(2))
			for i := range pods {
				g.Expect(pods[i].Spec.ServiceAccountName).To(Equal("cart"))
				data, err := volumeFile(&pods[i], "bundle.pem")
				g.Expect(err).NotTo(HaveOccurred(), "pod %s has no credential bundle yet", pods[i].Name)
				keyBlock, rest := pem.Decode(data)
				g.Expect(keyBlock.Type).To(Equal("PRIVATE KEY"))
				certBlock, _ := pem.Decode(rest)
				g.Expect(certBlock).NotTo(BeNil())
				leaf, err := x509.ParseCertificate(certBlock.Bytes)
				g.Expect(err).NotTo(HaveOccurred())
				_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}})
				g.Expect(err).NotTo(HaveOccurred(), "pod %s: the leaf does not chain to the signer's ClusterTrustBundles", pods[i].Name)
				g.Expect(leaf.URIs).To(HaveLen(1))
				g.Expect(leaf.URIs[0].String()).To(Equal(spiffeID))
				g.Expect(leaf.DNSNames).To(BeEmpty())
				g.Expect(leaf.IPAddresses).To(BeEmpty())
				ca, err := volumeFile(&pods[i], "ca.pem")
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(x509.NewCertPool().AppendCertsFromPEM(ca)).To(BeTrue())
			}
		}).WithTimeout(convergeWithin).Should(Succeed())
	})

	It("denies a pod that is no member, naming the reason", func() {
		dep := &appsv1.Deployment{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: identityNS, Name: "cart"}, dep)).To(Succeed())
		stranger := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: identityNS, Name: "stranger"},
			Spec:       *dep.Spec.Template.Spec.DeepCopy(), // the member's volume and ServiceAccount, not its label
		}
		Expect(k8sClient.Create(ctx, stranger)).To(Succeed())
		Eventually(func(g Gomega) {
			reqs := requestsFor(g, "stranger")
			g.Expect(reqs).To(HaveLen(1))
			denied := meta.FindStatusCondition(reqs[0].Status.Conditions, certificatesv1.PodCertificateRequestConditionTypeDenied)
			g.Expect(denied).NotTo(BeNil(), "conditions %+v", reqs[0].Status.Conditions)
			g.Expect(denied.Reason).To(Equal("NotAMeshMember"))
			g.Expect(reqs[0].Status.CertificateChain).To(BeEmpty())
		}).WithTimeout(convergeWithin).Should(Succeed())
		_, err := volumeFile(stranger, "bundle.pem")
		Expect(os.IsNotExist(err)).To(BeTrue(), "the stranger got credentials")
	})

	It("gives a mesh with mTLS Disabled neither the volume nor certificates", func() {
		off := &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: identityNS, Name: "off"},
			Spec: meshv1alpha1.ServiceMeshSpec{MTLS: &meshv1alpha1.MTLS{Mode: meshv1alpha1.MTLSDisabled}}}
		Expect(k8sClient.Create(ctx, off)).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService("plain", "off", 1))).To(Succeed())
		Eventually(func(g Gomega) {
			ms := &meshv1alpha1.MeshService{}
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: identityNS, Name: "plain"}, ms)).To(Succeed())
			g.Expect(ms.Status.Identity).To(Equal(&meshv1alpha1.IdentityStatus{ServiceAccount: "plain"}))
			pods := podsOf(g, "plain")
			g.Expect(pods).To(HaveLen(1))
			g.Expect(pods[0].Status.Phase).To(Equal(corev1.PodRunning))
			for _, v := range pods[0].Spec.Volumes {
				g.Expect(v.Name).NotTo(Equal("envoy-identity"))
			}
			g.Expect(requestsFor(g, pods[0].Name)).To(BeEmpty())
		}).WithTimeout(convergeWithin).Should(Succeed())
	})
})
