package plugin

import (
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

var _ = Describe("status", Ordered, func() {
	const ns = "status-shop"
	expiry := time.Now().Add(23*time.Hour + 30*time.Minute).Truncate(time.Second)

	BeforeAll(func() {
		createNamespace(ns)
		serviceMesh(ns, "mesh", meshv1alpha1.ServiceMeshSpec{Gateway: &meshv1alpha1.Gateway{Enabled: true,
			Routes: []meshv1alpha1.GatewayRoute{{Prefix: "/", Service: "frontend"}}}},
			meshv1alpha1.ServiceMeshStatus{
				Gateway:    &meshv1alpha1.GatewayStatus{Replicas: 2, ReadyReplicas: 2, ConfigVersion: "9a1b", Synced: 1},
				Conditions: []metav1.Condition{condition(meshv1alpha1.ConditionReady, false, "SidecarsNotReady", "1/2 gateway Envoys synced")},
			})
		meshService(ns, "frontend", "mesh", []string{"backend"}, meshv1alpha1.MeshServiceStatus{
			ConfigVersion: "c0ffee",
			Proxies: []meshv1alpha1.ProxyStatus{
				{Pod: "frontend-a", State: "LIVE", EnvoyVersion: "1.36.2", ConfigVersion: "c0ffee", Synced: true, CertificateExpiry: at(expiry), Denied: 3, AuditDenied: 2},
				{Pod: "frontend-b", State: "LIVE", EnvoyVersion: "1.36.2", ConfigVersion: "0ld", Rejected: true, Error: "cluster backend: invalid timeout"},
			},
			Sidecars: &meshv1alpha1.SidecarCounts{Total: 2, Live: 2, Synced: 1, Rejected: 1},
		})
		meshService(ns, "backend", "mesh", nil, meshv1alpha1.MeshServiceStatus{
			ConfigVersion: "beef",
			Proxies: []meshv1alpha1.ProxyStatus{
				{Pod: "backend-1", State: "LIVE", EnvoyVersion: "1.36.2", ConfigVersion: "dead"},
				{Pod: "backend-2", State: "Unreachable", Error: "context deadline exceeded"},
			},
		})
		meshService(ns, "idle", "mesh", nil, meshv1alpha1.MeshServiceStatus{
			Conditions: []metav1.Condition{condition(meshv1alpha1.ConditionReady, false, "Progressing", "0/1 replicas ready")},
		})
	})

	It("prints one row per proxy: the gateway as one row, synced, rejected with the reason, stale, unreachable, none probed", func() {
		out, err := run("status", "-n", ns)
		Expect(err).NotTo(HaveOccurred())
		Expect(lines(out)).To(Equal([]string{
			"RESOURCE POD ENVOY CONFIG STATE CERT EXPIRES DENIED REASON",
			"gateway/mesh (2/2 pods) - 9a1b Stale - - 1/2 Envoys synced to 9a1b (not synced: stale, rejected or unreachable); gateway Envoys are counted, not listed per pod; Ready=False SidecarsNotReady: 1/2 gateway Envoys synced",
			"ms/backend backend-1 1.36.2 dead Stale - 0 runs dead, current is beef (ConfigMap propagation to the pod takes up to a minute)",
			"ms/backend backend-2 - - Unreachable - 0 context deadline exceeded",
			"ms/frontend frontend-a 1.36.2 c0ffee Synced in 23h 3 (audit 2) -",
			"ms/frontend frontend-b 1.36.2 0ld Rejected - 0 Envoy refused config c0ffee and keeps serving 0ld: cluster backend: invalid timeout",
			"ms/idle - - - Unknown - - no sidecar probed yet (Ready=False Progressing: 0/1 replicas ready)",
		}))
	})

	It("adds the namespace column with --all-namespaces", func() {
		out, err := run("status", "-A")
		Expect(err).NotTo(HaveOccurred())
		Expect(lines(out)[0]).To(Equal("NAMESPACE RESOURCE POD ENVOY CONFIG STATE CERT EXPIRES DENIED REASON"))
		Expect(lines(out)).To(ContainElement(HavePrefix(ns + " ms/frontend frontend-a 1.36.2 c0ffee Synced in 23h")))
	})

	It("marks an expired certificate", func() {
		out, err := runAt(expiry.Add(2*time.Hour), "status", "-n", ns)
		Expect(err).NotTo(HaveOccurred())
		Expect(lines(out)).To(ContainElement("ms/frontend frontend-a 1.36.2 c0ffee Synced EXPIRED 2h ago 3 (audit 2) -"))
	})

	It("prints the same rows as JSON and YAML", func() {
		out, err := run("status", "-n", ns, "-o", "json")
		Expect(err).NotTo(HaveOccurred())
		var r StatusReport
		Expect(json.Unmarshal([]byte(out), &r)).To(Succeed())
		Expect(r.Proxies).To(HaveLen(6))
		Expect(r.Proxies[0]).To(Equal(ProxyRow{Namespace: ns, Kind: "Gateway", Name: "mesh", Pods: "2/2", ConfigVersion: "9a1b", WantVersion: "9a1b", State: StateStale,
			Reason: "1/2 Envoys synced to 9a1b (not synced: stale, rejected or unreachable); gateway Envoys are counted, not listed per pod; Ready=False SidecarsNotReady: 1/2 gateway Envoys synced"}))
		Expect(r.Proxies[3].CertificateExpiry).NotTo(BeNil())
		Expect(r.Proxies[3].CertificateExpiry.Equal(expiry)).To(BeTrue())
		r.Proxies[3].CertificateExpiry = nil
		Expect(r.Proxies[3]).To(Equal(ProxyRow{Namespace: ns, Kind: "MeshService", Name: "frontend", Pod: "frontend-a", EnvoyVersion: "1.36.2",
			ConfigVersion: "c0ffee", WantVersion: "c0ffee", State: StateSynced, Denied: 3, AuditDenied: 2}))
		Expect(r.Proxies[4].State).To(Equal(StateRejected))
		Expect(r.Proxies[4].Reason).To(Equal("Envoy refused config c0ffee and keeps serving 0ld: cluster backend: invalid timeout"))

		out, err = run("status", "-n", ns, "-o", "yaml")
		Expect(err).NotTo(HaveOccurred())
		var y StatusReport
		Expect(yaml.Unmarshal([]byte(out), &y)).To(Succeed())
		Expect(y.Proxies).To(HaveLen(6))
		Expect(y.Proxies[4].Pod).To(Equal("frontend-b"))
	})

	It("says so when there is nothing, and refuses an unknown format", func() {
		createNamespace("status-empty")
		out, err := run("status", "-n", "status-empty")
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(Equal("No MeshServices or gateways found in namespace status-empty.\n"))
		_, err = run("status", "-o", "wide")
		Expect(err).To(MatchError(ContainSubstring(`unknown output format "wide"`)))
	})
})
