//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// xdsSidecar is an entry of the double's GET /sidecars with its ADS stream
// (test/sidecardouble: SidecarInfo, XDSInfo).
type xdsSidecar struct {
	Pod      string `json:"pod"`
	Owner    string `json:"owner"`
	Serving  bool   `json:"serving"`
	Delivery string `json:"delivery"`
	XDS      *struct {
		Target      string `json:"target"`
		Node        string `json:"node"`
		Connected   bool   `json:"connected"`
		LDS         string `json:"lds"`
		CDS         string `json:"cds"`
		LDSRejected uint64 `json:"ldsRejected"`
		CDSRejected uint64 `json:"cdsRejected"`
		LastNACK    string `json:"lastNACK"`
		Clusters    []struct {
			Name    string `json:"name"`
			Hosts   int    `json:"hosts"`
			Healthy int    `json:"healthy"`
		} `json:"clusters"`
	} `json:"xds"`
}

// xdsSidecarsOf returns the double's sidecars of service in namespace.
func xdsSidecarsOf(g Gomega, ctx context.Context, namespace, service string) []xdsSidecar {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+doubleControl+"/sidecars", nil)
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := http.DefaultClient.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	var all []xdsSidecar
	g.Expect(json.NewDecoder(resp.Body).Decode(&all)).To(Succeed())
	var out []xdsSidecar
	for _, s := range all {
		if s.Owner == namespace+"/"+service && s.Serving {
			out = append(out, s)
		}
	}
	return out
}

// doubleControlCall sends a request to the double's control endpoint and expects 204.
func doubleControlCall(method, path string) {
	GinkgoHelper()
	req, err := http.NewRequest(method, "http://"+doubleControl+path, nil)
	Expect(err).NotTo(HaveOccurred())
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	Expect(resp.StatusCode).To(Equal(http.StatusNoContent), "%s %s", method, path)
}

