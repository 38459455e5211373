package controllers

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
	"github.com/envoymesh/envoymesh-operator/internal/xds"
	"github.com/envoymesh/envoymesh-operator/internal/xds/fleetsim"
)

// The manager's identity on the ADS channel, as the suite configures it.
const xdsServerID = "spiffe://cluster.local/ns/" + managerNamespace + "/sa/" + xdsManagerServiceAccount

// xdsMesh is a ServiceMesh delivering over xDS.
func xdsMesh(ns string) *meshv1alpha1.ServiceMesh {
	return &meshv1alpha1.ServiceMesh{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"},
		Spec:       meshv1alpha1.ServiceMeshSpec{Delivery: meshv1alpha1.DeliveryXDS},
	}
}

// currentCA is the CA in the suite's CA Secret now (a spec of the identity
// suite replaces it).
func currentCA() *identity.CA {
	secret := &corev1.Secret{}
	ExpectWithOffset(2, k8sClient.Get(ctx, suiteCASecret(), secret)).To(Succeed())
	ca, err := identity.ParseCA(secret.Data)
	ExpectWithOffset(2, err).NotTo(HaveOccurred())
	return ca
}

// proxyCert is a Pod Certificate as the kubelet would hold it for a pod of
// MeshService (ServiceAccount) sa: a fresh key, signed by the mesh's CA.
func proxyCert(ns, sa string) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	leaf, err := currentCA().Issue(key.Public(), identity.SPIFFEID("cluster.local", ns, sa), 24*time.Hour, time.Now())
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: key, Leaf: leaf.Cert}
}

// suiteRoots is what a pod's ca.pem holds: every trust bundle of the signer.
func suiteRoots() *x509.CertPool {
	var bundles certificatesv1.ClusterTrustBundleList
	ExpectWithOffset(2, k8sClient.List(ctx, &bundles)).To(Succeed())
	roots := x509.NewCertPool()
	for _, b := range bundles.Items {
		if b.Spec.SignerName == identity.SignerName {
			roots.AppendCertsFromPEM([]byte(b.Spec.TrustBundle))
		}
	}
	return roots
}

// startProxy connects a simulated Envoy of pod <pod> of MeshService service
// with cert to the ADS server at target, accepting what accept lets through.
func startProxy(target, ns, service, pod string, cert tls.Certificate, accept func(string, []*anypb.Any) error) *fleetsim.Sidecar {
	sc, err := fleetsim.Start(fleetsim.Config{
		Target:                 target,
		TLS:                    fleetsim.ClientTLS(cert, suiteRoots(), xdsServerID),
		Node:                   &corev3.Node{Id: pod + "." + ns, Cluster: service},
		NodeOnFirstRequestOnly: true,
		Accept:                 accept,
	})
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	DeferCleanup(sc.Close)
	return sc
}

func waitCtx() context.Context {
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	DeferCleanup(cancel)
	return c
}

// acked waits until the proxy runs configVersion for listeners and clusters.
func acked(sc *fleetsim.Sidecar, version string) {
	ExpectWithOffset(1, sc.WaitFor(waitCtx(), func(st *fleetsim.State) bool {
		return st.Acked[xds.ListenerType] == version && st.Acked[xds.ClusterType] == version
	})).To(Succeed())
}

// configVersion waits for a MeshService's status to name a version other than
// not, and returns it.
func configVersion(ns, name, not string) string {
	var v string
	EventuallyWithOffset(1, func(g Gomega) {
		ms := getMeshService(ns, name)
		g.Expect(ms.Status.ConfigVersion).NotTo(BeEmpty())
		g.Expect(ms.Status.ConfigVersion).NotTo(Equal(not))
		v = ms.Status.ConfigVersion
	}).Should(Succeed())
	return v
}

// proxyOf is the status of one pod's proxy.
func proxyOf(ms *meshv1alpha1.MeshService, pod string) *meshv1alpha1.ProxyStatus {
	for i := range ms.Status.Proxies {
		if ms.Status.Proxies[i].Pod == pod {
			return &ms.Status.Proxies[i]
		}
	}
	return nil
}

// endpointsOf reads the addresses and health of a proxy's EDS resource name.
func endpointsOf(st *fleetsim.State, cluster string) map[string]corev3.HealthStatus {
	for _, a := range st.Resources[xds.EndpointType] {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := a.UnmarshalTo(cla); err != nil || cla.GetClusterName() != cluster {
			continue
		}
		out := map[string]corev3.HealthStatus{}
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				out[e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()] = e.GetHealthStatus()
			}
		}
		return out
	}
	return nil
}

