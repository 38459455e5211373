package objects

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
)

func testMeshService() *meshv1alpha1.MeshService {
	return &meshv1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Name: "service-a", Namespace: "shop", UID: "uid-1"},
		Spec: meshv1alpha1.MeshServiceSpec{
			Mesh:        "default",
			Replicas:    ptr.To[int32](2),
			Port:        8081,
			ServicePort: 8786,
			Protocol:    meshv1alpha1.ProtocolHTTP,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "a"}, Annotations: map[string]string{"note": "kept"}},
				Spec: corev1.PodSpec{
					InitContainers: []corev1.Container{{Name: "migrate", Image: "migrate:1"}},
					Containers:     []corev1.Container{{Name: "service-a", Image: "servicea:0.6"}},
					Volumes:        []corev1.Volume{{Name: "data"}},
				},
			},
		},
	}
}

func TestOwnedByMeshService(t *testing.T) {
	ms := testMeshService()
	cfg := &envoyconfig.Output{Bootstrap: []byte("b"), Listeners: []byte("l"), Clusters: []byte("c"), ConfigVersion: "v1", BootstrapHash: "h1"}
	for _, obj := range []metav1.Object{ConfigMap(ms, cfg), Service(ms), Deployment(ms, DefaultSidecar("envoy:1"), "h1", true)} {
		refs := obj.GetOwnerReferences()
		if len(refs) != 1 || refs[0].UID != "uid-1" || !ptr.Deref(refs[0].Controller, false) || refs[0].Kind != "MeshService" {
			t.Errorf("%s: owner references %+v, want one controller reference to the MeshService", obj.GetName(), refs)
		}
		if obj.GetNamespace() != "shop" || obj.GetLabels()[ServiceLabel] != "service-a" {
			t.Errorf("%s: namespace %q labels %v", obj.GetName(), obj.GetNamespace(), obj.GetLabels())
		}
	}
}

func TestConfigMap(t *testing.T) {
	cfg := &envoyconfig.Output{Bootstrap: []byte("b"), Listeners: []byte("l"), Clusters: []byte("c"), ConfigVersion: "v1"}
	cm := ConfigMap(testMeshService(), cfg)
	if cm.Name != "service-a-envoy" {
		t.Errorf("name %q", cm.Name)
	}
	want := map[string]string{"envoy.yaml": "b", "lds.yaml": "l", "cds.yaml": "c"}
	if d := cmp.Diff(want, cm.Data); d != "" {
		t.Errorf("data (-want +got):\n%s", d)
	}
	if cm.Annotations[ConfigVersionAnnotation] != "v1" {
		t.Errorf("annotations %v", cm.Annotations)
	}

	// With an identity, the SDS files join them, under the names the TLS
	// contexts read.
	cfg.SDSIdentity, cfg.SDSTrust = []byte("i"), []byte("t")
	want["sds-identity.yaml"], want["sds-trust.yaml"] = "i", "t"
	if d := cmp.Diff(want, ConfigMap(testMeshService(), cfg).Data); d != "" {
		t.Errorf("data with SDS files (-want +got):\n%s", d)
	}
}

func TestService(t *testing.T) {
	tests := []struct {
		protocol    meshv1alpha1.Protocol
		name        string
		appProtocol *string
	}{
		{meshv1alpha1.ProtocolHTTP, "http", ptr.To("http")},
		{meshv1alpha1.ProtocolHTTP2, "http2", ptr.To("kubernetes.io/h2c")},
		{meshv1alpha1.ProtocolGRPC, "grpc", ptr.To("kubernetes.io/h2c")},
		{meshv1alpha1.ProtocolTCP, "tcp", nil},
	}
	for _, tt := range tests {
		t.Run(string(tt.protocol), func(t *testing.T) {
			ms := testMeshService()
			ms.Spec.Protocol = tt.protocol
			svc := Service(ms)
			if svc.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("clusterIP %q, want headless", svc.Spec.ClusterIP)
			}
			want := []corev1.ServicePort{{Name: tt.name, Protocol: corev1.ProtocolTCP, AppProtocol: tt.appProtocol, Port: 8786, TargetPort: intstr.FromInt32(8786)}}
			if d := cmp.Diff(want, svc.Spec.Ports); d != "" {
				t.Errorf("ports (-want +got):\n%s", d)
			}
			if d := cmp.Diff(map[string]string{ServiceLabel: "service-a"}, svc.Spec.Selector); d != "" {
				t.Errorf("selector (-want +got):\n%s", d)
			}
		})
	}
}

