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
	"github.com/envoymesh/envoymesh-operator/internal/kubeletdouble"
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
		dep := objects.Deployment(ms, objects.DefaultSidecar(testEnvoyImage), cfg.BootstrapHash, true)
		Expect(k8sClient.Create(ctx, podFrom("web", dep.Spec.Template))).To(Succeed())
	})

	// The kubelet decides the identity files' mode and owner from the pod
	// (kubeletdouble.ProjectedFileAccess follows projected.go and
	// SetVolumeOwnership); restricted forbids the root user, so the sidecar's
	// non-root user must be able to read them in every pod shape the standard
	// admits: no fsGroup (0644 root:root), an fsGroup (0640 root:fsGroup, and the
	// fsGroup is a supplemental group of every container) and an app that runs as
	// the sidecar's own user (fsUser: 0600 owned by it).
	DescribeTable("lets the sidecar's non-root user read its certificate and trust bundle",
		func(name string, shape func(*corev1.PodSpec)) {
			ms := meshService(ns, name, 8080, 15006)
			ms.Spec.Template.Spec.Containers = []corev1.Container{restrictedApp}
			shape(&ms.Spec.Template.Spec)
			pod := podFrom(name, objects.Deployment(ms, objects.DefaultSidecar(testEnvoyImage), cfg.BootstrapHash, true).Spec.Template)
			Expect(k8sClient.Create(ctx, pod)).To(Succeed(), "restricted admission")

			envoy := &pod.Spec.InitContainers[0]
			var vol *corev1.ProjectedVolumeSource
			for _, v := range pod.Spec.Volumes { // as admitted, with the API server's defaults
				if v.Name == objects.IdentityVolumeName {
					vol = v.Projected
				}
			}
			Expect(vol).NotTo(BeNil())
			access := kubeletdouble.ProjectedFileAccess(pod, vol)
			Expect(kubeletdouble.CanRead(pod, envoy, access)).To(BeTrue(), "the sidecar cannot read a file with %+v", access)
		},
		Entry("no fsGroup", "plain", func(*corev1.PodSpec) {}),
		Entry("an fsGroup", "fsgroup", func(s *corev1.PodSpec) {
			s.SecurityContext = &corev1.PodSecurityContext{FSGroup: ptr.To[int64](2000)}
		}),
		Entry("every container as the sidecar's user", "sameuser", func(s *corev1.PodSpec) {
			s.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](65532), RunAsGroup: ptr.To[int64](65532)}
		}),
	)

	It("names the app container, never the sidecar, when the app breaks the standard", func() {
		ms := meshService(ns, "loose", 8080, 15006) // its app sets no security context at all
		dep := objects.Deployment(ms, objects.DefaultSidecar(testEnvoyImage), cfg.BootstrapHash, true)
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