// endpointSlice is what the EndpointSlice controller (not run by envtest)
// writes for a MeshService's headless Service: our labels copied from it.
func endpointSlice(ns, service string, port int32, endpoints ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: service + "-abcde", Labels: map[string]string{
			discoveryv1.LabelServiceName: service, objects.ManagedByLabel: objects.ManagedBy,
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   endpoints,
		Ports:       []discoveryv1.EndpointPort{{Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
}

func endpoint(ip string, ready, terminating bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{
		Ready: ptr.To(ready), Serving: ptr.To(ready || terminating), Terminating: ptr.To(terminating),
	}}
}

var _ = Describe("xDS delivery", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace()
		Expect(k8sClient.Create(ctx, xdsMesh(ns))).To(Succeed())
	})

	It("pushes a change, which the proxy ACKs and status reports per proxy", func() {
		Expect(k8sClient.Create(ctx, meshService(ns, "b", 8080, 15006))).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(ns, "a", 8080, 15006, meshv1alpha1.Upstream{Name: "b", LocalPort: 9001}))).To(Succeed())
		v1 := configVersion(ns, "a", "")

		By("the ConfigMap holding the bootstrap alone, pointed at the ADS server")
		cm, err := envoyConfig(ns, "a")()
		Expect(err).NotTo(HaveOccurred())
		Expect(cm.Data).NotTo(HaveKey(envoyconfig.ListenersFile))
		Expect(cm.Data[envoyconfig.BootstrapFile]).To(ContainSubstring("ads_config"))
		Expect(cm.Data[envoyconfig.BootstrapFile]).To(ContainSubstring(xdsServerID))

		By("the proxy connecting and ACKing the version status names")
		sc := startProxy(suiteXDSTarget, ns, "a", "a-pod-1", proxyCert(ns, "a"), nil)
		acked(sc, v1)
		Eventually(func(g Gomega) {
			ms := getMeshService(ns, "a")
			p := proxyOf(ms, "a-pod-1")
			g.Expect(p).NotTo(BeNil())
			g.Expect(p.XDS).To(Equal(&meshv1alpha1.XDSProxyStatus{Connected: true, AckedVersion: v1}))
			g.Expect(p.Synced).To(BeTrue())
			g.Expect(condition(ms, meshv1alpha1.ConditionConfigSynced).Reason).To(Equal(ReasonSynced))
		}).Should(Succeed())

		By("a change of the callee's traffic policy reaching the caller")
		update(meshServiceKey(ns, "b"), func(ms *meshv1alpha1.MeshService) {
			ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{ConnectTimeout: ptr.To(meshv1alpha1.Duration("1s"))}
		})
		v2 := configVersion(ns, "a", v1)
		acked(sc, v2)
		Eventually(func(g Gomega) {
			p := proxyOf(getMeshService(ns, "a"), "a-pod-1")
			g.Expect(p).NotTo(BeNil())
			g.Expect(p.XDS.AckedVersion).To(Equal(v2))
		}).Should(Succeed())

		By("a reconnect getting nothing it already runs")
		before := sc.State().Responses
		Expect(sc.Reconnect("")).To(Succeed())
		Expect(sc.WaitFor(waitCtx(), func(st *fleetsim.State) bool { return st.Connected && st.Streams == 2 })).To(Succeed())
		Eventually(func(g Gomega) {
			p := proxyOf(getMeshService(ns, "a"), "a-pod-1")
			g.Expect(p).NotTo(BeNil())
			g.Expect(p.XDS).To(Equal(&meshv1alpha1.XDSProxyStatus{Connected: true, AckedVersion: v2}))
		}).Should(Succeed())
		Consistently(func() int { return sc.State().Responses }, "1s").Should(Equal(before))

		By("the pod going away")
		sc.Close()
		Eventually(func(g Gomega) {
			g.Expect(proxyOf(getMeshService(ns, "a"), "a-pod-1")).To(BeNil())
		}).Should(Succeed())
	})

	It("reports a NACK with Envoy's reason in status and an event, and does not resend the rejected version", func() {
		Expect(k8sClient.Create(ctx, meshService(ns, "a", 8080, 15006))).To(Succeed())
		v1 := configVersion(ns, "a", "")
		var reject atomic.Bool
		sc := startProxy(suiteXDSTarget, ns, "a", "a-pod-1", proxyCert(ns, "a"), func(typeURL string, _ []*anypb.Any) error {
			if typeURL == xds.ListenerType && reject.Load() {
				return errors.New("Error adding/updating listener(s) inbound: unknown field")
			}
			return nil
		})
		acked(sc, v1)

		reject.Store(true)
		update(meshServiceKey(ns, "a"), func(ms *meshv1alpha1.MeshService) { ms.Spec.Protocol = meshv1alpha1.ProtocolHTTP2 })
		v2 := configVersion(ns, "a", v1)
		Eventually(func(g Gomega) {
			ms := getMeshService(ns, "a")
			p := proxyOf(ms, "a-pod-1")
			g.Expect(p).NotTo(BeNil())
			g.Expect(p.XDS).NotTo(BeNil())
			g.Expect(p.XDS.RejectedVersion).To(Equal(v2))
			g.Expect(p.XDS.RejectReason).To(ContainSubstring("unknown field"))
			g.Expect(p.Rejected).To(BeTrue())
			g.Expect(condition(ms, meshv1alpha1.ConditionConfigSynced).Reason).To(Equal(ReasonRejected))
		}).Should(Succeed())
		Eventually(eventReasons(ns, "a")).Should(ContainElement("Warning/" + ReasonXDSRejected))
		Consistently(func() int { return sc.State().RejectedResends }, "1s").Should(BeZero())

		By("the next version, accepted, clearing it")
		reject.Store(false)
		update(meshServiceKey(ns, "a"), func(ms *meshv1alpha1.MeshService) { ms.Spec.Protocol = meshv1alpha1.ProtocolTCP })
		v3 := configVersion(ns, "a", v2)
		acked(sc, v3)
		Eventually(func(g Gomega) {
			p := proxyOf(getMeshService(ns, "a"), "a-pod-1")
			g.Expect(p).NotTo(BeNil())
			g.Expect(p.XDS).To(Equal(&meshv1alpha1.XDSProxyStatus{Connected: true, AckedVersion: v3}))
		}).Should(Succeed())
	})

	It("pushes the upstreams' EndpointSlices as EDS, a terminating endpoint as DRAINING", func() {
		Expect(k8sClient.Create(ctx, meshService(ns, "b", 8080, 15006))).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(ns, "a", 8080, 15006, meshv1alpha1.Upstream{Name: "b", LocalPort: 9001}))).To(Succeed())
		configVersion(ns, "a", "")
		sc := startProxy(suiteXDSTarget, ns, "a", "a-pod-1", proxyCert(ns, "a"), nil)
		cluster := envoyconfig.UpstreamClusterName("b", ns)

		slice := endpointSlice(ns, "b", 15006, endpoint("10.0.0.1", true, false))
		Expect(k8sClient.Create(ctx, slice)).To(Succeed())
		Expect(sc.WaitFor(waitCtx(), func(st *fleetsim.State) bool {
			return endpointsOf(st, cluster)["10.0.0.1"] == corev3.HealthStatus_HEALTHY
		})).To(Succeed())

		update(slice, func(s *discoveryv1.EndpointSlice) {
			s.Endpoints = []discoveryv1.Endpoint{endpoint("10.0.0.1", false, true), endpoint("10.0.0.2", true, false)}
		})
		Expect(sc.WaitFor(waitCtx(), func(st *fleetsim.State) bool {
			eps := endpointsOf(st, cluster)
			return eps["10.0.0.1"] == corev3.HealthStatus_DRAINING && eps["10.0.0.2"] == corev3.HealthStatus_HEALTHY
		})).To(Succeed())
		By("listeners and clusters not resent for an endpoint change")
		Expect(sc.State().Received[xds.ListenerType]).To(Equal(1))
	})

	It("rolls the pods once when a mesh switches delivery, and writes no lds or cds files under XDS", func() {
		Expect(k8sClient.Create(ctx, meshService(ns, "a", 8080, 15006))).To(Succeed())
		v1 := configVersion(ns, "a", "")
		template := func() (map[string]string, error) {
			dep := &appsv1.Deployment{}
			err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "a"}, dep)
			return dep.Spec.Template.Annotations, err
		}
		xdsAnnotations, err := template()
		Expect(err).NotTo(HaveOccurred())
		Expect(getMeshService(ns, "a").Status.Identity.SPIFFEID).NotTo(BeEmpty())

		By("back to ConfigMaps: a new bootstrap (one roll), the listeners and clusters back in the ConfigMap")
		update(&meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}, func(m *meshv1alpha1.ServiceMesh) {
			m.Spec.Delivery = meshv1alpha1.DeliveryConfigMap
		})
		Eventually(func(g Gomega) {
			cm, err := envoyConfig(ns, "a")()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(cm.Data).To(HaveKey(envoyconfig.ListenersFile))
			g.Expect(cm.Data[envoyconfig.BootstrapFile]).NotTo(ContainSubstring("ads_config"))
		}).Should(Succeed())
		Eventually(template).ShouldNot(HaveKeyWithValue(objects.BootstrapHashAnnotation, xdsAnnotations[objects.BootstrapHashAnnotation]))
		fileAnnotations, err := template()
		Expect(err).NotTo(HaveOccurred())
		reconciledOnce(ns, "a")
		reconciledOnce(ns, "a")
		Expect(template()).To(Equal(fileAnnotations), "a second reconcile rolled the pods again")
		Expect(getMeshService(ns, "a").Status.ConfigVersion).To(Equal(v1), "the listeners and clusters are the same either way")

		By("and to XDS again: the same bootstrap as before")
		update(&meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}, func(m *meshv1alpha1.ServiceMesh) {
			m.Spec.Delivery = meshv1alpha1.DeliveryXDS
		})
		Eventually(template).Should(Equal(xdsAnnotations))
		cm, err := envoyConfig(ns, "a")()
		Expect(err).NotTo(HaveOccurred())
		Expect(cm.Data).NotTo(HaveKey(envoyconfig.ListenersFile))
		Expect(cm.Data).NotTo(HaveKey(envoyconfig.ClustersFile))
	})

	It("pushes the gateway's config, with its routes' endpoints, and counts its synced Envoys", func() {
		Expect(k8sClient.Create(ctx, meshService(ns, "a", 8080, 15006))).To(Succeed())
		update(&meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}, func(m *meshv1alpha1.ServiceMesh) {
			m.Spec.Gateway = &meshv1alpha1.Gateway{Enabled: true, Routes: []meshv1alpha1.GatewayRoute{{Prefix: "/", Service: "a"}}}
		})
		var version string
		Eventually(func(g Gomega) {
			mesh := &meshv1alpha1.ServiceMesh{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, mesh)).To(Succeed())
			g.Expect(mesh.Status.Gateway).NotTo(BeNil())
			g.Expect(mesh.Status.Gateway.ConfigVersion).NotTo(BeEmpty())
			version = mesh.Status.Gateway.ConfigVersion
		}).Should(Succeed())
		cm, err := envoyConfig(ns, "default-gateway")()
		Expect(err).NotTo(HaveOccurred())
		Expect(cm.Data).NotTo(HaveKey(envoyconfig.ListenersFile))
		Expect(cm.Data[envoyconfig.BootstrapFile]).To(ContainSubstring("ads_config"))

		Expect(k8sClient.Create(ctx, endpointSlice(ns, "a", 15006, endpoint("10.0.0.7", true, false)))).To(Succeed())
		sc := startProxy(suiteXDSTarget, ns, "default-gateway", "default-gateway-x1", proxyCert(ns, "default-gateway"), nil)
		acked(sc, version)
		Expect(sc.WaitFor(waitCtx(), func(st *fleetsim.State) bool {
			return endpointsOf(st, envoyconfig.UpstreamClusterName("a", ns))["10.0.0.7"] == corev3.HealthStatus_HEALTHY
		})).To(Succeed())
		Eventually(func(g Gomega) {
			mesh := &meshv1alpha1.ServiceMesh{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, mesh)).To(Succeed())
			g.Expect(mesh.Status.Gateway.Synced).To(BeEquivalentTo(1))
		}).Should(Succeed())

		By("a MeshService's identity refused the gateway's config")
		stranger := startProxy(suiteXDSTarget, ns, "default-gateway", "default-gateway-x2", proxyCert(ns, "a"), nil)
		Expect(stranger.WaitFor(waitCtx(), func(st *fleetsim.State) bool { return st.Err != nil })).To(Succeed())
		Expect(status.Code(stranger.State().Err)).To(Equal(codes.PermissionDenied))
	})

	It("refuses a proxy whose identity is not the service whose config it asks for", func() {
		Expect(k8sClient.Create(ctx, meshService(ns, "b", 8080, 15006))).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(ns, "a", 8080, 15006, meshv1alpha1.Upstream{Name: "b", LocalPort: 9001}))).To(Succeed())
		configVersion(ns, "a", "")

		for name, cert := range map[string]tls.Certificate{
			"b's identity":                  proxyCert(ns, "b"),
			"a's name in another namespace": proxyCert("elsewhere", "a"),
		} {
			By("asking for a's config with " + name)
			sc := startProxy(suiteXDSTarget, ns, "a", "a-pod-x", cert, nil)
			Expect(sc.WaitFor(waitCtx(), func(st *fleetsim.State) bool { return st.Err != nil })).To(Succeed())
			Expect(status.Code(sc.State().Err)).To(Equal(codes.PermissionDenied))
			Expect(sc.State().Responses).To(BeZero())
		}

		By("a certificate of a CA the mesh does not trust, refused at the handshake")
		stranger, err := identity.GenerateCA("cluster.local", time.Now())
		Expect(err).NotTo(HaveOccurred())
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		Expect(err).NotTo(HaveOccurred())
		leaf, err := stranger.Issue(key.Public(), identity.SPIFFEID("cluster.local", ns, "a"), 24*time.Hour, time.Now())
		Expect(err).NotTo(HaveOccurred())
		sc := startProxy(suiteXDSTarget, ns, "a", "a-pod-y", tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: key}, nil)
		Expect(sc.WaitFor(waitCtx(), func(st *fleetsim.State) bool { return st.Err != nil })).To(Succeed())
		Expect(sc.State().Responses).To(BeZero())

		By("a service of a ConfigMap mesh, refused")
		other := newNamespace()
		Expect(k8sClient.Create(ctx, meshService(other, "c", 8080, 15006))).To(Succeed())
		configVersion(other, "c", "")
		sc = startProxy(suiteXDSTarget, other, "c", "c-pod-1", proxyCert(other, "c"), nil)
		Expect(sc.WaitFor(waitCtx(), func(st *fleetsim.State) bool { return st.Err != nil })).To(Succeed())
		Expect(status.Code(sc.State().Err)).To(Equal(codes.PermissionDenied))
	})

	It("is served as well by a replica that is not the leader", func() {
		By("a second manager that finds the Lease held by another and stays a follower")
		leaseName := "xds-follower-" + ns
		Expect(k8sClient.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: leaseName},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity: ptr.To("someone-else"), LeaseDurationSeconds: ptr.To[int32](3600),
				RenewTime: &metav1.MicroTime{Time: time.Now()}, AcquireTime: &metav1.MicroTime{Time: time.Now()},
			},
		})).To(Succeed())
		port, health := freePort(), freePort()
		follower, err := NewManager(cfg, ManagerOptions{
			Manager: ctrl.Options{
				Scheme: scheme.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: fmt.Sprintf("127.0.0.1:%d", health),
				LeaderElection: true, LeaderElectionID: leaseName, LeaderElectionNamespace: managerNamespace,
				// The suite's manager runs the same controllers in this process.
				Controller: config.Controller{SkipNameValidation: ptr.To(true)},
			},
			EnvoyImage: testEnvoyImage, ClusterDomain: "cluster.local",
			Probe: prober.Options{Interval: time.Hour, Port: statusPort},
			Identity: IdentityOptions{TrustDomain: "cluster.local",
				CASecret: suiteCASecret()},
			XDS: suiteXDSOptions(port),
		})
		Expect(err).NotTo(HaveOccurred())
		fctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			Expect(follower.Start(fctx)).To(Succeed())
		}()
		DeferCleanup(func() { stop(); <-done })
		By("the follower ready: credentials loaded, snapshots built")
		waitReady(health)

		Expect(k8sClient.Create(ctx, meshService(ns, "a", 8080, 15006))).To(Succeed())
		v1 := configVersion(ns, "a", "")
		sc := startProxy(fmt.Sprintf("127.0.0.1:%d", port), ns, "a", "a-pod-1", proxyCert(ns, "a"), nil)
		acked(sc, v1)

		By("the leader reporting the follower's proxy, from the follower's report")
		Eventually(func(g Gomega) {
			p := proxyOf(getMeshService(ns, "a"), "a-pod-1")
			g.Expect(p).NotTo(BeNil())
			g.Expect(p.XDS).To(Equal(&meshv1alpha1.XDSProxyStatus{Connected: true, AckedVersion: v1}))
			g.Expect(p.Synced).To(BeTrue())
		}).Should(Succeed())
		sc.Close()
		Eventually(func(g Gomega) {
			g.Expect(proxyOf(getMeshService(ns, "a"), "a-pod-1")).To(BeNil())
		}).Should(Succeed())

		By("the follower still a follower")
		lease := &coordinationv1.Lease{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: managerNamespace, Name: leaseName}, lease)).To(Succeed())
		Expect(*lease.Spec.HolderIdentity).To(Equal("someone-else"))
	})
})