var _ = Describe("xDS delivery on a local cluster", Ordered, func() {
	const xdsNS = "e2e-xds"
	ctx := context.Background()

	get := func(g Gomega, name string) *meshv1alpha1.MeshService {
		ms := &meshv1alpha1.MeshService{}
		g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: xdsNS, Name: name}, ms)).To(Succeed())
		return ms
	}
	patch := func(name, patch string) {
		GinkgoHelper()
		ms := &meshv1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Namespace: xdsNS, Name: name}}
		Expect(k8sClient.Patch(ctx, ms, client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
	}
	// synced asserts a MeshService of the XDS mesh in sync on its current
	// generation: Ready and ConfigSynced, and each of its want proxies holding
	// a stream on which it ACKed status.configVersion.
	synced := func(g Gomega, name string, want int) *meshv1alpha1.MeshService {
		ms := get(g, name)
		g.Expect(ms.Status.ObservedGeneration).To(Equal(ms.Generation), "%s: observedGeneration", name)
		g.Expect(meta.IsStatusConditionTrue(ms.Status.Conditions, meshv1alpha1.ConditionReady)).To(BeTrue(), "%s: Ready: %+v", name, ms.Status.Conditions)
		g.Expect(meta.IsStatusConditionTrue(ms.Status.Conditions, meshv1alpha1.ConditionConfigSynced)).To(BeTrue(), "%s: ConfigSynced: %+v", name, ms.Status.Conditions)
		g.Expect(ms.Status.ConfigVersion).NotTo(BeEmpty(), name)
		g.Expect(ms.Status.Sidecars).NotTo(BeNil(), name)
		g.Expect(ms.Status.Sidecars.Total).To(BeEquivalentTo(want), "%s: sidecars.total", name)
		g.Expect(ms.Status.Sidecars.Synced).To(BeEquivalentTo(want), "%s: sidecars.synced", name)
		g.Expect(ms.Status.Proxies).To(HaveLen(want), "%s: proxies", name)
		for _, p := range ms.Status.Proxies {
			g.Expect(p.XDS).NotTo(BeNil(), "%s: proxy %s has no xds status", name, p.Pod)
			g.Expect(p.XDS.Connected).To(BeTrue(), "%s: proxy %s not connected", name, p.Pod)
			g.Expect(p.XDS.AckedVersion).To(Equal(ms.Status.ConfigVersion), "%s: proxy %s ACKed", name, p.Pod)
			g.Expect(p.XDS.RejectedVersion).To(BeEmpty(), "%s: proxy %s rejected", name, p.Pod)
		}
		return ms
	}
	// doubleAcked asserts that the double's sidecars of name run version, as their stream ACKed it.
	doubleAcked := func(g Gomega, name, version string, want int) {
		sidecars := xdsSidecarsOf(g, ctx, xdsNS, name)
		g.Expect(sidecars).To(HaveLen(want), "%s: the double's sidecars", name)
		for _, s := range sidecars {
			g.Expect(s.Delivery).To(Equal("XDS"), s.Pod)
			g.Expect(s.XDS).NotTo(BeNil(), s.Pod)
			g.Expect(s.XDS.Connected).To(BeTrue(), s.Pod)
			g.Expect(s.XDS.Target).To(Equal(xdsAddress), s.Pod)
			g.Expect(s.XDS.LDS).To(Equal(version), "%s: LDS", s.Pod)
			g.Expect(s.XDS.CDS).To(Equal(version), "%s: CDS", s.Pod)
		}
	}
	hostsOf := func(g Gomega, caller, cluster string) []int {
		var out []int
		for _, s := range xdsSidecarsOf(g, ctx, xdsNS, caller) {
			g.Expect(s.XDS).NotTo(BeNil(), s.Pod)
			n := -1
			for _, c := range s.XDS.Clusters {
				if c.Name == cluster {
					n = c.Hosts
					g.Expect(c.Healthy).To(Equal(c.Hosts), "%s: %s has hosts that are not HEALTHY", s.Pod, cluster)
				}
			}
			out = append(out, n)
		}
		return out
	}
	rejectedEvent := func(g Gomega, name, text string) {
		events := &corev1.EventList{}
		g.Expect(k8sClient.List(ctx, events, client.InNamespace(xdsNS))).To(Succeed())
		var found bool
		var warnings []string
		for _, e := range events.Items {
			if e.InvolvedObject.Kind == "MeshService" && e.InvolvedObject.Name == name && e.Type == corev1.EventTypeWarning {
				found = found || e.Reason == "XDSRejected" && strings.Contains(e.Message, text)
				warnings = append(warnings, e.Reason+": "+e.Message)
			}
		}
		g.Expect(found).To(BeTrue(), "a Warning event XDSRejected on %s naming %q; its Warnings: %v", name, text, warnings)
	}

	It("brings the seed mesh up with delivery XDS: every proxy connected and ACKed at configVersion", func() {
		clusterWith([]string{"DELIVERY=XDS"}, "seed", xdsNS) // kubectl wait for Ready and ConfigSynced
		Eventually(func(g Gomega) {
			mesh := &meshv1alpha1.ServiceMesh{}
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: xdsNS, Name: "default"}, mesh)).To(Succeed())
			g.Expect(mesh.Spec.Delivery).To(Equal(meshv1alpha1.DeliveryXDS))
			g.Expect(meta.IsStatusConditionTrue(mesh.Status.Conditions, meshv1alpha1.ConditionReady)).To(BeTrue(), "mesh Ready: %+v", mesh.Status.Conditions)
			for name, n := range map[string]int{"service-a": 2, "service-b": 1, "service-c": 1} {
				ms := synced(g, name, n)
				doubleAcked(g, name, ms.Status.ConfigVersion, n)
			}
		}).WithTimeout(convergeWithin).Should(Succeed())

		By("the ConfigMaps carrying only the bootstrap, which dials the manager on " + xdsAddress)
		cm := &corev1.ConfigMap{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: xdsNS, Name: "service-a-envoy"}, cm)).To(Succeed())
		Expect(cm.Data).NotTo(HaveKey("lds.yaml"))
		Expect(cm.Data).NotTo(HaveKey("cds.yaml"))
		Expect(cm.Data["envoy.yaml"]).To(ContainSubstring("ads_config"))
		Expect(cm.Data["envoy.yaml"]).To(ContainSubstring("envoymesh-xds"))
	})

	It("pushes a MeshService change to its callers, which ACK it, without rewriting their ConfigMaps", func() {
		var before *meshv1alpha1.MeshService
		Eventually(func(g Gomega) { before = synced(g, "service-a", 2) }).WithTimeout(convergeWithin).Should(Succeed())
		cmBefore := &corev1.ConfigMap{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: xdsNS, Name: "service-a-envoy"}, cmBefore)).To(Succeed())

		patch("service-b", `{"spec":{"traffic":{"timeout":"3s"}}}`) // how callers reach service-b
		Eventually(func(g Gomega) {
			ms := synced(g, "service-a", 2)
			g.Expect(ms.Status.ConfigVersion).NotTo(Equal(before.Status.ConfigVersion), "service-a's config follows service-b's traffic")
			doubleAcked(g, "service-a", ms.Status.ConfigVersion, 2)
		}).WithTimeout(convergeWithin).Should(Succeed())
		cm := &corev1.ConfigMap{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: xdsNS, Name: "service-a-envoy"}, cm)).To(Succeed())
		Expect(cm.Data).To(Equal(cmBefore.Data), "a listener or cluster change went into the ConfigMap")
	})

	It("shows a NACK in status.proxies[].xds and as a Warning event XDSRejected, and recovers with the next version", func() {
		const reason = "e2e: listener out.service-b rejected by the sidecar"
		doubleControlCall(http.MethodPut, fmt.Sprintf("/nack/%s/service-a?message=%s", xdsNS, url.QueryEscape(reason)))
		DeferCleanup(doubleControlCall, http.MethodDelete, "/nack/"+xdsNS+"/service-a")
		patch("service-b", `{"spec":{"traffic":{"timeout":"4s"}}}`)

		Eventually(func(g Gomega) {
			ms := get(g, "service-a")
			g.Expect(ms.Status.ObservedGeneration).To(Equal(ms.Generation))
			c := meta.FindStatusCondition(ms.Status.Conditions, meshv1alpha1.ConditionConfigSynced)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse), "ConfigSynced: %+v", c)
			g.Expect(c.Reason).To(Equal("Rejected"), "ConfigSynced: %+v", c)
			g.Expect(ms.Status.Sidecars.Rejected).To(BeEquivalentTo(2))
			g.Expect(ms.Status.Proxies).To(HaveLen(2))
			for _, p := range ms.Status.Proxies {
				g.Expect(p.XDS).NotTo(BeNil(), p.Pod)
				g.Expect(p.XDS.Connected).To(BeTrue(), p.Pod)
				g.Expect(p.XDS.RejectedVersion).To(Equal(ms.Status.ConfigVersion), "%s: rejectedVersion", p.Pod)
				g.Expect(p.XDS.RejectReason).To(ContainSubstring(reason), "%s: rejectReason", p.Pod)
				g.Expect(p.XDS.AckedVersion).NotTo(Equal(ms.Status.ConfigVersion), "%s: ACKed the rejected version", p.Pod)
			}
			for _, s := range xdsSidecarsOf(g, ctx, xdsNS, "service-a") {
				g.Expect(s.XDS.LastNACK).To(Equal(reason), s.Pod)
			}
		}).WithTimeout(convergeWithin).Should(Succeed())
		Eventually(func(g Gomega) { rejectedEvent(g, "service-a", reason) }).WithTimeout(convergeWithin).Should(Succeed())

		By("the next version: ACKed, ConfigSynced again")
		doubleControlCall(http.MethodDelete, "/nack/"+xdsNS+"/service-a")
		patch("service-b", `{"spec":{"traffic":{"timeout":"5s"}}}`)
		Eventually(func(g Gomega) {
			ms := synced(g, "service-a", 2)
			doubleAcked(g, "service-a", ms.Status.ConfigVersion, 2)
		}).WithTimeout(convergeWithin).Should(Succeed())
	})

	It("follows an upstream's EndpointSlices in its callers' EDS when it scales", func() {
		cluster := "out.service-b." + xdsNS
		for _, n := range []int{3, 1} {
			By(fmt.Sprintf("scaling service-b to %d", n))
			patch("service-b", fmt.Sprintf(`{"spec":{"replicas":%d}}`, n))
			Eventually(func(g Gomega) {
				synced(g, "service-b", n)
				g.Expect(hostsOf(g, "service-a", cluster)).To(Equal([]int{n, n}), "service-a's sidecars' EDS hosts of %s", cluster)
				a := synced(g, "service-a", 2)
				var found bool
				for _, u := range a.Status.Upstreams {
					if u.Name == "service-b" {
						found = true
						g.Expect(u.Endpoints).To(BeEquivalentTo(n), "status.upstreams[service-b].endpoints")
						g.Expect(u.HealthyEndpoints).To(BeEquivalentTo(n), "status.upstreams[service-b].healthyEndpoints")
					}
				}
				g.Expect(found).To(BeTrue(), "status.upstreams has service-b")
			}).WithTimeout(convergeWithin).Should(Succeed())
		}
	})
})
