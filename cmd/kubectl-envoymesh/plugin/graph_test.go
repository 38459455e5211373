package plugin

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

var _ = Describe("graph", Ordered, func() {
	const ns = "graph-shop"

	BeforeAll(func() {
		createNamespace(ns)
		serviceMesh(ns, "edge", meshv1alpha1.ServiceMeshSpec{Gateway: &meshv1alpha1.Gateway{Enabled: true, Routes: []meshv1alpha1.GatewayRoute{
			{Prefix: "/", Service: "frontend"}, {Prefix: "/pay", Service: "billing", Namespace: "payments"}, {Prefix: "/old", Service: "legacy"}}}},
			meshv1alpha1.ServiceMeshStatus{Conditions: []metav1.Condition{condition("RoutesResolved", false, "NotAllowed",
				"MeshService [payments/billing] of another namespace does not consent to this gateway (it needs spec.allowFrom naming this namespace); its routes answer 403 until it does")}})
		meshService(ns, "frontend", "edge", []string{"backend", "payments/billing", "ghost"}, meshv1alpha1.MeshServiceStatus{
			Upstreams: []meshv1alpha1.UpstreamStatus{
				{Name: "backend", Namespace: ns, Resolved: true, Authorized: true},
				{Name: "billing", Namespace: "payments", Resolved: true},
				{Name: "ghost", Namespace: ns},
			},
			Conditions: []metav1.Condition{
				condition(meshv1alpha1.ConditionUpstreamsResolved, false, "UpstreamNotFound", "MeshService [graph-shop/ghost] not found"),
				condition(meshv1alpha1.ConditionUpstreamsAuthorized, false, "Refused",
					"[payments/billing does not consent to namespace graph-shop: it needs spec.allowFrom {namespace: graph-shop} (or with serviceAccount: frontend)]"),
			},
		})
		meshService(ns, "backend", "edge", nil, meshv1alpha1.MeshServiceStatus{Conditions: readyConds})
		// Not yet reconciled: its call's state is unknown.
		meshService(ns, "batch", "edge", []string{"backend"}, meshv1alpha1.MeshServiceStatus{})
	})

	It("prints the namespace's call graph as text, refused calls saying why", func() {
		out, err := run("graph", "-n", ns)
		Expect(err).NotTo(HaveOccurred())
		Expect(lines(out)).To(Equal([]string{
			"Namespace graph-shop: 3 MeshServices, 1 gateway, 7 calls (2 refused)",
			"",
			"gateway/edge",
			"/ -> frontend allowed",
			"/pay -> payments/billing REFUSED: payments/billing does not consent to this gateway: it needs spec.allowFrom {namespace: graph-shop}; the route answers 403",
			"/old -> legacy NOT FOUND: no such MeshService; the route answers 503",
			"",
			"backend",
			"(no calls)",
			"",
			"batch",
			":9001 -> backend UNKNOWN",
			"",
			"frontend",
			":9001 -> backend allowed",
			":9002 -> payments/billing REFUSED: payments/billing does not consent to namespace graph-shop: it needs spec.allowFrom {namespace: graph-shop} (or with serviceAccount: frontend)",
			":9003 -> ghost NOT FOUND: no such MeshService; its listener answers 503",
		}))
	})

	It("prints it as Graphviz DOT with -o dot", func() {
		out, err := run("graph", "-n", ns, "-o", "dot")
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(Equal(`digraph "graph-shop" {
  rankdir=LR;
  node [shape=box, style=rounded];
  "gateway:graph-shop/edge" [label="gateway/edge", shape=house];
  "graph-shop/backend" [label="backend"];
  "graph-shop/batch" [label="batch"];
  "graph-shop/frontend" [label="frontend"];
  "graph-shop/ghost" [label="ghost", style="rounded,dashed"];
  "graph-shop/legacy" [label="legacy", style="rounded,dashed"];
  "payments/billing" [label="payments/billing", style="rounded,dashed"];
  "gateway:graph-shop/edge" -> "graph-shop/frontend" [label="/"];
  "gateway:graph-shop/edge" -> "payments/billing" [label="/pay refused", color=red, fontcolor=red, style=dashed, tooltip="payments/billing does not consent to this gateway: it needs spec.allowFrom {namespace: graph-shop}; the route answers 403"];
  "gateway:graph-shop/edge" -> "graph-shop/legacy" [label="/old not found", color=orange, fontcolor=orange, style=dashed, tooltip="no such MeshService; the route answers 503"];
  "graph-shop/batch" -> "graph-shop/backend" [label=":9001", color=gray];
  "graph-shop/frontend" -> "graph-shop/backend" [label=":9001"];
  "graph-shop/frontend" -> "payments/billing" [label=":9002 refused", color=red, fontcolor=red, style=dashed, tooltip="payments/billing does not consent to namespace graph-shop: it needs spec.allowFrom {namespace: graph-shop} (or with serviceAccount: frontend)"];
  "graph-shop/frontend" -> "graph-shop/ghost" [label=":9003 not found", color=orange, fontcolor=orange, style=dashed, tooltip="no such MeshService; its listener answers 503"];
}
`))
	})

	It("prints it as JSON", func() {
		out, err := run("graph", "-n", ns, "-o", "json")
		Expect(err).NotTo(HaveOccurred())
		Expect(out).To(ContainSubstring(`"from": "graph-shop/frontend",
      "to": "payments/billing",
      "port": 9002,
      "state": "refused",`))
	})
})
