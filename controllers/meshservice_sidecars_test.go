package controllers

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin/admintest"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// podIPs hands out distinct loopback addresses, one per fake pod, so every stub
// sidecar binds its own 127.0.x.y at the suite's status port.
var podIPs atomic.Int32

func nextPodIP() string {
	n := podIPs.Add(1)
	return fmt.Sprintf("127.0.%d.%d", 20+n/250, 1+n%250)
}

// runningPod plays the kubelet: it creates a pod of the MeshService and marks it
// Running on a loopback IP where a stub sidecar answers the admin paths.
func runningPod(ns, msName, podName string) (*corev1.Pod, *admintest.Sidecar) {
	return runningPodLabelled(ns, podName, map[string]string{objects.ServiceLabel: msName})
}

func runningPodLabelled(ns, podName string, labels map[string]string) (*corev1.Pod, *admintest.Sidecar) {
	// As on the pods of the Deployments we write: the manager caches only these.
	labels[objects.ManagedByLabel] = objects.ManagedBy
	ip := nextPodIP()
	sidecar := admintest.NewSidecar()
	Expect(sidecar.Serve(fmt.Sprintf("%s:%d", ip, statusPort))).To(Succeed())
	DeferCleanup(sidecar.Close)

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: podName, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
	}
	Expect(k8sClient.Create(ctx, pod)).To(Succeed())
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
	Expect(k8sClient.Status().Update(ctx, pod)).To(Succeed())
	return pod, sidecar
}

var _ = Describe("MeshService status from the sidecars' admin API", func() {
	var ns string

	BeforeEach(func() {
		ns = newNamespace()
		SetDefaultEventuallyTimeout(20 * time.Second)
		SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	})

	// converged creates a MeshService with two running pods, marks its Deployment
	// available, and returns its config version and the two stub sidecars.
	converged := func(name string) (string, *admintest.Sidecar, *admintest.Sidecar) {
		ms := meshService(ns, name, 8080, 15006, meshv1alpha1.Upstream{Name: "dep", LocalPort: 9001})
		ms.Spec.Replicas = ptrTo[int32](2)
		Expect(k8sClient.Create(ctx, ms)).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(ns, "dep", 8080, 15007))).To(Succeed())
		// The version to report is the one with the upstream resolved; reading it
		// earlier would catch the version whose listener still answers 503.
		Eventually(conditionOf(ns, name, meshv1alpha1.ConditionUpstreamsResolved)).Should(Equal("True/Resolved"))
		var version string
		Eventually(func() string {
			version = getMeshService(ns, name).Status.ConfigVersion
			return version
		}).ShouldNot(BeEmpty())
		_, a := runningPod(ns, name, name+"-a")
		_, b := runningPod(ns, name, name+"-b")
		for _, s := range []*admintest.Sidecar{a, b} {
			s.SetVersion(version)
			s.SetClusters(admintest.Cluster{Name: envoyconfig.UpstreamClusterName("dep", ns), Hosts: 3, Healthy: 2})
		}
		markDeploymentAvailable(ns, name)
		return version, a, b
	}

	It("reports synced sidecars, endpoint health, and Ready", func() {
		version, _, _ := converged("synced")
		Eventually(conditionOf(ns, "synced", meshv1alpha1.ConditionConfigSynced)).Should(Equal("True/Synced"))
		Eventually(conditionOf(ns, "synced", meshv1alpha1.ConditionReady)).Should(Equal("True/Available"))
		ms := getMeshService(ns, "synced")
		Expect(ms.Status.Synced).To(Equal("2/2"))
		Expect(ms.Status.Sidecars).To(HaveValue(Equal(meshv1alpha1.SidecarCounts{Total: 2, Live: 2, Synced: 2})))
		Expect(ms.Status.Proxies).To(HaveLen(2))
		Expect(ms.Status.Proxies[0]).To(And(HaveField("Pod", "synced-a"), HaveField("State", "LIVE"),
			HaveField("ConfigVersion", version), HaveField("Synced", true), HaveField("EnvoyVersion", admintest.DefaultEnvoyVersion)))
		Expect(ms.Status.Upstreams).To(ConsistOf(And(HaveField("Name", "dep"), HaveField("Resolved", true),
			HaveField("Endpoints", BeEquivalentTo(3)), HaveField("HealthyEndpoints", BeEquivalentTo(2)))))

		By("writing no status while nothing changes, though the prober keeps probing")
		rv := ms.ResourceVersion
		Consistently(func() string { return getMeshService(ns, "synced").ResourceVersion }, 5*probeInterval, probeInterval/2).Should(Equal(rv))
	})

	It("reports a sidecar still on an old version as Stale", func() {
		_, _, b := converged("stale")
		Eventually(conditionOf(ns, "stale", meshv1alpha1.ConditionConfigSynced)).Should(Equal("True/Synced"))
		b.SetVersion("0123456789abcdef")
		Eventually(conditionOf(ns, "stale", meshv1alpha1.ConditionConfigSynced)).Should(Equal("False/Stale"))
		Expect(conditionOf(ns, "stale", meshv1alpha1.ConditionReady)()).To(Equal("False/SidecarsNotReady"))
		Expect(getMeshService(ns, "stale").Status.Synced).To(Equal("1/2"))
	})

	It("reports a rejected version with one Warning event", func() {
		_, a, _ := converged("rejected")
		Eventually(conditionOf(ns, "rejected", meshv1alpha1.ConditionConfigSynced)).Should(Equal("True/Synced"))

		By("a new config version that one sidecar NACKs: it keeps the old one and counts a rejection")
		old := getMeshService(ns, "rejected").Status.ConfigVersion
		update(meshServiceKey(ns, "rejected"), func(ms *meshv1alpha1.MeshService) { ms.Spec.Upstreams[0].LocalPort = 9002 })
		Eventually(func() string { return getMeshService(ns, "rejected").Status.ConfigVersion }).ShouldNot(Equal(old))
		a.SetRejected(1, 0)

		Eventually(conditionOf(ns, "rejected", meshv1alpha1.ConditionConfigSynced)).Should(Equal("False/Rejected"))
		Eventually(eventReasons(ns, "rejected")).Should(ContainElement("Warning/Rejected"))
		Expect(getMeshService(ns, "rejected").Status.Sidecars.Rejected).To(BeEquivalentTo(1))
		Consistently(func() int {
			n := 0
			for _, r := range eventReasons(ns, "rejected")() {
				if r == "Warning/Rejected" {
					n++
				}
			}
			return n
		}, 5*probeInterval, probeInterval/2).Should(Equal(1))
	})

	It("reports refused, hung and garbage-answering sidecars as Unreachable", func() {
		_, a, b := converged("unreachable")
		Eventually(conditionOf(ns, "unreachable", meshv1alpha1.ConditionConfigSynced)).Should(Equal("True/Synced"))

		By("a hung sidecar costs its timeout and shows as Unreachable")
		a.SetHang(true)
		Eventually(conditionOf(ns, "unreachable", meshv1alpha1.ConditionConfigSynced)).Should(Equal("False/Unreachable"))
		Expect(getMeshService(ns, "unreachable").Status.Sidecars.Unreachable).To(BeEquivalentTo(1))
		a.SetHang(false)
		Eventually(conditionOf(ns, "unreachable", meshv1alpha1.ConditionConfigSynced)).Should(Equal("True/Synced"))

		By("garbage on the status port")
		b.SetGarbage(true)
		Eventually(conditionOf(ns, "unreachable", meshv1alpha1.ConditionConfigSynced)).Should(Equal("False/Unreachable"))
		Eventually(func() string {
			for _, p := range getMeshService(ns, "unreachable").Status.Proxies {
				if p.Pod == "unreachable-b" {
					return p.Error
				}
			}
			return ""
		}).ShouldNot(BeEmpty())
		b.SetGarbage(false)
		Eventually(conditionOf(ns, "unreachable", meshv1alpha1.ConditionConfigSynced)).Should(Equal("True/Synced"))

		By("a refused connection")
		b.Close()
		Eventually(conditionOf(ns, "unreachable", meshv1alpha1.ConditionConfigSynced)).Should(Equal("False/Unreachable"))
		Expect(conditionOf(ns, "unreachable", meshv1alpha1.ConditionReady)()).To(Equal("False/SidecarsNotReady"))
	})
})

