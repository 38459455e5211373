package objects

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
)

func testServiceMesh() *meshv1alpha1.ServiceMesh {
	return &meshv1alpha1.ServiceMesh{
		ObjectMeta: metav1.ObjectMeta{Name: "edge", Namespace: "shop", UID: "mesh-uid"},
		Spec: meshv1alpha1.ServiceMeshSpec{Gateway: &meshv1alpha1.Gateway{
			Enabled: true,
			Routes:  []meshv1alpha1.GatewayRoute{{Prefix: "/", Service: "service-a"}},
		}},
	}
}

func TestGatewayObjectsOwnedByServiceMesh(t *testing.T) {
	mesh := testServiceMesh()
	cfg := &envoyconfig.Output{Bootstrap: []byte("b"), Listeners: []byte("l"), Clusters: []byte("c"), ConfigVersion: "v1", BootstrapHash: "h1"}
	wantLabels := map[string]string{
		GatewayLabel:                   "edge",
		"app.kubernetes.io/name":       "edge-gateway",
		"app.kubernetes.io/managed-by": "envoymesh-operator",
		"app.kubernetes.io/part-of":    "edge",
	}
	tests := []struct {
		obj  metav1.Object
		name string
	}{
		{GatewayConfigMap(mesh, cfg), "edge-gateway-envoy"},
		{GatewayService(mesh), "edge-gateway"},
		{GatewayDeployment(mesh, DefaultSidecar("envoy:1"), "h1"), "edge-gateway"},
		{GatewayNetworkPolicy(mesh), "edge-gateway"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			refs := tc.obj.GetOwnerReferences()
			if len(refs) != 1 || refs[0].UID != "mesh-uid" || !ptr.Deref(refs[0].Controller, false) ||
				refs[0].Kind != "ServiceMesh" || refs[0].APIVersion != meshv1alpha1.GroupVersion.String() {
				t.Errorf("owner references %+v, want one controller reference to the ServiceMesh", refs)
			}
			if tc.obj.GetName() != tc.name || tc.obj.GetNamespace() != "shop" {
				t.Errorf("object %s/%s, want shop/%s", tc.obj.GetNamespace(), tc.obj.GetName(), tc.name)
			}
			if d := cmp.Diff(wantLabels, tc.obj.GetLabels()); d != "" {
				t.Errorf("labels (-want +got):\n%s", d)
			}
		})
	}
}

func TestGatewayNames(t *testing.T) {
	mesh := testServiceMesh()
	if got := GatewayName(mesh); got != "edge-gateway" {
		t.Errorf("GatewayName %q", got)
	}
	if got := GatewayConfigMapName(mesh); got != "edge-gateway-envoy" {
		t.Errorf("GatewayConfigMapName %q", got)
	}
}

func TestGatewayConfigMap(t *testing.T) {
	cfg := &envoyconfig.Output{Bootstrap: []byte("b"), Listeners: []byte("l"), Clusters: []byte("c"), ConfigVersion: "v1"}
	cm := GatewayConfigMap(testServiceMesh(), cfg)
	want := map[string]string{"envoy.yaml": "b", "lds.yaml": "l", "cds.yaml": "c"}
	if d := cmp.Diff(want, cm.Data); d != "" {
		t.Errorf("data (-want +got):\n%s", d)
	}
	if cm.Annotations[ConfigVersionAnnotation] != "v1" {
		t.Errorf("annotations %v", cm.Annotations)
	}
}

func TestGatewayService(t *testing.T) {
	tests := []struct {
		name     string
		gateway  *meshv1alpha1.Gateway
		wantType corev1.ServiceType
		wantPort int32
	}{
		{"no gateway spec", nil, corev1.ServiceTypeClusterIP, 80},
		{"defaults", &meshv1alpha1.Gateway{Enabled: true}, corev1.ServiceTypeClusterIP, 80},
		{"load balancer", &meshv1alpha1.Gateway{Port: 8443, ServiceType: corev1.ServiceTypeLoadBalancer}, corev1.ServiceTypeLoadBalancer, 8443},
		{"node port", &meshv1alpha1.Gateway{Port: 80, ServiceType: corev1.ServiceTypeNodePort}, corev1.ServiceTypeNodePort, 80},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mesh := testServiceMesh()
			mesh.Spec.Gateway = tc.gateway
			svc := GatewayService(mesh)
			if svc.Spec.Type != tc.wantType || svc.Spec.ClusterIP != "" {
				t.Errorf("type %q clusterIP %q, want %q with an allocated IP", svc.Spec.Type, svc.Spec.ClusterIP, tc.wantType)
			}
			want := []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: tc.wantPort, TargetPort: intstr.FromInt32(8080)}}
			if d := cmp.Diff(want, svc.Spec.Ports); d != "" {
				t.Errorf("ports (-want +got):\n%s", d)
			}
			if d := cmp.Diff(map[string]string{GatewayLabel: "edge"}, svc.Spec.Selector); d != "" {
				t.Errorf("selector (-want +got):\n%s", d)
			}
		})
	}
}

