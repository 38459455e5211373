package controllers

import (
	"os"
	"path/filepath"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// seedServiceMesh reads the seed's ServiceMesh (with its front gateway) from config/samples.
func seedServiceMesh(ns string) *meshv1alpha1.ServiceMesh {
	data, err := os.ReadFile(filepath.Join("..", "config", "samples", "mesh_v1alpha1_servicemesh.yaml"))
	Expect(err).NotTo(HaveOccurred())
	mesh := &meshv1alpha1.ServiceMesh{}
	Expect(yaml.UnmarshalStrict(data, mesh)).To(Succeed())
	mesh.Namespace = ns
	return mesh
}

func getServiceMesh(ns, name string) *meshv1alpha1.ServiceMesh {
	mesh := &meshv1alpha1.ServiceMesh{}
	ExpectWithOffset(1, k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, mesh)).To(Succeed())
	return mesh
}

func meshCondition(ns, name, t string) func() string {
	return func() string {
		mesh := &meshv1alpha1.ServiceMesh{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, mesh); err != nil {
			return err.Error()
		}
		for _, c := range mesh.Status.Conditions {
			if c.Type == t {
				return string(c.Status) + "/" + c.Reason
			}
		}
		return "<none>"
	}
}

// gatewayRoutes parses the gateway ConfigMap: route prefix to cluster name, or
// to "503" for a direct response.
func gatewayRoutes(cm *corev1.ConfigMap) map[string]string {
	_, ls := listeners(cm)
	l := ls["gateway"]
	ExpectWithOffset(1, l).NotTo(BeNil())
	hcm := &hcmv3.HttpConnectionManager{}
	ExpectWithOffset(1, l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm)).To(Succeed())
	ExpectWithOffset(1, hcm.GetGenerateRequestId().GetValue()).To(BeTrue(), "x-request-id generated as in the seed")
	out := map[string]string{}
	for _, r := range hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		// "/" stays a plain prefix; other prefixes match by path segment.
		prefix := r.GetMatch().GetPrefix() + r.GetMatch().GetPathSeparatedPrefix()
		switch {
		case r.GetRoute() != nil:
			out[prefix] = r.GetRoute().GetCluster()
		case r.GetDirectResponse() != nil && r.GetDirectResponse().GetStatus() == 503:
			out[prefix] = "503"
		}
	}
	return out
}