var _ = Describe("Per-proxy identity and denials in status", func() {
	It("shows each sidecar's certificate expiry and denials, and warns when denials rise", func() {
		ns := newNamespace()
		SetDefaultEventuallyTimeout(20 * time.Second)
		Expect(k8sClient.Create(ctx, meshService(ns, "payments", 8080, 15006))).To(Succeed())
		var version string
		Eventually(func() string { version = getMeshService(ns, "payments").Status.ConfigVersion; return version }).ShouldNot(BeEmpty())
		_, sidecar := runningPod(ns, "payments", "payments-a")
		sidecar.SetVersion(version)
		expiry := time.Now().Add(20 * time.Hour).Truncate(time.Second).UTC()
		sidecar.SetCertificate(expiry, "spiffe://cluster.local/ns/"+ns+"/sa/payments")

		proxy := func() meshv1alpha1.ProxyStatus {
			ps := getMeshService(ns, "payments").Status.Proxies
			if len(ps) == 0 {
				return meshv1alpha1.ProxyStatus{}
			}
			return ps[0]
		}
		Eventually(func() *metav1.Time { return proxy().CertificateExpiry }).Should(HaveValue(HaveField("Time", BeTemporally("==", expiry))))

		sidecar.SetCounter("http.inbound.rbac.denied", 3)
		sidecar.SetCounter("listener.inbound.ssl.fail_verify_san", 2)
		Eventually(func() int64 { return proxy().Denied }).Should(BeEquivalentTo(5))
		Eventually(eventReasons(ns, "payments")).Should(ContainElement("Warning/RequestsDenied"))
	})
})

func TestNewlyDenied(t *testing.T) {
	prev := []meshv1alpha1.ProxyStatus{{Pod: "a", Denied: 3}, {Pod: "b", Denied: 5, AuditDenied: 1}, {Pod: "c", Denied: 9}}
	next := []meshv1alpha1.ProxyStatus{
		{Pod: "a", State: "LIVE", Denied: 3},                 // no change
		{Pod: "b", State: "LIVE", Denied: 7, AuditDenied: 4}, // rose
		{Pod: "c", State: "LIVE", Denied: 1},                 // restarted: counters reset, nothing new
		{Pod: "d", State: "LIVE", Denied: 50},                // new pod: no baseline
	}
	r := newlyDenied(prev, next)
	if r.denied != 2 || r.audit != 3 || len(r.pods) != 1 || r.pods[0] != "b" {
		t.Errorf("rise %+v, want 2 denied and 3 audit-denied on b", r)
	}
	unreachable := []meshv1alpha1.ProxyStatus{{Pod: "b", State: "Unreachable"}}
	if r := newlyDenied(prev, unreachable); len(r.pods) != 0 {
		t.Errorf("an unreachable sidecar raised %+v", r)
	}
}