func TestGatewayDeploymentReplicas(t *testing.T) {
	for name, tc := range map[string]struct {
		gateway *meshv1alpha1.Gateway
		want    int32
	}{
		"no gateway spec": {nil, 1},
		"unset":           {&meshv1alpha1.Gateway{}, 1},
		"three":           {&meshv1alpha1.Gateway{Replicas: ptr.To[int32](3)}, 3},
		"scaled to zero":  {&meshv1alpha1.Gateway{Replicas: ptr.To[int32](0)}, 0},
	} {
		t.Run(name, func(t *testing.T) {
			mesh := testServiceMesh()
			mesh.Spec.Gateway = tc.gateway
			if got := *GatewayDeployment(mesh, DefaultSidecar("envoy:1"), "h").Spec.Replicas; got != tc.want {
				t.Errorf("replicas %d, want %d", got, tc.want)
			}
		})
	}
}

func TestGatewayDeployment(t *testing.T) {
	mesh := testServiceMesh()
	sc := DefaultSidecar("envoy:1")
	sc.Concurrency = ptr.To[int32](2)
	dep := GatewayDeployment(mesh, sc, "hash-1")
	tmpl := dep.Spec.Template
	spec := tmpl.Spec

	selector, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{GatewayLabel: "edge"}, dep.Spec.Selector.MatchLabels); d != "" {
		t.Errorf("selector (-want +got):\n%s", d)
	}
	if !selector.Matches(labels.Set(tmpl.Labels)) || tmpl.Labels["app.kubernetes.io/name"] != "edge-gateway" {
		t.Errorf("template labels %v: want the gateway labels, matched by the selector", tmpl.Labels)
	}
	if d := cmp.Diff(map[string]string{
		BootstrapHashAnnotation: "hash-1",
		"prometheus.io/scrape":  "true", "prometheus.io/port": "15021", "prometheus.io/path": "/stats/prometheus",
	}, tmpl.Annotations); d != "" {
		t.Errorf("template annotations (-want +got):\n%s", d)
	}

	if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
		t.Fatalf("containers %v, init containers %v: want exactly one container, envoy", names(spec.Containers), names(spec.InitContainers))
	}
	envoy := spec.Containers[0]
	if envoy.Name != "envoy" || envoy.Image != "envoy:1" || envoy.RestartPolicy != nil {
		t.Errorf("container %q image %q restartPolicy %v: want a regular envoy container", envoy.Name, envoy.Image, envoy.RestartPolicy)
	}
	wantArgs := []string{"-c", "/etc/envoy/envoy.yaml", "--log-level", "info", "--concurrency", "2"}
	if d := cmp.Diff(wantArgs, envoy.Args); d != "" {
		t.Errorf("args (-want +got):\n%s", d)
	}
	wantPorts := []corev1.ContainerPort{
		{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
		{Name: "envoy-status", ContainerPort: 15021, Protocol: corev1.ProtocolTCP},
	}
	if d := cmp.Diff(wantPorts, envoy.Ports); d != "" {
		t.Errorf("ports (-want +got):\n%s", d)
	}
	for what, p := range map[string]*corev1.Probe{"readiness": envoy.ReadinessProbe, "startup": envoy.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/ready" || p.HTTPGet.Port.IntValue() != 15021 {
			t.Errorf("%s probe %+v, want GET :15021/ready", what, p)
		}
	}
	if d := cmp.Diff(DefaultSidecar("").Resources, envoy.Resources); d != "" {
		t.Errorf("resources (-want +got):\n%s", d)
	}
	wantMounts := []corev1.VolumeMount{
		{Name: ConfigVolumeName, MountPath: "/etc/envoy", ReadOnly: true},
		{Name: IdentityVolumeName, MountPath: "/var/run/envoymesh/identity", ReadOnly: true},
	}
	if d := cmp.Diff(wantMounts, envoy.VolumeMounts); d != "" {
		t.Errorf("volume mounts (-want +got):\n%s", d)
	}
	if len(spec.Volumes) != 2 || spec.Volumes[0].Name != ConfigVolumeName || spec.Volumes[0].ConfigMap == nil ||
		spec.Volumes[0].ConfigMap.Name != "edge-gateway-envoy" || spec.Volumes[1].Name != IdentityVolumeName {
		t.Errorf("volumes %+v, want the edge-gateway-envoy ConfigMap and the identity", spec.Volumes)
	}
	if spec.ServiceAccountName != "edge-gateway" {
		t.Errorf("serviceAccountName %q, want edge-gateway", spec.ServiceAccountName)
	}

	// The sidecar and the gateway run Envoy the same way, apart from the port
	// and the sidecar's restart policy.
	sidecar := Deployment(testMeshService(), sc, "hash-1", true).Spec.Template.Spec.InitContainers[0]
	sidecar.RestartPolicy, sidecar.Ports[0], envoy.Ports[0] = nil, corev1.ContainerPort{}, corev1.ContainerPort{}
	if d := cmp.Diff(sidecar, envoy); d != "" {
		t.Errorf("gateway container differs from the sidecar (-sidecar +gateway):\n%s", d)
	}
}

