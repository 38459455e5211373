//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

const ns = "e2e-seed"

func getMS(ctx context.Context, name string) (*meshv1alpha1.MeshService, error) {
	ms := &meshv1alpha1.MeshService{}
	return ms, k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, ms)
}

func patchMS(ctx context.Context, name, patch string) {
	GinkgoHelper()
	ms := &meshv1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	Expect(k8sClient.Patch(ctx, ms, client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
}

// converged asserts what `kubectl wait --for=condition=Ready/ConfigSynced` would,
// on the current generation, and that wantSidecars sidecars are all synced.
func converged(g Gomega, ctx context.Context, name string, wantSidecars int32) *meshv1alpha1.MeshService {
	ms, err := getMS(ctx, name)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ms.Status.ObservedGeneration).To(Equal(ms.Generation), "observedGeneration")
	g.Expect(meta.IsStatusConditionTrue(ms.Status.Conditions, meshv1alpha1.ConditionReady)).To(BeTrue(), "Ready: %+v", ms.Status.Conditions)
	g.Expect(meta.IsStatusConditionTrue(ms.Status.Conditions, meshv1alpha1.ConditionConfigSynced)).To(BeTrue(), "ConfigSynced: %+v", ms.Status.Conditions)
	g.Expect(ms.Status.Sidecars).NotTo(BeNil())
	g.Expect(ms.Status.Sidecars.Total).To(Equal(wantSidecars), "sidecars.total")
	g.Expect(ms.Status.Sidecars.Synced).To(Equal(wantSidecars), "sidecars.synced")
	g.Expect(ms.Status.ReadyReplicas).To(Equal(wantSidecars), "readyReplicas")
	return ms
}

// doubleVersions returns the config versions the double's serving sidecars of service run.
func doubleVersions(g Gomega, ctx context.Context, service string) []string {
	all, err := doubleSidecars(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	var out []string
	for _, s := range all {
		if s.Owner == ns+"/"+service && s.Serving {
			out = append(out, s.Version)
		}
	}
	return out
}

var _ = Describe("the seed mesh on a local cluster", Ordered, func() {
	ctx := context.Background()

	It("comes up Ready and ConfigSynced in a restricted namespace (the demo scenario)", func() {
		cluster("seed", ns) // applies config/samples and runs kubectl wait for Ready and ConfigSynced
		Eventually(func(g Gomega) {
			converged(g, ctx, "service-a", 2)
			converged(g, ctx, "service-b", 1)
			converged(g, ctx, "service-c", 1)
			mesh := &meshv1alpha1.ServiceMesh{}
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "default"}, mesh)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(mesh.Status.Conditions, meshv1alpha1.ConditionReady)).To(BeTrue(), "mesh Ready: %+v", mesh.Status.Conditions)
		}).WithTimeout(convergeWithin).Should(Succeed())
	})

	It("admits every meshed and gateway pod under the restricted Pod Security level, which is enforced", func() {
		nsObj := &corev1.Namespace{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Name: ns}, nsObj)).To(Succeed())
		Expect(nsObj.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))

		pods := &corev1.PodList{}
		Expect(k8sClient.List(ctx, pods, client.InNamespace(ns))).To(Succeed())
		count := map[string]int{}
		for _, p := range pods.Items {
			Expect(p.Status.Phase).To(Equal(corev1.PodRunning), "pod %s", p.Name)
			Expect(strings.HasPrefix(p.Status.PodIP, "127.2.")).To(BeTrue(), "pod %s has IP %q outside the node's loopback podCIDR", p.Name, p.Status.PodIP)
			switch {
			case p.Labels["mesh.envoymesh.io/service"] != "":
				count[p.Labels["mesh.envoymesh.io/service"]]++
			case p.Labels["mesh.envoymesh.io/gateway"] != "":
				count["gateway"]++
			}
		}
		Expect(count).To(Equal(map[string]int{"service-a": 2, "service-b": 1, "service-c": 1, "gateway": 1}))

		By("checking that a privileged pod is refused in the same namespace")
		bad := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "privileged"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "c", Image: "busybox",
				SecurityContext: &corev1.SecurityContext{Privileged: new(true)},
			}}},
		}
		err := k8sClient.Create(ctx, bad, client.DryRunAll)
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
		Expect(err.Error()).To(ContainSubstring("violates PodSecurity"))
	})

	It("authorizes the declared call graph in Strict/Enforce, and shows certificates and denials per proxy", func() {
		spiffe := func(sa string) string { return "spiffe://cluster.local/ns/" + ns + "/sa/" + sa }
		Eventually(func(g Gomega) {
			for service, want := range map[string][]string{
				"service-a": {spiffe("default-gateway")}, // the gateway routes to it
				"service-b": {spiffe("service-a")},
				"service-c": {spiffe("service-a")},
			} {
				ms, err := getMS(ctx, service)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(ms.Status.AuthorizedCallers).NotTo(BeNil(), service)
				g.Expect(ms.Status.AuthorizedCallers.SPIFFEIDs).To(Equal(want), service)
				g.Expect(ms.Status.Proxies).NotTo(BeEmpty(), service)
				for _, p := range ms.Status.Proxies {
					g.Expect(p.CertificateExpiry).NotTo(BeNil(), "%s: the double reports the certificate the kubelet double wrote", p.Pod)
				}
			}
			a, err := getMS(ctx, "service-a")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(meta.IsStatusConditionTrue(a.Status.Conditions, meshv1alpha1.ConditionUpstreamsAuthorized)).To(BeTrue())
			cm := &corev1.ConfigMap{}
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "service-b-envoy"}, cm)).To(Succeed())
			g.Expect(cm.Data["lds.yaml"]).To(ContainSubstring(spiffe("service-a")), "service-b's inbound RBAC names service-a")
			g.Expect(cm.Data).To(HaveKey("sds-identity.yaml"))
		}).WithTimeout(convergeWithin).Should(Succeed())

		By("the sidecars of service-b reporting denials: status shows them and a Warning event says so")
		req, err := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/denials/%s/service-b?count=3", doubleControl, ns), nil)
		Expect(err).NotTo(HaveOccurred())
		resp, err := http.DefaultClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusNoContent))
		Eventually(func(g Gomega) {
			ms, err := getMS(ctx, "service-b")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(ms.Status.Proxies).NotTo(BeEmpty())
			g.Expect(ms.Status.Proxies[0].Denied).To(BeNumerically(">=", 3))
			events := &corev1.EventList{}
			g.Expect(k8sClient.List(ctx, events, client.InNamespace(ns))).To(Succeed())
			var found bool
			for _, e := range events.Items {
				found = found || e.InvolvedObject.Name == "service-b" && e.Type == corev1.EventTypeWarning && e.Reason == "RequestsDenied"
			}
			g.Expect(found).To(BeTrue(), "a Warning event RequestsDenied on service-b")
		}).WithTimeout(convergeWithin).Should(Succeed())
	})

	It("carries a spec change into the ConfigMap, the sidecars and ConfigSynced", func() {
		before, err := getMS(ctx, "service-a")
		Expect(err).NotTo(HaveOccurred())
		patchMS(ctx, "service-a", `{"spec":{"upstreams":[{"name":"service-b","localPort":8798},{"name":"service-c","localPort":8791}]}}`)

		var version string
		Eventually(func(g Gomega) {
			ms, err := getMS(ctx, "service-a")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(ms.Status.ObservedGeneration).To(Equal(ms.Generation))
			g.Expect(ms.Status.ConfigVersion).NotTo(BeEmpty())
			g.Expect(ms.Status.ConfigVersion).NotTo(Equal(before.Status.ConfigVersion))
			version = ms.Status.ConfigVersion
			cm := &corev1.ConfigMap{}
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "service-a-envoy"}, cm)).To(Succeed())
			g.Expect(cm.Data["lds.yaml"]).To(ContainSubstring("8798"))
			g.Expect(cm.Data["lds.yaml"]).To(ContainSubstring(version))
		}).WithTimeout(convergeWithin).Should(Succeed())

		By("the double loading version " + version + " after its propagation delay")
		Eventually(func(g Gomega) {
			g.Expect(doubleVersions(g, ctx, "service-a")).To(Equal([]string{version, version}))
			ms := converged(g, ctx, "service-a", 2)
			g.Expect(ms.Status.ConfigVersion).To(Equal(version))
		}).WithTimeout(convergeWithin).Should(Succeed())
	})

	It("surfaces a rejected version as ConfigSynced=False/Rejected and a Warning event", func() {
		setFault(ns, "service-a", "reject")
		DeferCleanup(setFault, ns, "service-a", "")
		patchMS(ctx, "service-a", `{"spec":{"upstreams":[{"name":"service-b","localPort":8788},{"name":"service-c","localPort":8791}]}}`)

		Eventually(func(g Gomega) {
			ms, err := getMS(ctx, "service-a")
			g.Expect(err).NotTo(HaveOccurred())
			c := meta.FindStatusCondition(ms.Status.Conditions, meshv1alpha1.ConditionConfigSynced)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal("Rejected"))
			g.Expect(ms.Status.Sidecars.Rejected).To(BeNumerically(">", 0))
		}).WithTimeout(convergeWithin).Should(Succeed())

		Eventually(func(g Gomega) {
			events := &corev1.EventList{}
			g.Expect(k8sClient.List(ctx, events, client.InNamespace(ns))).To(Succeed())
			var found bool
			for _, e := range events.Items {
				if e.InvolvedObject.Kind == "MeshService" && e.InvolvedObject.Name == "service-a" &&
					e.Type == corev1.EventTypeWarning && e.Reason == "Rejected" {
					found = true
				}
			}
			g.Expect(found).To(BeTrue(), "a Warning event with reason Rejected on service-a")
		}).WithTimeout(convergeWithin).Should(Succeed())

		By("clearing the fault: the sidecars load the version and ConfigSynced turns True")
		setFault(ns, "service-a", "")
		Eventually(func(g Gomega) { converged(g, ctx, "service-a", 2) }).WithTimeout(convergeWithin).Should(Succeed())
	})

	It("reports a dead sidecar as ConfigSynced=False/Unreachable and recovers when it is back", func() {
		setFault(ns, "service-b", "die")
		DeferCleanup(setFault, ns, "service-b", "")
		Eventually(func(g Gomega) {
			ms, err := getMS(ctx, "service-b")
			g.Expect(err).NotTo(HaveOccurred())
			c := meta.FindStatusCondition(ms.Status.Conditions, meshv1alpha1.ConditionConfigSynced)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal("Unreachable"))
			g.Expect(meta.IsStatusConditionTrue(ms.Status.Conditions, meshv1alpha1.ConditionReady)).To(BeFalse())
		}).WithTimeout(convergeWithin).Should(Succeed())
		setFault(ns, "service-b", "")
		Eventually(func(g Gomega) { converged(g, ctx, "service-b", 1) }).WithTimeout(convergeWithin).Should(Succeed())
	})

	It("follows scaling 2→3→1 with its sidecars", func() {
		for _, n := range []int32{2, 3, 1} {
			By(fmt.Sprintf("scaling service-b to %d", n))
			patchMS(ctx, "service-b", fmt.Sprintf(`{"spec":{"replicas":%d}}`, n))
			Eventually(func(g Gomega) {
				converged(g, ctx, "service-b", n)
				g.Expect(doubleVersions(g, ctx, "service-b")).To(HaveLen(int(n)))
				dep := &appsv1.Deployment{}
				g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "service-b"}, dep)).To(Succeed())
				g.Expect(dep.Status.AvailableReplicas).To(Equal(n))
			}).WithTimeout(convergeWithin).Should(Succeed())
		}
	})

	It("converges after the operator is killed and restarted mid-way", func() {
		cluster("stop-operator") // SIGKILL: no graceful shutdown
		patchMS(ctx, "service-c", `{"spec":{"replicas":2}}`)
		patchMS(ctx, "service-a", `{"spec":{"upstreams":[{"name":"service-b","localPort":8768},{"name":"service-c","localPort":8791}]}}`)
		cluster("start-operator")
		Eventually(func(g Gomega) {
			converged(g, ctx, "service-c", 2)
			ms := converged(g, ctx, "service-a", 2)
			cm := &corev1.ConfigMap{}
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "service-a-envoy"}, cm)).To(Succeed())
			g.Expect(cm.Data["lds.yaml"]).To(ContainSubstring("8768"))
			g.Expect(doubleVersions(g, ctx, "service-a")).To(Equal([]string{ms.Status.ConfigVersion, ms.Status.ConfigVersion}))
		}).WithTimeout(convergeWithin).Should(Succeed())
	})

	It("garbage-collects the Deployment, Service and ConfigMap of a deleted MeshService", func() {
		ms, err := getMS(ctx, "service-c")
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Delete(ctx, ms)).To(Succeed())
		owned := []client.Object{
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "service-c"}},
			&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "service-c"}},
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "service-c-envoy"}},
		}
		Eventually(func(g Gomega) {
			for _, o := range owned {
				err := k8sClient.Get(ctx, client.ObjectKeyFromObject(o), o)
				g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%T %s still there (err %v)", o, o.GetName(), err)
			}
			pods := &corev1.PodList{}
			g.Expect(k8sClient.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"mesh.envoymesh.io/service": "service-c"})).To(Succeed())
			g.Expect(pods.Items).To(BeEmpty())
			g.Expect(doubleVersions(g, ctx, "service-c")).To(BeEmpty())
		}).WithTimeout(convergeWithin).Should(Succeed())
	})
})
