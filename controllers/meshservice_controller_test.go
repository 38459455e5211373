package controllers

import (
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

var _ = Describe("MeshService controller", func() {
	const timeout, interval = 20 * time.Second, 100 * time.Millisecond
	var ns string

	BeforeEach(func() {
		ns = newNamespace()
		SetDefaultEventuallyTimeout(timeout)
		SetDefaultEventuallyPollingInterval(interval)
		SetDefaultConsistentlyDuration(3 * time.Second)
		SetDefaultConsistentlyPollingInterval(250 * time.Millisecond)
	})

	It("turns the seed mesh into the article's listeners, clusters, Services and Deployments", func() {
		for _, ms := range seedMesh(ns) {
			Expect(k8sClient.Create(ctx, ms)).To(Succeed())
		}

		Eventually(conditionOf(ns, "service-a", meshv1alpha1.ConditionUpstreamsResolved)).Should(Equal("True/Resolved"))
		var cm *corev1.ConfigMap
		Eventually(func(g Gomega) {
			var err error
			cm, err = envoyConfig(ns, "service-a")()
			g.Expect(err).NotTo(HaveOccurred())
			_, cs := clusters(cm)
			g.Expect(cs).To(HaveLen(3))
		}).Should(Succeed())

		version, ls := listeners(cm)
		cdsVersion, cs := clusters(cm)
		Expect(version).To(Equal(cdsVersion))

		By("an inbound listener on 0.0.0.0:8786 forwarding to the app on 127.0.0.1:8081")
		inbound := listenerOn(ls, "0.0.0.0", 8786)
		Expect(inbound).NotTo(BeNil())
		var local *clusterv3.Cluster
		for _, c := range cs {
			if eps := dnsEndpoints(c); len(eps) == 1 && eps[0] == "127.0.0.1:8081" {
				local = c
			}
		}
		Expect(local).NotTo(BeNil(), "a cluster for the app at 127.0.0.1:8081")
		Expect(local.GetType()).To(Equal(clusterv3.Cluster_STATIC))

		By("egress listeners on loopback only, to STRICT_DNS clusters over the headless Services")
		for _, up := range []struct {
			localPort uint32
			endpoint  string
		}{{8788, "service-b." + ns + ".svc.cluster.local:8789"}, {8791, "service-c." + ns + ".svc.cluster.local:8790"}} {
			Expect(listenerOn(ls, "127.0.0.1", up.localPort)).NotTo(BeNil(), "egress listener on 127.0.0.1:%d", up.localPort)
			Expect(listenerOn(ls, "0.0.0.0", up.localPort)).To(BeNil())
			var target *clusterv3.Cluster
			for _, c := range cs {
				if eps := dnsEndpoints(c); len(eps) == 1 && eps[0] == up.endpoint {
					target = c
				}
			}
			Expect(target).NotTo(BeNil(), "cluster for %s", up.endpoint)
			Expect(target.GetType()).To(Equal(clusterv3.Cluster_STRICT_DNS))
			Expect(target.GetLbPolicy()).To(Equal(clusterv3.Cluster_ROUND_ROBIN))
			Expect(target.GetConnectTimeout().AsDuration()).To(Equal(250 * time.Millisecond))
			Expect(target.GetDnsRefreshRate().AsDuration()).To(Equal(5 * time.Second))
			Expect(target.GetRespectDnsTtl()).To(BeTrue())
		}
		Expect(ls).To(HaveLen(3))

		By("status carrying the content hash that lds.yaml and cds.yaml carry")
		Eventually(func(g Gomega) {
			ms := getMeshService(ns, "service-a")
			g.Expect(ms.Status.ConfigVersion).To(Equal(version))
			g.Expect(ms.Status.ObservedGeneration).To(Equal(ms.Generation))
			g.Expect(ms.Status.Upstreams).To(HaveLen(2))
		}).Should(Succeed())

		By("a headless Service on the sidecar port")
		svc := &corev1.Service{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "service-a"}, svc)).To(Succeed())
		Expect(svc.Spec.ClusterIP).To(Equal(corev1.ClusterIPNone))
		Expect(svc.Spec.Ports).To(HaveLen(1))
		Expect(svc.Spec.Ports[0].Port).To(BeEquivalentTo(8786))
		Expect(svc.Spec.Ports[0].Name).To(Equal("http"))
		Expect(svc.Spec.Selector).To(Equal(map[string]string{objects.ServiceLabel: "service-a"}))

		By("a Deployment with the native Envoy sidecar, its config volume and restricted security")
		dep := &appsv1.Deployment{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "service-a"}, dep)).To(Succeed())
		Expect(*dep.Spec.Replicas).To(BeEquivalentTo(2))
		Expect(dep.Spec.Template.Spec.Containers).To(HaveLen(1))
		Expect(dep.Spec.Template.Spec.InitContainers).To(HaveLen(1))
		envoy := dep.Spec.Template.Spec.InitContainers[0]
		Expect(envoy.Name).To(Equal("envoy"))
		Expect(envoy.Image).To(Equal(testEnvoyImage))
		Expect(envoy.RestartPolicy).To(HaveValue(Equal(corev1.ContainerRestartPolicyAlways)))
		Expect(envoy.StartupProbe.HTTPGet.Path).To(Equal("/ready"))
		Expect(envoy.StartupProbe.HTTPGet.Port.IntValue()).To(Equal(15021))
		Expect(envoy.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
		Expect(envoy.SecurityContext.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
		Expect(envoy.VolumeMounts).To(ContainElement(HaveField("MountPath", "/etc/envoy")))
		Expect(dep.Spec.Template.Spec.Volumes).To(ContainElement(HaveField("ConfigMap.Name", "service-a-envoy")))
		Expect(dep.Spec.Template.Annotations).To(HaveKey(objects.BootstrapHashAnnotation))

		By("owner references, so deleting the MeshService garbage-collects what it owns")
		ms := getMeshService(ns, "service-a")
		for _, obj := range []client.Object{cm, svc, dep} {
			Expect(metav1.IsControlledBy(obj, ms)).To(BeTrue(), "%T controlled by the MeshService", obj)
			Expect(obj.GetOwnerReferences()[0].BlockOwnerDeletion).To(HaveValue(BeTrue()))
		}

		By("Ready waits for the Deployment, then for the sidecars (no pod runs here; see the sidecar specs)")
		Expect(conditionOf(ns, "service-a", meshv1alpha1.ConditionReady)()).To(Equal("False/Progressing"))
		markDeploymentAvailable(ns, "service-a")
		Eventually(conditionOf(ns, "service-a", meshv1alpha1.ConditionReady)).Should(Equal("False/SidecarsNotReady"))
		Expect(getMeshService(ns, "service-a").Status.Ready).To(Equal("2/2"))
		Expect(conditionOf(ns, "service-a", meshv1alpha1.ConditionConfigSynced)()).To(Equal("Unknown/NoSidecars"))

		By("no status write from a reconcile that changes nothing")
		// Ready=SidecarsNotReady with 2/2 replicas is the last state these inputs
		// lead to: every later reconcile computes the same status.
		rv := getMeshService(ns, "service-a").ResourceVersion
		reconciledOnce(ns, "service-a")
		reconciledOnce(ns, "service-a") // the first marker reconcile has now finished
		Expect(getMeshService(ns, "service-a").ResourceVersion).To(Equal(rv))
		Consistently(func() string { return getMeshService(ns, "service-a").ResourceVersion }).Should(Equal(rv))
	})

	It("follows an upstream's servicePort change without rolling the caller's pods", func() {
		for _, ms := range seedMesh(ns) {
			Expect(k8sClient.Create(ctx, ms)).To(Succeed())
		}
		endpointsOf := func() []string {
			cm, err := envoyConfig(ns, "service-a")()
			if err != nil {
				return nil
			}
			_, cs := clusters(cm)
			var all []string
			for _, c := range cs {
				all = append(all, dnsEndpoints(c)...)
			}
			return all
		}
		Eventually(endpointsOf).Should(ContainElement("service-b." + ns + ".svc.cluster.local:8789"))
		Eventually(func() int64 { return getMeshService(ns, "service-a").Status.ObservedGeneration }).Should(BeEquivalentTo(1))
		before := getMeshService(ns, "service-a").Status.ConfigVersion
		dep := &appsv1.Deployment{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "service-a"}, dep)).To(Succeed())
		hash := dep.Spec.Template.Annotations[objects.BootstrapHashAnnotation]

		update(meshServiceKey(ns, "service-b"), func(b *meshv1alpha1.MeshService) { b.Spec.ServicePort = 9789 })

		Eventually(endpointsOf).Should(ContainElement("service-b." + ns + ".svc.cluster.local:9789"))
		Eventually(func() string { return getMeshService(ns, "service-a").Status.ConfigVersion }).ShouldNot(Equal(before))
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "service-a"}, dep)).To(Succeed())
		Expect(dep.Spec.Template.Annotations[objects.BootstrapHashAnnotation]).To(Equal(hash))

		By("and service-b's own Service and inbound listener move to the new port")
		Eventually(func() int32 {
			svc := &corev1.Service{}
			if k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "service-b"}, svc) != nil || len(svc.Spec.Ports) == 0 {
				return 0
			}
			return svc.Spec.Ports[0].Port
		}).Should(BeEquivalentTo(9789))
	})

	It("applies its own spec changes and sets observedGeneration", func() {
		ms := meshService(ns, "web", 8080, 15006)
		Expect(k8sClient.Create(ctx, ms)).To(Succeed())
		Eventually(func() int64 { return getMeshService(ns, "web").Status.ObservedGeneration }).Should(BeEquivalentTo(1))

		update(meshServiceKey(ns, "web"), func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Replicas = ptr.To[int32](3)
			ms.Spec.Template.Spec.Containers[0].Image = "example.com/web:2"
		})

		Eventually(func(g Gomega) {
			dep, err := get(&appsv1.Deployment{}, ns, "web")()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(*dep.Spec.Replicas).To(BeEquivalentTo(3))
			g.Expect(dep.Spec.Template.Spec.Containers[0].Image).To(Equal("example.com/web:2"))
		}).Should(Succeed())
		Eventually(func() int64 { return getMeshService(ns, "web").Status.ObservedGeneration }).Should(BeEquivalentTo(2))
	})

	It("answers 503 on a missing upstream's listener until the upstream exists, and again after it is deleted", func() {
		Expect(k8sClient.Create(ctx, meshService(ns, "caller", 8080, 15006,
			meshv1alpha1.Upstream{Name: "later", LocalPort: 9000}))).To(Succeed())

		Eventually(conditionOf(ns, "caller", meshv1alpha1.ConditionUpstreamsResolved)).Should(Equal("False/UpstreamNotFound"))
		Expect(condition(getMeshService(ns, "caller"), meshv1alpha1.ConditionUpstreamsResolved).Message).To(ContainSubstring(ns + "/later"))
		Eventually(func(g Gomega) {
			cm, err := envoyConfig(ns, "caller")()
			g.Expect(err).NotTo(HaveOccurred())
			_, ls := listeners(cm)
			l := listenerOn(ls, "127.0.0.1", 9000)
			g.Expect(l).NotTo(BeNil())
			g.Expect(directResponseStatus(l)).To(BeEquivalentTo(503))
			_, cs := clusters(cm)
			g.Expect(cs).To(HaveLen(1), "only the local app cluster")
		}).Should(Succeed())

		By("creating the upstream resolves it")
		Expect(k8sClient.Create(ctx, meshService(ns, "later", 8080, 8001))).To(Succeed())
		Eventually(conditionOf(ns, "caller", meshv1alpha1.ConditionUpstreamsResolved)).Should(Equal("True/Resolved"))
		Eventually(func(g Gomega) {
			cm, err := envoyConfig(ns, "caller")()
			g.Expect(err).NotTo(HaveOccurred())
			_, ls := listeners(cm)
			g.Expect(directResponseStatus(listenerOn(ls, "127.0.0.1", 9000))).To(BeZero())
			_, cs := clusters(cm)
			g.Expect(cs).To(HaveLen(2))
		}).Should(Succeed())

		By("deleting it unresolves it again")
		Expect(k8sClient.Delete(ctx, &meshv1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "later"}})).To(Succeed())
		Eventually(conditionOf(ns, "caller", meshv1alpha1.ConditionUpstreamsResolved)).Should(Equal("False/UpstreamNotFound"))
	})

	It("restores owned objects that are deleted or edited by hand", func() {
		Expect(k8sClient.Create(ctx, meshService(ns, "drift", 8080, 15006))).To(Succeed())
		var cm *corev1.ConfigMap
		Eventually(func() error { var err error; cm, err = envoyConfig(ns, "drift")(); return err }).Should(Succeed())
		original := cm.Data

		By("a deleted ConfigMap comes back")
		Expect(k8sClient.Delete(ctx, cm)).To(Succeed())
		Eventually(func(g Gomega) {
			got, err := envoyConfig(ns, "drift")()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.UID).NotTo(Equal(cm.UID))
			g.Expect(got.Data).To(Equal(original))
		}).Should(Succeed())

		By("hand-edited data is put back")
		update(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "drift-envoy"}},
			func(cm *corev1.ConfigMap) { cm.Data["lds.yaml"] = "tampered" })
		Eventually(func() map[string]string { got, _ := envoyConfig(ns, "drift")(); return got.Data }).Should(Equal(original))

		By("hand-edited replicas are put back")
		update(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "drift"}},
			func(dep *appsv1.Deployment) { dep.Spec.Replicas = ptr.To[int32](7) })
		Eventually(func() int32 {
			d, _ := get(&appsv1.Deployment{}, ns, "drift")()
			return ptr.Deref(d.Spec.Replicas, -1)
		}).Should(BeEquivalentTo(1))

		By("a deleted Service comes back")
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "drift"}}
		Expect(k8sClient.Delete(ctx, svc)).To(Succeed())
		Eventually(func() error { _, err := get(&corev1.Service{}, ns, "drift")(); return err }).Should(Succeed())
	})

	It("never overwrites an object it does not own and reports the conflict", func() {
		foreign := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken-envoy", Labels: map[string]string{"owner": "someone-else"}},
			Data:       map[string]string{"envoy.yaml": "theirs"},
		}
		Expect(k8sClient.Create(ctx, foreign)).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(ns, "taken", 8080, 15006))).To(Succeed())

		Eventually(conditionOf(ns, "taken", meshv1alpha1.ConditionReady)).Should(Equal("False/Conflict"))
		Expect(condition(getMeshService(ns, "taken"), meshv1alpha1.ConditionReady).Message).To(ContainSubstring(`ConfigMap "taken-envoy"`))
		Eventually(eventReasons(ns, "taken")).Should(ContainElement("Warning/Conflict"))
		Expect(getMeshService(ns, "taken").Status.ObservedGeneration).To(BeZero())

		Consistently(func(g Gomega) {
			got, err := envoyConfig(ns, "taken")()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.Data).To(Equal(map[string]string{"envoy.yaml": "theirs"}))
			g.Expect(got.OwnerReferences).To(BeEmpty())
			g.Expect(got.Labels).To(Equal(map[string]string{"owner": "someone-else"}))
		}).Should(Succeed())

		By("once the foreign object is gone, the operator writes its own")
		Expect(k8sClient.Delete(ctx, foreign)).To(Succeed())
		Eventually(func(g Gomega) {
			got, err := envoyConfig(ns, "taken")()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.OwnerReferences).To(HaveLen(1))
		}).Should(Succeed())
		Eventually(func() int64 { return getMeshService(ns, "taken").Status.ObservedGeneration }).Should(BeEquivalentTo(1))
	})

	It("applies none of its objects while one of their names is taken, so nothing it writes mounts a foreign ConfigMap", func() {
		foreign := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "held-envoy"},
			Data:       map[string]string{"envoy.yaml": "theirs"},
		}
		Expect(k8sClient.Create(ctx, foreign)).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(ns, "held", 8080, 15006))).To(Succeed())

		Eventually(conditionOf(ns, "held", meshv1alpha1.ConditionReady)).Should(Equal("False/Conflict"))
		notFound(Default, ns, named(&appsv1.Deployment{}, "held"), named(&corev1.Service{}, "held"))

		By("a later reconcile, seen in status, still applies nothing")
		update(meshServiceKey(ns, "held"), func(ms *meshv1alpha1.MeshService) { ms.Spec.Replicas = ptr.To[int32](2) })
		Eventually(func(g Gomega) {
			c := condition(getMeshService(ns, "held"), meshv1alpha1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.ObservedGeneration).To(BeEquivalentTo(2))
			g.Expect(c.Reason).To(Equal(ReasonConflict))
		}).Should(Succeed())
		notFound(Default, ns, named(&appsv1.Deployment{}, "held"), named(&corev1.Service{}, "held"))
		Eventually(eventReasons(ns, "held")).Should(ContainElement("Warning/Conflict"))
		Expect(getMeshService(ns, "held").Status.ObservedGeneration).To(BeZero())

		By("once the foreign ConfigMap is gone, everything converges")
		Expect(k8sClient.Delete(ctx, foreign)).To(Succeed())
		Eventually(func(g Gomega) {
			ms := getMeshService(ns, "held")
			g.Expect(ms.Status.ObservedGeneration).To(BeEquivalentTo(2))
			controlledBy(g, ms, named(&appsv1.Deployment{}, "held"), named(&corev1.Service{}, "held"), named(&corev1.ConfigMap{}, "held-envoy"))
		}).Should(Succeed())
	})
})

