package plugin

import (
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/envoymesh/envoymesh-operator/cmd/kubectl-envoymesh/crds"
)

var _ = Describe("check's CRD comparison", func() {
	established := apiextensionsv1.CustomResourceDefinitionStatus{Conditions: []apiextensionsv1.CustomResourceDefinitionCondition{
		{Type: apiextensionsv1.Established, Status: apiextensionsv1.ConditionTrue}}}

	It("warns when the installed CRD is newer than the plugin: fields and versions it does not know", func() {
		embedded, err := crds.Load()
		Expect(err).NotTo(HaveOccurred())
		want := &embedded[1]
		got := want.DeepCopy()
		got.Status = established
		spec := got.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
		spec.Properties["futureField"] = apiextensionsv1.JSONSchemaProps{Type: "string"}
		got.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"] = spec
		next := *got.Spec.Versions[0].DeepCopy()
		next.Name, next.Storage = "v1beta1", false
		got.Spec.Versions = append(got.Spec.Versions, next)
		Expect(compareCRD(want, got)).To(Equal(Finding{VerdictWarn, "crd/" + want.Name,
			"newer than this plugin: v1alpha1 has fields this plugin does not know: spec.futureField; serves version v1beta1 this plugin does not know",
			"upgrade kubectl-envoymesh to the operator's release"}))
	})

	It("fails on a validation-only difference and on a CRD not Established", func() {
		embedded, err := crds.Load()
		Expect(err).NotTo(HaveOccurred())
		want := &embedded[0]
		got := want.DeepCopy()
		got.Status = established
		spec := got.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
		spec.Required = append(spec.Required, "somethingElse")
		got.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"] = spec
		Expect(compareCRD(want, got).Detail).To(Equal("outdated: v1alpha1 schema differs (same fields, different validation)"))
		got.Status = apiextensionsv1.CustomResourceDefinitionStatus{}
		Expect(compareCRD(want, got).Detail).To(Equal("installed but not Established: the API server does not serve it"))
	})
})

var _ = Describe("graph's refusal reasons", func() {
	It("cuts each callee's reason out of UpstreamsAuthorized's message", func() {
		msg := "[a/x does not consent to namespace n: it needs spec.allowFrom {namespace: n} (or with serviceAccount: s) b/y requires mTLS and ServiceMesh m has spec.mtls.mode Disabled]"
		refused := []string{"a/x", "b/y"}
		Expect(refusalReason(msg, "a/x", refused)).To(Equal("a/x does not consent to namespace n: it needs spec.allowFrom {namespace: n} (or with serviceAccount: s)"))
		Expect(refusalReason(msg, "b/y", refused)).To(Equal("b/y requires mTLS and ServiceMesh m has spec.mtls.mode Disabled"))
		Expect(refusalReason(msg, "c/z", refused)).To(Equal("the callee will refuse this caller (UpstreamsAuthorized)"))
	})
})

var _ = Describe("check as a user who may read only the mesh resources", func() {
	It("skips, saying so, what it may not read", func() {
		role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "mesh-viewer"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"mesh.envoymesh.io"}, Resources: []string{"servicemeshes", "meshservices"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, Verbs: []string{"get"}},
		}}
		Expect(k8sClient.Create(ctx, role)).To(Succeed())
		Expect(k8sClient.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "mesh-viewer"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "mesh-viewer"},
			Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "viewer"}}})).To(Succeed())
		user, err := testEnv.AddUser(envtest.User{Name: "viewer"}, nil)
		Expect(err).NotTo(HaveOccurred())
		kc, err := user.KubeConfig()
		Expect(err).NotTo(HaveOccurred())
		path := filepath.Join(GinkgoT().TempDir(), "viewer")
		Expect(os.WriteFile(path, kc, 0o600)).To(Succeed())

		createNamespace("check-viewer")
		meshService("check-viewer", "a", "", nil, meshv1alpha1MeshServiceStatusReady())
		out, err := runAs(path, time.Now(), "check", "-n", "check-viewer")
		Expect(err).NotTo(HaveOccurred())
		Expect(lines(out)).To(ContainElements(
			"SKIP operator/deployment not allowed to read Deployments in envoymesh-system run as a user who may (kubectl auth can-i), or ignore this line",
			"SKIP operator/leader not allowed to read Lease envoymesh-system/envoymesh-operator.mesh.envoymesh.io run as a user who may (kubectl auth can-i), or ignore this line",
			"OK meshservices 1/1 healthy in namespace check-viewer -",
			"SKIP identity/trust-bundle not allowed to read ClusterTrustBundles run as a user who may (kubectl auth can-i), or ignore this line",
			"SKIP identity/signer not allowed to read PodCertificateRequests run as a user who may (kubectl auth can-i), or ignore this line",
		))
	})
})
