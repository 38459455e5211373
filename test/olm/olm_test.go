//go:build olm

// Package olm installs the operator through OLM on a local kwok cluster (`make
// test-olm`): OLM v0.46.0's olm and catalog operators as local processes, a
// file-based catalog rendered from bundle/ served by opm on 127.0.0.1, and a
// CatalogSource + OperatorGroup + Subscription. kwok fakes the operator's pod, so
// the suite proves OLM's install path (resolution, InstallPlan, CRDs, RBAC, CSV,
// Deployment), not the operator's behaviour, which test/e2e covers.
package olm

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	installNamespace = "envoymesh-system"
	csvName          = "envoymesh-operator.v0.1.0"
	deploymentName   = "envoymesh-controller-manager"
	within           = 4 * time.Minute
)

var (
	root, stateDir string
	k8sClient      client.Client
)

func TestOLM(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "envoymesh-operator OLM install suite")
}

func olmScript(args ...string) {
	GinkgoHelper()
	cmd := exec.Command(filepath.Join(root, "hack", "olm.sh"), args...)
	cmd.Env = append(os.Environ(), "STATE_DIR="+stateDir)
	cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
	Expect(cmd.Run()).To(Succeed(), "hack/olm.sh %v", args)
}

var _ = BeforeSuite(func() {
	var err error
	root, err = filepath.Abs(filepath.Join("..", ".."))
	Expect(err).NotTo(HaveOccurred())
	stateDir = filepath.Join(root, "bin", "state", "olm")
	olmScript("down")
	olmScript("up")

	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(apiextensionsv1.AddToScheme(scheme)).To(Succeed())
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(stateDir, "kubeconfig"))
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
})

// failed records a failed spec, so AfterSuite can print the logs that explain it.
var failed bool

var _ = AfterEach(func() {
	if CurrentSpecReport().Failed() {
		failed = true
	}
})

var _ = AfterSuite(func() {
	if root == "" {
		return
	}
	for _, name := range []string{"olm-operator", "catalog-operator", "opm"} {
		if b, err := os.ReadFile(filepath.Join(stateDir, "logs", name+".log")); err == nil && failed {
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			GinkgoWriter.Printf("---- %s.log (tail) ----\n%s\n", name, b)
		}
	}
	if os.Getenv("E2E_KEEP") == "" {
		olmScript("down")
	}
})

func get(ctx context.Context, gvk schema.GroupVersionKind, ns, name string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u, k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, u)
}

func str(g Gomega, u *unstructured.Unstructured, path ...string) string {
	s, _, err := unstructured.NestedString(u.Object, path...)
	g.Expect(err).NotTo(HaveOccurred())
	return s
}

var (
	catalogSourceGVK = schema.GroupVersionKind{Group: "operators.coreos.com", Version: "v1alpha1", Kind: "CatalogSource"}
	subscriptionGVK  = schema.GroupVersionKind{Group: "operators.coreos.com", Version: "v1alpha1", Kind: "Subscription"}
	installPlanGVK   = schema.GroupVersionKind{Group: "operators.coreos.com", Version: "v1alpha1", Kind: "InstallPlan"}
	csvGVK           = schema.GroupVersionKind{Group: "operators.coreos.com", Version: "v1alpha1", Kind: "ClusterServiceVersion"}
)

var _ = Describe("installing envoymesh-operator through OLM", Ordered, func() {
	ctx := context.Background()

	BeforeAll(func() { olmScript("subscribe") })

	It("connects to the file-based catalog served by opm on 127.0.0.1", func() {
		Eventually(func(g Gomega) {
			cs, err := get(ctx, catalogSourceGVK, "olm", "envoymesh-local")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(str(g, cs, "status", "connectionState", "lastObservedState")).To(Equal("READY"))
		}).WithTimeout(within).Should(Succeed())
	})

	It("resolves the Subscription into a completed InstallPlan without a bundle-unpack Job", func() {
		var plan string
		Eventually(func(g Gomega) {
			sub, err := get(ctx, subscriptionGVK, installNamespace, "envoymesh-operator")
			g.Expect(err).NotTo(HaveOccurred())
			plan = str(g, sub, "status", "installPlanRef", "name")
			g.Expect(plan).NotTo(BeEmpty(), "status.installPlanRef: %v", sub.Object["status"])
			ip, err := get(ctx, installPlanGVK, installNamespace, plan)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(str(g, ip, "status", "phase")).To(Equal("Complete"), "InstallPlan status: %v", ip.Object["status"])
		}).WithTimeout(within).Should(Succeed())

		jobs := &batchv1.JobList{}
		Expect(k8sClient.List(ctx, jobs)).To(Succeed())
		Expect(jobs.Items).To(BeEmpty(), "the bundle is inline in the catalog: nothing to unpack")
	})

	It("installs the CRDs and brings the CSV to Succeeded with the operator Deployment Available", func() {
		for _, name := range []string{"meshservices.mesh.envoymesh.io", "servicemeshes.mesh.envoymesh.io"} {
			Expect(k8sClient.Get(ctx, types.NamespacedName{Name: name}, &apiextensionsv1.CustomResourceDefinition{})).To(Succeed(), name)
		}
		Eventually(func(g Gomega) {
			csv, err := get(ctx, csvGVK, installNamespace, csvName)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(str(g, csv, "status", "phase")).To(Equal("Succeeded"), "CSV status: %s / %s",
				str(g, csv, "status", "reason"), str(g, csv, "status", "message"))
			dep := &appsv1.Deployment{}
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: installNamespace, Name: deploymentName}, dep)).To(Succeed())
			g.Expect(dep.Status.AvailableReplicas).To(BeNumerically(">=", 1))
		}).WithTimeout(within).Should(Succeed())
	})
})
