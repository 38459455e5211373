package controllers

import (
	"bytes"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// The API server's PodSecurity admission decides here, not a hand-written check:
// pods built from our templates are created in a namespace that enforces the
// restricted standard.
var _ = Describe("Pod security of what the operator runs", func() {
	var ns string
	BeforeEach(func() {
		ns = "psa-" + newNamespace()
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
		}}})).To(Succeed())
	})

	podFrom := func(name string, tmpl corev1.PodTemplateSpec) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: tmpl.Labels}, Spec: tmpl.Spec}
	}
	cfg := &envoyconfig.Output{BootstrapHash: "h"}
	restrictedApp := corev1.Container{Name: "app", Image: "example.com/app:1", SecurityContext: &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false), RunAsNonRoot: ptr.To(true),
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}}

	It("admits a meshed pod whose app is restricted: the sidecar adds nothing the standard forbids", func() {
		ms := meshService(ns, "web", 8080, 15006)
		ms.Spec.Template.Spec.Containers = []corev1.Container{restrictedApp}
		dep := objects.Deployment(ms, objects.DefaultSidecar(testEnvoyImage), cfg.BootstrapHash)
		Expect(k8sClient.Create(ctx, podFrom("web", dep.Spec.Template))).To(Succeed())
	})

	It("names the app container, never the sidecar, when the app breaks the standard", func() {
		ms := meshService(ns, "loose", 8080, 15006) // its app sets no security context at all
		dep := objects.Deployment(ms, objects.DefaultSidecar(testEnvoyImage), cfg.BootstrapHash)
		err := k8sClient.Create(ctx, podFrom("loose", dep.Spec.Template))
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring(`"app"`))
		Expect(err.Error()).NotTo(ContainSubstring(`"envoy"`))
	})

	It("admits the gateway pod", func() {
		mesh := &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "edge"},
			Spec: meshv1alpha1.ServiceMeshSpec{Gateway: &meshv1alpha1.Gateway{Enabled: true}}}
		dep := objects.GatewayDeployment(mesh, objects.DefaultSidecar(testEnvoyImage), "h")
		Expect(k8sClient.Create(ctx, podFrom("edge-gateway", dep.Spec.Template))).To(Succeed())
	})

	It("admits the manager pod of config/manager", func() {
		data, err := os.ReadFile(filepath.Join("..", "config", "manager", "manager.yaml"))
		Expect(err).NotTo(HaveOccurred())
		var dep *appsv1.Deployment
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			obj := &appsv1.Deployment{}
			if dec.Decode(obj) != nil {
				break
			}
			if obj.Kind == "Deployment" {
				dep = obj
			}
		}
		Expect(dep).NotTo(BeNil())
		Expect(k8sClient.Create(ctx, podFrom("manager", dep.Spec.Template))).To(Succeed())
	})
})