// directResponseStatus returns the status of the direct response a listener's
// HTTP connection manager answers with, or 0 when it routes to a cluster.
func directResponseStatus(l *listenerv3.Listener) uint32 {
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			hcm := &hcmv3.HttpConnectionManager{}
			if f.GetTypedConfig().UnmarshalTo(hcm) != nil {
				continue
			}
			for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					if dr := r.GetDirectResponse(); dr != nil {
						return dr.GetStatus()
					}
				}
			}
		}
	}
	return 0
}

var _ = Describe("MeshService controller, invalid combinations CEL cannot see", func() {
	It("reports an upstream named twice once its namespace is defaulted", func() {
		ns := newNamespace()
		Expect(k8sClient.Create(ctx, meshService(ns, "twice", 8080, 15006,
			meshv1alpha1.Upstream{Name: "b", LocalPort: 9001},
			meshv1alpha1.Upstream{Name: "b", Namespace: ns, LocalPort: 9002}))).To(Succeed())
		Eventually(conditionOf(ns, "twice", meshv1alpha1.ConditionReady), 20*time.Second).Should(Equal("False/InvalidConfig"))
		Expect(condition(getMeshService(ns, "twice"), meshv1alpha1.ConditionReady).Message).To(ContainSubstring("spec.upstreams[1]"))
		Eventually(eventReasons(ns, "twice")).Should(ContainElement("Warning/InvalidConfig"))
	})
})