// TestGatewayPodIsRestricted checks what the restricted Pod Security Standard
// checks on a pod like the gateway's.
func TestGatewayPodIsRestricted(t *testing.T) {
	spec := GatewayDeployment(testServiceMesh(), DefaultSidecar("envoy:1"), "h").Spec.Template.Spec
	psc := spec.SecurityContext
	if psc == nil || !ptr.Deref(psc.RunAsNonRoot, false) || psc.SeccompProfile == nil ||
		psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Fatalf("pod security context %+v, want runAsNonRoot and RuntimeDefault seccomp", psc)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("the gateway must not use host namespaces")
	}
	if ptr.Deref(spec.AutomountServiceAccountToken, true) {
		t.Error("the gateway must not mount a service account token it does not need")
	}
	for _, v := range spec.Volumes {
		if v.ConfigMap == nil && v.Projected == nil {
			t.Errorf("volume %q is neither a ConfigMap nor a projected volume", v.Name)
		}
	}
	for _, c := range spec.Containers {
		sc := c.SecurityContext
		if sc == nil {
			t.Fatalf("container %q has no security context", c.Name)
		}
		if !ptr.Deref(sc.RunAsNonRoot, true) || ptr.Deref(sc.RunAsUser, 1) == 0 {
			t.Errorf("container %q may run as root", c.Name)
		}
		if ptr.Deref(sc.AllowPrivilegeEscalation, true) || ptr.Deref(sc.Privileged, false) {
			t.Errorf("container %q may escalate privileges", c.Name)
		}
		if sc.Capabilities == nil || !cmp.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("container %q capabilities %+v, want drop ALL and add none", c.Name, sc.Capabilities)
		}
		if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("container %q overrides the seccomp profile with %q", c.Name, sc.SeccompProfile.Type)
		}
		for _, p := range c.Ports {
			if p.HostPort != 0 {
				t.Errorf("container %q uses host port %d", c.Name, p.HostPort)
			}
			if p.ContainerPort < 1024 {
				t.Errorf("container %q port %d: a non-root Envoy cannot bind it", c.Name, p.ContainerPort)
			}
		}
	}
}

// TestGatewayDeploymentRollsOnlyOnBootstrapChange: routes and replicas reach the
// gateway without restarting it; only a new bootstrap does.
func TestGatewayDeploymentRollsOnlyOnBootstrapChange(t *testing.T) {
	mesh := testServiceMesh()
	sc := DefaultSidecar("envoy:1")
	ref := GatewayDeployment(mesh, sc, "h1")
	if d := cmp.Diff(ref, GatewayDeployment(mesh, sc, "h1")); d != "" {
		t.Errorf("same inputs, different Deployments:\n%s", d)
	}
	if cmp.Equal(ref.Spec.Template, GatewayDeployment(mesh, sc, "h2").Spec.Template) {
		t.Error("a bootstrap change must change the pod template")
	}

	changed := mesh.DeepCopy()
	changed.Spec.Gateway.Routes = append(changed.Spec.Gateway.Routes, meshv1alpha1.GatewayRoute{Prefix: "/b", Service: "service-b"})
	changed.Spec.Gateway.Replicas = ptr.To[int32](5)
	changed.Spec.Gateway.Port = 8443
	changed.Spec.Gateway.ServiceType = corev1.ServiceTypeLoadBalancer
	changed.Spec.Defaults = &meshv1alpha1.TrafficPolicy{LoadBalancer: meshv1alpha1.LoadBalancerRandom}
	if d := cmp.Diff(ref.Spec.Template, GatewayDeployment(changed, sc, "h1").Spec.Template); d != "" {
		t.Errorf("routes, replicas, port or traffic changed the pod template (-want +got):\n%s", d)
	}
}

func TestGatewayNetworkPolicyAdmitsOnlyListenerAndStatusPort(t *testing.T) {
	mesh := testServiceMesh()
	np := GatewayNetworkPolicy(mesh)
	if d := cmp.Diff(GatewaySelectorLabels(mesh), np.Spec.PodSelector.MatchLabels); d != "" {
		t.Errorf("pod selector (-want +got):\n%s", d)
	}
	if !labels.SelectorFromSet(np.Spec.PodSelector.MatchLabels).Matches(labels.Set(GatewayDeployment(mesh, DefaultSidecar(""), "h").Spec.Template.Labels)) {
		t.Error("the policy does not select the gateway's pods")
	}
	if len(np.Spec.PolicyTypes) != 1 || np.Spec.PolicyTypes[0] != "Ingress" {
		t.Errorf("policy types %v, want [Ingress]", np.Spec.PolicyTypes)
	}
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 0 {
		t.Fatalf("ingress %+v: want one rule, from anywhere", np.Spec.Ingress)
	}
	var ports []int32
	for _, p := range np.Spec.Ingress[0].Ports {
		if p.Protocol == nil || *p.Protocol != corev1.ProtocolTCP {
			t.Errorf("port %+v, want TCP", p)
		}
		ports = append(ports, p.Port.IntVal)
	}
	if d := cmp.Diff([]int32{envoyconfig.GatewayListenPort, 15021}, ports); d != "" {
		t.Errorf("ports (-want +got):\n%s", d)
	}
}