var _ = Describe("ServiceMesh controller", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		SetDefaultEventuallyTimeout(20 * time.Second)
		SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	})

	It("runs the seed's front Envoy routing / to service-a's sidecar port", func() {
		Expect(k8sClient.Create(ctx, seedServiceMesh(ns))).To(Succeed())
		for _, ms := range seedMesh(ns) {
			Expect(k8sClient.Create(ctx, ms)).To(Succeed())
		}

		var cm *corev1.ConfigMap
		Eventually(func(g Gomega) {
			var err error
			cm, err = get(&corev1.ConfigMap{}, ns, "default-gateway-envoy")()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(gatewayRoutes(cm)).To(Equal(map[string]string{"/": "out.service-a." + ns}))
		}).Should(Succeed())
		_, cs := clusters(cm)
		target := cs["out.service-a."+ns]
		Expect(dnsEndpoints(target)).To(Equal([]string{"service-a." + ns + ".svc.cluster.local:8786"}))
		Expect(target.GetType()).To(Equal(clusterv3.Cluster_STRICT_DNS))
		Expect(target.GetConnectTimeout().AsDuration()).To(Equal(250 * time.Millisecond))
		_, ls := listeners(cm)
		Expect(listenerOn(ls, "0.0.0.0", 8080)).NotTo(BeNil())

		By("a gateway Deployment running Envoy as its only container, restricted")
		dep := &appsv1.Deployment{}
		Eventually(func() error { return k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default-gateway"}, dep) }).Should(Succeed())
		Expect(dep.Spec.Template.Spec.Containers).To(HaveLen(1))
		Expect(dep.Spec.Template.Spec.InitContainers).To(BeEmpty())
		Expect(dep.Spec.Template.Spec.Containers[0].Image).To(Equal(testEnvoyImage))
		Expect(dep.Spec.Template.Spec.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
		mesh := getServiceMesh(ns, "default")
		Expect(metav1.IsControlledBy(dep, mesh)).To(BeTrue())

		By("a ClusterIP Service on port 80 to Envoy's 8080")
		svc := &corev1.Service{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default-gateway"}, svc)).To(Succeed())
		Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeClusterIP))
		Expect(svc.Spec.Ports[0].Port).To(BeEquivalentTo(80))
		Expect(svc.Spec.Ports[0].TargetPort.IntValue()).To(Equal(8080))

		By("status: members, gateway address, Ready once the gateway and members are")
		Eventually(func(g Gomega) {
			st := getServiceMesh(ns, "default").Status
			g.Expect(st.Services).To(BeEquivalentTo(3))
			g.Expect(st.Gateway).NotTo(BeNil())
			g.Expect(st.Gateway.Address).To(Equal(svc.Spec.ClusterIP))
			g.Expect(st.ObservedGeneration).To(BeEquivalentTo(1))
		}).Should(Succeed())
		Expect(meshCondition(ns, "default", meshv1alpha1.ConditionReady)()).To(Equal("False/Progressing"))
		Expect(meshCondition(ns, "default", ConditionRoutesResolved)()).To(Equal("True/Resolved"))
		markDeploymentAvailable(ns, "default-gateway")
		Eventually(func() int32 { return getServiceMesh(ns, "default").Status.Gateway.ReadyReplicas }).Should(BeEquivalentTo(1))
		// No gateway pod runs here, so the mesh waits for its Envoy (see the next specs).
		Eventually(meshCondition(ns, "default", meshv1alpha1.ConditionReady)).Should(Equal("False/SidecarsNotReady"))
	})

	It("answers 503 for a route to a missing MeshService and follows the target's port without restarting", func() {
		mesh := seedServiceMesh(ns)
		mesh.Spec.Gateway.Routes = append(mesh.Spec.Gateway.Routes, meshv1alpha1.GatewayRoute{Prefix: "/b", Service: "service-b"})
		Expect(k8sClient.Create(ctx, mesh)).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(ns, "service-a", 8081, 8786))).To(Succeed())

		Eventually(meshCondition(ns, "default", ConditionRoutesResolved)).Should(Equal("False/RouteNotFound"))
		Eventually(func() map[string]string {
			cm, err := get(&corev1.ConfigMap{}, ns, "default-gateway-envoy")()
			if err != nil {
				return nil
			}
			return gatewayRoutes(cm)
		}).Should(Equal(map[string]string{"/": "out.service-a." + ns, "/b": "503"}))
		dep := &appsv1.Deployment{}
		Eventually(func() error { return k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default-gateway"}, dep) }).Should(Succeed())
		hash := dep.Spec.Template.Annotations[objects.BootstrapHashAnnotation]

		By("service-a moving to another servicePort reaches the gateway's clusters")
		update(meshServiceKey(ns, "service-a"), func(a *meshv1alpha1.MeshService) { a.Spec.ServicePort = 9786 })
		Eventually(func() []string {
			cm, _ := get(&corev1.ConfigMap{}, ns, "default-gateway-envoy")()
			_, cs := clusters(cm)
			return dnsEndpoints(cs["out.service-a."+ns])
		}).Should(Equal([]string{"service-a." + ns + ".svc.cluster.local:9786"}))
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default-gateway"}, dep)).To(Succeed())
		Expect(dep.Spec.Template.Annotations[objects.BootstrapHashAnnotation]).To(Equal(hash))

		By("creating the missing service resolves its route")
		Expect(k8sClient.Create(ctx, meshService(ns, "service-b", 8082, 8789))).To(Succeed())
		Eventually(meshCondition(ns, "default", ConditionRoutesResolved)).Should(Equal("True/Resolved"))
	})

	It("applies mesh-wide sidecar and traffic defaults to its members and follows their changes", func() {
		mesh := &meshv1alpha1.ServiceMesh{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
			Spec: meshv1alpha1.ServiceMeshSpec{
				Sidecar:  &meshv1alpha1.SidecarSettings{Image: "envoy:mesh", LogLevel: "debug"},
				Defaults: &meshv1alpha1.TrafficPolicy{ConnectTimeout: ptr.To(meshv1alpha1.Duration("2s"))},
			},
		}
		Expect(k8sClient.Create(ctx, mesh)).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(ns, "callee", 8080, 8001))).To(Succeed())
		caller := meshService(ns, "caller", 8080, 8002, meshv1alpha1.Upstream{Name: "callee", LocalPort: 9001})
		caller.Spec.Sidecar = &meshv1alpha1.SidecarSettings{LogLevel: "warning"}
		Expect(k8sClient.Create(ctx, caller)).To(Succeed())

		sidecarOf := func() corev1.Container {
			dep, err := get(&appsv1.Deployment{}, ns, "caller")()
			if err != nil || len(dep.Spec.Template.Spec.InitContainers) == 0 {
				return corev1.Container{}
			}
			return dep.Spec.Template.Spec.InitContainers[0]
		}
		connectTimeout := func() time.Duration {
			cm, err := envoyConfig(ns, "caller")()
			if err != nil {
				return 0
			}
			_, cs := clusters(cm)
			return cs["out.callee."+ns].GetConnectTimeout().AsDuration()
		}
		Eventually(func() string { return sidecarOf().Image }).Should(Equal("envoy:mesh"))
		Expect(sidecarOf().Args).To(ContainElement("warning"), "the service's logLevel wins over the mesh's")
		Eventually(connectTimeout).Should(Equal(2 * time.Second))

		By("the callee's own traffic policy wins over the mesh default")
		update(meshServiceKey(ns, "callee"), func(callee *meshv1alpha1.MeshService) {
			callee.Spec.Traffic = &meshv1alpha1.TrafficPolicy{ConnectTimeout: ptr.To(meshv1alpha1.Duration("1s"))}
		})
		Eventually(connectTimeout).Should(Equal(1 * time.Second))

		By("changing the mesh re-reconciles its members")
		update(getServiceMesh(ns, "default"), func(m *meshv1alpha1.ServiceMesh) { m.Spec.Sidecar.Image = "envoy:mesh2" })
		Eventually(func() string { return sidecarOf().Image }).Should(Equal("envoy:mesh2"))
		Eventually(func() int32 { return getServiceMesh(ns, "default").Status.Services }).Should(BeEquivalentTo(2))
	})

	It("uses built-in defaults, and says so, when the named mesh does not exist", func() {
		ms := meshService(ns, "alone", 8080, 8001)
		ms.Spec.Mesh = "nowhere"
		Expect(k8sClient.Create(ctx, ms)).To(Succeed())
		Eventually(func() string {
			c := condition(getMeshService(ns, "alone"), meshv1alpha1.ConditionReady)
			if c == nil {
				return ""
			}
			return c.Message
		}).Should(ContainSubstring(`ServiceMesh "nowhere" not found, built-in defaults apply`))
		Expect(getMeshService(ns, "alone").Status.ObservedGeneration).To(BeEquivalentTo(1))
		dep, err := get(&appsv1.Deployment{}, ns, "alone")()
		Expect(err).NotTo(HaveOccurred())
		Expect(dep.Spec.Template.Spec.InitContainers[0].Image).To(Equal(testEnvoyImage))
	})

	It("is Ready once every gateway Envoy is live on the gateway's config version", func() {
		mesh := seedServiceMesh(ns)
		mesh.Name = "edge"
		Expect(k8sClient.Create(ctx, mesh)).To(Succeed())
		web := meshService(ns, "service-a", 8081, 8786)
		web.Spec.Mesh = "elsewhere" // routed to, but not a member: the edge mesh has none to wait for
		Expect(k8sClient.Create(ctx, web)).To(Succeed())
		Eventually(meshCondition(ns, "edge", ConditionRoutesResolved)).Should(Equal("True/Resolved"))
		Eventually(func() string {
			st := getServiceMesh(ns, "edge").Status
			if st.Gateway == nil {
				return ""
			}
			return st.Gateway.ConfigVersion
		}).ShouldNot(BeEmpty())
		version := getServiceMesh(ns, "edge").Status.Gateway.ConfigVersion
		markDeploymentAvailable(ns, "edge-gateway")
		Eventually(meshCondition(ns, "edge", meshv1alpha1.ConditionReady)).Should(Equal("False/SidecarsNotReady"))

		_, envoy := runningPodLabelled(ns, "edge-gateway-1", map[string]string{objects.GatewayLabel: "edge"})
		envoy.SetVersion("0000000000000000")
		Consistently(meshCondition(ns, "edge", meshv1alpha1.ConditionReady), 5*probeInterval).Should(Equal("False/SidecarsNotReady"))
		envoy.SetVersion(version)
		Eventually(meshCondition(ns, "edge", meshv1alpha1.ConditionReady)).Should(Equal("True/Available"))
		Expect(getServiceMesh(ns, "edge").Status.Gateway.Synced).To(BeEquivalentTo(1))
	})

	It("removes the gateway it owns when the gateway is disabled", func() {
		Expect(k8sClient.Create(ctx, seedServiceMesh(ns))).To(Succeed())
		Eventually(func() error { _, err := get(&appsv1.Deployment{}, ns, "default-gateway")(); return err }).Should(Succeed())
		update(getServiceMesh(ns, "default"), func(m *meshv1alpha1.ServiceMesh) { m.Spec.Gateway.Enabled = false })
		for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}} {
			Eventually(func() bool {
				return apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default-gateway"}, obj))
			}).Should(BeTrue(), "%T removed", obj)
		}
		Eventually(func() *meshv1alpha1.GatewayStatus { return getServiceMesh(ns, "default").Status.Gateway }).Should(BeNil())
	})

	It("leaves observedGeneration where it was when the gateway cannot be built", func() {
		db := meshService(ns, "db", 5432, 15432)
		db.Spec.Protocol = meshv1alpha1.ProtocolTCP
		Expect(k8sClient.Create(ctx, db)).To(Succeed())
		// Once the MeshService controller has seen db, so has the shared cache.
		Eventually(func() int64 { return getMeshService(ns, "db").Status.ObservedGeneration }).Should(BeEquivalentTo(1))
		Expect(k8sClient.Create(ctx, seedServiceMesh(ns))).To(Succeed())
		Eventually(func() int64 { return getServiceMesh(ns, "default").Status.ObservedGeneration }).Should(BeEquivalentTo(1))

		By("a route to a TCP MeshService, which an HTTP gateway cannot serve")
		update(getServiceMesh(ns, "default"), func(m *meshv1alpha1.ServiceMesh) {
			m.Spec.Gateway.Routes = append(m.Spec.Gateway.Routes, meshv1alpha1.GatewayRoute{Prefix: "/db", Service: "db"})
		})
		Eventually(func(g Gomega) {
			c := meta.FindStatusCondition(getServiceMesh(ns, "default").Status.Conditions, meshv1alpha1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.ObservedGeneration).To(BeEquivalentTo(2))
			g.Expect(c.Reason).To(Equal(ReasonInvalidConfig))
			g.Expect(c.Message).To(ContainSubstring("speaks TCP"))
		}).Should(Succeed())
		Expect(getServiceMesh(ns, "default").Status.ObservedGeneration).To(BeEquivalentTo(1))
		Eventually(eventReasonsFor("ServiceMesh", ns, "default")).Should(ContainElement("Warning/InvalidConfig"))

		By("dropping the route lets it succeed again")
		update(getServiceMesh(ns, "default"), func(m *meshv1alpha1.ServiceMesh) { m.Spec.Gateway.Routes = m.Spec.Gateway.Routes[:1] })
		Eventually(func() int64 { return getServiceMesh(ns, "default").Status.ObservedGeneration }).Should(BeEquivalentTo(3))
		Expect(meshCondition(ns, "default", meshv1alpha1.ConditionReady)()).NotTo(HaveSuffix("/" + ReasonInvalidConfig))
	})

	It("applies no gateway object while a foreign object holds one of their names, and converges once it is deleted", func() {
		theirs := map[string]string{"app": "theirs"}
		foreign := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default-gateway"},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: theirs},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: theirs},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.com/theirs:1"}}},
				},
			},
		}
		Expect(k8sClient.Create(ctx, foreign)).To(Succeed())
		Expect(k8sClient.Create(ctx, seedServiceMesh(ns))).To(Succeed())

		Eventually(meshCondition(ns, "default", meshv1alpha1.ConditionReady)).Should(Equal("False/Conflict"))
		Expect(meta.FindStatusCondition(getServiceMesh(ns, "default").Status.Conditions, meshv1alpha1.ConditionReady).Message).
			To(ContainSubstring(`Deployment "default-gateway"`))
		Eventually(eventReasonsFor("ServiceMesh", ns, "default")).Should(ContainElement("Warning/Conflict"))

		By("a later reconcile, seen in status, still applies none of the gateway's objects")
		update(getServiceMesh(ns, "default"), func(m *meshv1alpha1.ServiceMesh) { m.Spec.Gateway.Replicas = ptr.To[int32](2) })
		Eventually(func(g Gomega) {
			c := meta.FindStatusCondition(getServiceMesh(ns, "default").Status.Conditions, meshv1alpha1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.ObservedGeneration).To(BeEquivalentTo(2))
			g.Expect(c.Reason).To(Equal(ReasonConflict))
		}).Should(Succeed())
		notFound(Default, ns, named(&corev1.Service{}, "default-gateway"), named(&corev1.ConfigMap{}, "default-gateway-envoy"))
		Expect(getServiceMesh(ns, "default").Status.ObservedGeneration).To(BeZero())

		By("deleting the foreign Deployment is all it takes: the mesh itself is not touched")
		Expect(k8sClient.Delete(ctx, foreign)).To(Succeed())
		Eventually(func(g Gomega) {
			mesh := getServiceMesh(ns, "default")
			g.Expect(mesh.Status.ObservedGeneration).To(BeEquivalentTo(2))
			controlledBy(g, mesh, named(&appsv1.Deployment{}, "default-gateway"), named(&corev1.Service{}, "default-gateway"),
				named(&corev1.ConfigMap{}, "default-gateway-envoy"))
		}).Should(Succeed())
		dep, err := get(&appsv1.Deployment{}, ns, "default-gateway")()
		Expect(err).NotTo(HaveOccurred())
		Expect(dep.Spec.Replicas).To(HaveValue(BeEquivalentTo(2)))
	})
})

