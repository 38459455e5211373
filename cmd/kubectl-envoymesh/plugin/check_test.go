package plugin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
)

var _ = Describe("check", Ordered, func() {
	const (
		ok     = "check-ok"
		broken = "check-broken"
		holder = "envoymesh-controller-manager-7d9f-x_4f1c"
	)
	var (
		now    time.Time
		bundle *certificatesv1.ClusterTrustBundle
		deploy *appsv1.Deployment
	)

	BeforeAll(func() {
		now = time.Now()
		createNamespace(DefaultOperatorNamespace)
		deploy = &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: DefaultOperatorNamespace, Name: DefaultOperatorDeployment},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"control-plane": "controller-manager"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"control-plane": "controller-manager"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "manager", Image: "operator:1", Args: []string{"--leader-elect"}}}},
				},
			},
		}
		Expect(k8sClient.Create(ctx, deploy)).To(Succeed())
		deploy.Status = appsv1.DeploymentStatus{Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1, UpdatedReplicas: 1,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"}}}
		Expect(k8sClient.Status().Update(ctx, deploy)).To(Succeed())

		Expect(k8sClient.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: DefaultOperatorNamespace, Name: LeaderElectionID},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder), LeaseDurationSeconds: ptr.To[int32](15),
				RenewTime: ptr.To(metav1.NewMicroTime(now.Add(-3 * time.Second)))},
		})).To(Succeed())

		ca, err := identity.GenerateCA("cluster.local", now)
		Expect(err).NotTo(HaveOccurred())
		data, err := ca.SecretData()
		Expect(err).NotTo(HaveOccurred())
		Expect(k8sClient.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: DefaultOperatorNamespace, Name: DefaultCASecret},
			Type: corev1.SecretTypeTLS, Data: data})).To(Succeed())
		bundle = identity.TrustBundle(ca)
		Expect(k8sClient.Create(ctx, bundle)).To(Succeed())

		createNamespace(ok)
		serviceMesh(ok, "mesh", meshv1alpha1.ServiceMeshSpec{}, meshv1alpha1.ServiceMeshStatus{Conditions: []metav1.Condition{
			condition(meshv1alpha1.ConditionReady, true, "Available", "ready"), condition("RoutesResolved", true, "Resolved", "all 0 routes resolved")}})
		meshService(ok, "a", "mesh", []string{"b"}, meshv1alpha1.MeshServiceStatus{Conditions: readyConds})
		meshService(ok, "b", "mesh", nil, meshv1alpha1.MeshServiceStatus{Conditions: readyConds})
		// A request the signer has not answered yet: fine while young.
		Expect(k8sClient.Create(ctx, podCertificateRequest(ok, "a-1"))).To(Succeed())
	})

	It("passes a healthy installation, one verdict a line", func() {
		out, err := runAt(now, "check", "-n", ok)
		Expect(err).NotTo(HaveOccurred())
		Expect(lines(out)).To(Equal([]string{
			"VERDICT CHECK DETAIL FIX",
			"OK crd/meshservices.mesh.envoymesh.io established, v1alpha1 schema same as this plugin's -",
			"OK crd/servicemeshes.mesh.envoymesh.io established, v1alpha1 schema same as this plugin's -",
			"OK operator/deployment envoymesh-system/envoymesh-controller-manager 1/1 ready, Available -",
			"OK operator/leader leader " + holder + ", renewed 3s ago (lease 15s) -",
			"OK servicemeshes 1/1 healthy in namespace check-ok -",
			"OK meshservices 2/2 healthy in namespace check-ok -",
			"OK identity/trust-bundle published: " + bundle.Name + " -",
			"OK identity/ca-secret CA Secret envoymesh-system/envoymesh-identity-ca present -",
			"OK identity/signer issuing: 0 issued, 1 pending (none over 1m0s) -",
		}))
	})

	It("says what is wrong with a broken installation, and how to fix it", func() {
		createNamespace(broken)
		serviceMesh(broken, "mesh", meshv1alpha1.ServiceMeshSpec{Gateway: &meshv1alpha1.Gateway{Enabled: true,
			Routes: []meshv1alpha1.GatewayRoute{{Prefix: "/pay", Service: "billing", Namespace: "payments"}}}},
			meshv1alpha1.ServiceMeshStatus{Conditions: []metav1.Condition{
				condition(meshv1alpha1.ConditionReady, true, "Available", "ready"),
				condition("RoutesResolved", false, "NotAllowed", "MeshService [payments/billing] of another namespace does not consent to this gateway (it needs spec.allowFrom naming this namespace); its routes answer 403 until it does"),
			}})
		meshService(broken, "web", "mesh", []string{"ghost"}, meshv1alpha1.MeshServiceStatus{Conditions: []metav1.Condition{
			condition(meshv1alpha1.ConditionReady, false, "SidecarsNotReady", "1/2 sidecars synced"),
			condition(meshv1alpha1.ConditionUpstreamsResolved, false, "UpstreamNotFound", "MeshService [check-broken/ghost] not found"),
			condition(meshv1alpha1.ConditionUpstreamsAuthorized, true, "Authorized", "all 0 resolved upstreams accept this service"),
		}})
		// The operator is not available, its leader stopped renewing, the
		// bundle is gone, a request waits, another was denied, and the
		// ServiceMesh CRD is one release behind (no spec.tracing).
		deploy.Status.ReadyReplicas, deploy.Status.AvailableReplicas = 0, 0
		deploy.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse,
			Reason: "MinimumReplicasUnavailable", Message: "Deployment does not have minimum availability."}}
		Expect(k8sClient.Status().Update(ctx, deploy)).To(Succeed())
		Expect(k8sClient.Delete(ctx, bundle)).To(Succeed())
		denied := podCertificateRequest(broken, "web-1")
		Expect(k8sClient.Create(ctx, denied)).To(Succeed())
		denied.Status.Conditions = []metav1.Condition{{Type: certificatesv1.PodCertificateRequestConditionTypeDenied, Status: metav1.ConditionTrue,
			Reason: "NotAMember", Message: "pod web-1 is no MeshService's", LastTransitionTime: metav1.Now()}}
		Expect(k8sClient.Status().Update(ctx, denied)).To(Succeed())
		crd := &apiextensionsv1.CustomResourceDefinition{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Name: "servicemeshes.mesh.envoymesh.io"}, crd)).To(Succeed())
		restore := crd.DeepCopy()
		delete(crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties, "tracing")
		Expect(k8sClient.Update(ctx, crd)).To(Succeed())
		DeferCleanup(func() {
			Expect(k8sClient.Get(ctx, types.NamespacedName{Name: crd.Name}, crd)).To(Succeed())
			crd.Spec = restore.Spec
			Expect(k8sClient.Update(ctx, crd)).To(Succeed())
		})

		later := now.Add(2*time.Minute + 30*time.Second)
		out, err := runAt(later, "check", "-n", broken)
		Expect(err).To(MatchError("10 check(s) failed"))
		Expect(lines(out)).To(Equal([]string{
			"VERDICT CHECK DETAIL FIX",
			"OK crd/meshservices.mesh.envoymesh.io established, v1alpha1 schema same as this plugin's -",
			"FAIL crd/servicemeshes.mesh.envoymesh.io outdated: v1alpha1 lacks spec.tracing install the CRDs of this release: kubectl apply --server-side -k config/crd (or `make install`)",
			"FAIL operator/deployment envoymesh-system/envoymesh-controller-manager 0/1 ready, not Available: Deployment does not have minimum availability. kubectl -n envoymesh-system describe deploy/envoymesh-controller-manager; kubectl -n envoymesh-system logs deploy/envoymesh-controller-manager",
			"FAIL operator/leader leader " + holder + " last renewed 2m ago (lease 15s): it is gone or stuck check the operator pods and their logs: kubectl -n envoymesh-system logs deploy/envoymesh-controller-manager; another replica takes over once the lease expires",
			"FAIL servicemeshes 0/1 healthy in namespace check-broken see the lines below",
			"FAIL meshservices 0/1 healthy in namespace check-broken see the lines below",
			"FAIL servicemesh/check-broken/mesh RoutesResolved=False NotAllowed: MeshService [payments/billing] of another namespace does not consent to this gateway (it needs spec.allowFrom naming this namespace); its routes answer 403 until it does add spec.allowFrom {namespace: check-broken} to the MeshService named (or route elsewhere)",
			"FAIL meshservice/check-broken/web Ready=False SidecarsNotReady: 1/2 sidecars synced kubectl envoymesh status -n check-broken (per-pod state and reason)",
			"FAIL meshservice/check-broken/web UpstreamsResolved=False UpstreamNotFound: MeshService [check-broken/ghost] not found create the MeshService named, or correct spec.upstreams",
			"FAIL identity/trust-bundle no ClusterTrustBundle of signer mesh.envoymesh.io/identity: pods cannot verify each other's certificates the operator publishes it once it has loaded its CA: check the CA Secret and kubectl -n envoymesh-system logs deploy/envoymesh-controller-manager",
			"OK identity/ca-secret CA Secret envoymesh-system/envoymesh-identity-ca present -",
			"FAIL identity/signer 1 PodCertificateRequest(s) pending over 1m0s: check-ok/a-1 (pod a-1) for 2m the signer runs in the leader only: check operator/leader above, the CA Secret, and kubectl -n envoymesh-system logs deploy/envoymesh-controller-manager",
			"WARN identity/signer 1 denied: check-broken/web-1 (pod web-1): NotAMember: pod web-1 is no MeshService's the pod is not one the operator gives an identity (not of a MeshService, or asks for something it may not have): see the reason; kubectl get pcr -A",
		}))

		By("giving the same verdicts as JSON")
		out, err = runAt(later, "check", "-n", broken, "-o", "json")
		Expect(err).To(HaveOccurred())
		var r CheckReport
		Expect(json.Unmarshal([]byte(out), &r)).To(Succeed())
		Expect(r.Failed).To(Equal(10))
		Expect(r.Warnings).To(Equal(1))
		Expect(r.Findings).To(ContainElement(Finding{Verdict: VerdictFail, Check: "crd/servicemeshes.mesh.envoymesh.io", Detail: "outdated: v1alpha1 lacks spec.tracing",
			Fix: "install the CRDs of this release: kubectl apply --server-side -k config/crd (or `make install`)"}))
	})

	It("fails when there is no operator and no leader", func() {
		out, err := run("check", "-n", ok, "--operator-namespace", "elsewhere")
		Expect(err).To(HaveOccurred())
		Expect(lines(out)).To(ContainElements(
			"FAIL operator/deployment no Deployment envoymesh-controller-manager (nor one labelled app.kubernetes.io/name=envoymesh-operator) in namespace elsewhere install it: kubectl apply -k config/default (or `make deploy`, or through OLM); pass --operator-namespace/--operator-deployment if it runs elsewhere",
			"FAIL operator/leader no Lease elsewhere/envoymesh-operator.mesh.envoymesh.io: no operator has ever been elected leader the operator must run with --leader-elect (config/manager does); check its logs: kubectl -n elsewhere logs deploy/envoymesh-controller-manager",
		))
	})
})