func TestDeploymentAddsNativeSidecar(t *testing.T) {
	ms := testMeshService()
	dep := Deployment(ms, DefaultSidecar("envoy:1"), "hash-1", true)
	spec := dep.Spec.Template.Spec

	if *dep.Spec.Replicas != 2 {
		t.Errorf("replicas %d", *dep.Spec.Replicas)
	}
	if d := cmp.Diff(&metav1.LabelSelector{MatchLabels: map[string]string{ServiceLabel: "service-a"}}, dep.Spec.Selector); d != "" {
		t.Errorf("selector (-want +got):\n%s", d)
	}
	if l := dep.Spec.Template.Labels; l["app"] != "a" || l[ServiceLabel] != "service-a" {
		t.Errorf("template labels %v: want the user's plus ours", l)
	}
	if a := dep.Spec.Template.Annotations; a["note"] != "kept" || a[BootstrapHashAnnotation] != "hash-1" {
		t.Errorf("template annotations %v", a)
	}
	if len(spec.InitContainers) != 2 || spec.InitContainers[0].Name != SidecarName || spec.InitContainers[1].Name != "migrate" {
		t.Fatalf("init containers %v: want envoy first, then the user's", names(spec.InitContainers))
	}
	if len(spec.Containers) != 1 || spec.Containers[0].Name != "service-a" {
		t.Errorf("containers %v: want only the user's", names(spec.Containers))
	}
	envoy := spec.InitContainers[0]
	if envoy.RestartPolicy == nil || *envoy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("restartPolicy %v: a native sidecar needs Always", envoy.RestartPolicy)
	}
	if p := envoy.StartupProbe.HTTPGet; p.Path != "/ready" || p.Port.IntValue() != 15021 {
		t.Errorf("startup probe %+v", p)
	}
	wantArgs := []string{"-c", "/etc/envoy/envoy.yaml", "--log-level", "info"}
	if d := cmp.Diff(wantArgs, envoy.Args); d != "" {
		t.Errorf("args (-want +got):\n%s", d)
	}
	if !hasPort(envoy.Ports, 8786) || !hasPort(envoy.Ports, 15021) || hasPort(envoy.Ports, 9901) {
		t.Errorf("ports %+v: want servicePort and 15021, never the admin port", envoy.Ports)
	}
	if d := cmp.Diff(RestrictedSecurityContext(), envoy.SecurityContext); d != "" {
		t.Errorf("security context (-want +got):\n%s", d)
	}
	if len(spec.Volumes) != 3 || spec.Volumes[1].ConfigMap == nil || spec.Volumes[1].ConfigMap.Name != "service-a-envoy" ||
		spec.Volumes[2].Name != IdentityVolumeName {
		t.Errorf("volumes %+v: want the user's plus the config and identity volumes", spec.Volumes)
	}

	if len(ms.Spec.Template.Spec.InitContainers) != 1 || ms.Spec.Template.Labels[ServiceLabel] != "" {
		t.Error("Deployment modified the MeshService's own template")
	}
}

func TestDeploymentIsDeterministicAndRollsOnlyOnBootstrapChange(t *testing.T) {
	ms := testMeshService()
	a := Deployment(ms, DefaultSidecar("envoy:1"), "h1", true)
	b := Deployment(ms, DefaultSidecar("envoy:1"), "h1", true)
	if d := cmp.Diff(a, b); d != "" {
		t.Errorf("same inputs, different Deployments:\n%s", d)
	}
	c := Deployment(ms, DefaultSidecar("envoy:1"), "h2", true)
	if cmp.Equal(a.Spec.Template, c.Spec.Template) {
		t.Error("a bootstrap change must change the pod template")
	}
}

func TestRestrictedSecurityContext(t *testing.T) {
	sc := RestrictedSecurityContext()
	if !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem ||
		sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault ||
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
		t.Errorf("not restricted: %+v", sc)
	}
}

func TestResolveSidecar(t *testing.T) {
	small := corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}}
	tests := []struct {
		name     string
		mesh, ms *meshv1alpha1.SidecarSettings
		want     Sidecar
	}{
		{"built-in defaults", nil, nil, DefaultSidecar("envoy:default")},
		{"mesh over defaults", &meshv1alpha1.SidecarSettings{Image: "envoy:mesh", Concurrency: ptr.To[int32](2)}, nil,
			Sidecar{Image: "envoy:mesh", LogLevel: "info", Resources: DefaultSidecar("").Resources, Concurrency: ptr.To[int32](2)}},
		{"service over mesh, field by field",
			&meshv1alpha1.SidecarSettings{Image: "envoy:mesh", LogLevel: "debug"},
			&meshv1alpha1.SidecarSettings{LogLevel: "warning", Resources: &small},
			Sidecar{Image: "envoy:mesh", LogLevel: "warning", Resources: small}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ResolveSidecar(DefaultSidecar("envoy:default"), tt.mesh, tt.ms)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestConcurrencyFlag(t *testing.T) {
	sc := DefaultSidecar("envoy:1")
	sc.Concurrency = ptr.To[int32](2)
	args := Deployment(testMeshService(), sc, "h", true).Spec.Template.Spec.InitContainers[0].Args
	if d := cmp.Diff([]string{"-c", "/etc/envoy/envoy.yaml", "--log-level", "info", "--concurrency", "2"}, args); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func names(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func hasPort(ports []corev1.ContainerPort, p int32) bool {
	for _, cp := range ports {
		if cp.ContainerPort == p {
			return true
		}
	}
	return false
}

// kube-score (make lint-manifests) fails a container without memory and
// ephemeral-storage limits or without an ephemeral-storage request.
func TestDefaultSidecarHasLimitsButNoCPULimit(t *testing.T) {
	r := DefaultSidecar("").Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		if _, ok := r.Requests[name]; !ok {
			t.Errorf("no %s request in %v", name, r.Requests)
		}
	}
	for _, name := range []corev1.ResourceName{corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		lim, ok := r.Limits[name]
		if !ok {
			t.Errorf("no %s limit in %v", name, r.Limits)
			continue
		}
		if req := r.Requests[name]; lim.Cmp(req) < 0 {
			t.Errorf("%s limit %s below its request %s", name, lim.String(), req.String())
		}
	}
	if _, ok := r.Limits[corev1.ResourceCPU]; ok {
		t.Errorf("CPU limit %v: a throttled proxy slows every request", r.Limits)
	}
	// sidecar.resources replaces the defaults whole, limits included.
	own := corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}
	got := ResolveSidecar(DefaultSidecar(""), &meshv1alpha1.SidecarSettings{Resources: &own}).Resources
	if d := cmp.Diff(own, got); d != "" {
		t.Errorf("overridden resources (-want +got):\n%s", d)
	}
}