var _ = Describe("ServiceMesh validation", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace() })

	DescribeTable("rejects",
		func(mutate func(*meshv1alpha1.ServiceMesh), field, message string) {
			mesh := seedServiceMesh(ns)
			mutate(mesh)
			err := k8sClient.Create(ctx, mesh)
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
			Expect(err.Error()).To(ContainSubstring(field))
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("unknown serviceType", func(m *meshv1alpha1.ServiceMesh) { m.Spec.Gateway.ServiceType = "ExternalName" },
			"spec.gateway.serviceType", "supported values"),
		Entry("route prefix without a leading /", func(m *meshv1alpha1.ServiceMesh) { m.Spec.Gateway.Routes[0].Prefix = "api" },
			"spec.gateway.routes[0].prefix", "must start with /"),
		Entry("duplicate route prefixes", func(m *meshv1alpha1.ServiceMesh) {
			m.Spec.Gateway.Routes = append(m.Spec.Gateway.Routes, meshv1alpha1.GatewayRoute{Prefix: "/", Service: "service-b"})
		}, "spec.gateway.routes", "prefix must be unique"),
		Entry("port 0", func(m *meshv1alpha1.ServiceMesh) { m.Spec.Gateway.Port = -1 }, "spec.gateway.port", "greater than or equal to 1"),
		Entry("port above 65535", func(m *meshv1alpha1.ServiceMesh) { m.Spec.Gateway.Port = 65536 }, "spec.gateway.port", "less than or equal to 65535"),
		Entry("negative replicas", func(m *meshv1alpha1.ServiceMesh) { m.Spec.Gateway.Replicas = ptr.To[int32](-1) },
			"spec.gateway.replicas", "greater than or equal to 0"),
		Entry("route to a service name that is not a DNS label", func(m *meshv1alpha1.ServiceMesh) { m.Spec.Gateway.Routes[0].Service = "Service_A" },
			"spec.gateway.routes[0].service", "should match"),
		Entry("malformed default duration", func(m *meshv1alpha1.ServiceMesh) {
			m.Spec.Defaults.ConnectTimeout = ptr.To(meshv1alpha1.Duration("quick"))
		}, "spec.defaults.connectTimeout", "should match"),
	)
})