var _ = Describe("check, with the operator running outside the cluster", func() {
	It("warns, not fails, when there is no Deployment but a live leader (make demo, make run)", func() {
		local := "local-operator"
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: local}})).To(Succeed())
		now := time.Now()
		Expect(k8sClient.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: local, Name: LeaderElectionID},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("laptop_1234"), LeaseDurationSeconds: ptr.To[int32](15),
				RenewTime: ptr.To(metav1.NewMicroTime(now.Add(-2 * time.Second)))},
		})).To(Succeed())
		out, _ := runAt(now, "check", "--operator-namespace", local)
		Expect(lines(out)).To(ContainElement(
			"WARN operator/deployment no Deployment envoymesh-controller-manager in namespace local-operator, but a live leader renews the Lease: the operator runs outside the cluster nothing to do for a local run; in a cluster: install it: kubectl apply -k config/default (or `make deploy`, or through OLM); pass --operator-namespace/--operator-deployment if it runs elsewhere"))
		Expect(lines(out)).To(ContainElement(HavePrefix("OK operator/leader")))
	})
})

// podCertificateRequest is what the kubelet files for a pod (which it creates)
// of signer mesh.envoymesh.io/identity.
func podCertificateRequest(ns, podName string) *certificatesv1.PodCertificateRequest {
	GinkgoHelper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: podName}}
	Expect(k8sClient.Create(ctx, sa)).To(Succeed())
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: podName},
		Spec: corev1.PodSpec{ServiceAccountName: sa.Name, NodeName: "node-1", Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	Expect(k8sClient.Create(ctx, pod)).To(Succeed())
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	Expect(err).NotTo(HaveOccurred())
	return &certificatesv1.PodCertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: podName},
		Spec: certificatesv1.PodCertificateRequestSpec{
			SignerName: SignerName, PodName: pod.Name, PodUID: pod.UID,
			ServiceAccountName: sa.Name, ServiceAccountUID: sa.UID,
			NodeName: "node-1", NodeUID: "node-uid", MaxExpirationSeconds: ptr.To[int32](86400),
			StubPKCS10Request: csr,
		},
	}
}

var _ client.Object = (*certificatesv1.PodCertificateRequest)(nil)
