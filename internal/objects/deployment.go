package objects

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
)

// Names of what the operator adds to the application's pod.
const (
	SidecarName      = "envoy"
	ConfigVolumeName = "envoy-config"
	// StatusPortName names the Envoy container's status port (ready, stats).
	StatusPortName = "envoy-status"
	// envoyUID is the nonroot user of the distroless Envoy image.
	envoyUID = 65532
)

// Sidecar is the resolved sidecar configuration: the MeshService's settings over
// the mesh's over the operator's defaults.
type Sidecar struct {
	Image       string
	LogLevel    string
	Resources   corev1.ResourceRequirements
	Concurrency *int32
	// XDS is set in meshes whose delivery is XDS: each Envoy then names itself
	// <pod>.<namespace> (--service-node), so the operator tells its proxies
	// apart on their ADS streams; the bootstrap's node cluster still names the
	// MeshService or gateway whose config it asks for.
	XDS bool
}

// xdsNodeEnv are the variables the node name is made of, from the downward API.
var xdsNodeEnv = []corev1.EnvVar{
	{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
	{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
}

// DefaultSidecar is the operator's default, given the image from its flag. It
// requests 50m CPU, 64Mi memory and 64Mi ephemeral storage, and limits memory to
// 256Mi and ephemeral storage to 256Mi: Envoy's memory grows with its config and
// connections, and its root filesystem is read-only, so what counts against
// ephemeral storage is mostly its stdout log. There is no CPU limit: a throttled
// proxy adds latency to every request of the app. A sidecar.resources setting
// replaces all of it (requests and limits), as before.
func DefaultSidecar(image string) Sidecar {
	return Sidecar{
		Image:    image,
		LogLevel: "info",
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:              resource.MustParse("50m"),
				corev1.ResourceMemory:           resource.MustParse("64Mi"),
				corev1.ResourceEphemeralStorage: resource.MustParse("64Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceMemory:           resource.MustParse("256Mi"),
				corev1.ResourceEphemeralStorage: resource.MustParse("256Mi"),
			},
		},
	}
}

// ResolveSidecar applies layers of settings over base, the later layers winning
// field by field (pass the mesh's, then the MeshService's). Nil layers are skipped.
func ResolveSidecar(base Sidecar, layers ...*meshv1alpha1.SidecarSettings) Sidecar {
	out := base
	for _, l := range layers {
		if l == nil {
			continue
		}
		if l.Image != "" {
			out.Image = l.Image
		}
		if l.LogLevel != "" {
			out.LogLevel = l.LogLevel
		}
		if l.Resources != nil {
			out.Resources = *l.Resources.DeepCopy()
		}
		if l.Concurrency != nil {
			out.Concurrency = ptr.To(*l.Concurrency)
		}
	}
	return out
}

// Deployment runs the user's pod template with the Envoy sidecar added as a native
// sidecar (an init container with restartPolicy Always): it starts, and passes its
// startup probe, before the app starts, and it stops after the app on shutdown.
// bootstrapHash is the only config-derived value in the template, so only a
// bootstrap change rolls the pods. The pods run as ServiceAccountName(ms); withCertificate (the mesh's mTLS
// is not Disabled) also gives the sidecar the pod's certificate.
func Deployment(ms *meshv1alpha1.MeshService, sc Sidecar, bootstrapHash string, withCertificate bool) *appsv1.Deployment {
	tmpl := ms.Spec.Template.DeepCopy()
	tmpl.Labels = merge(tmpl.Labels, commonLabels(ms))
	tmpl.Annotations = merge(withScrapeAnnotations(tmpl.Annotations), map[string]string{BootstrapHashAnnotation: bootstrapHash})
	tmpl.Spec.ServiceAccountName = ServiceAccountName(ms)
	sidecar := sidecarContainer(ms, sc)
	tmpl.Spec.Volumes = append(tmpl.Spec.Volumes, configVolume(ConfigMapName(ms)))
	if withCertificate {
		withIdentity(&tmpl.Spec, &sidecar)
	}
	tmpl.Spec.InitContainers = append([]corev1.Container{sidecar}, tmpl.Spec.InitContainers...)

	return &appsv1.Deployment{
		TypeMeta:   typeMeta("apps/v1", "Deployment"),
		ObjectMeta: objectMeta(ms, ms.Name),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(ptr.Deref(ms.Spec.Replicas, 1)),
			Selector: &metav1.LabelSelector{MatchLabels: SelectorLabels(ms)},
			Template: *tmpl,
		},
	}
}

// sidecarContainer is the Envoy container as a native sidecar of the app.
func sidecarContainer(ms *meshv1alpha1.MeshService, sc Sidecar) corev1.Container {
	c := envoyContainer(sc, corev1.ContainerPort{Name: PortName(ms.Spec.Protocol), ContainerPort: ms.Spec.ServicePort, Protocol: corev1.ProtocolTCP})
	c.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	return c
}

// envoyContainer runs Envoy on the bootstrap in the config volume, exposing port
// and the status port. Sidecars and gateways share it, so both are probed and
// locked down the same way.
func envoyContainer(sc Sidecar, port corev1.ContainerPort) corev1.Container {
	args := []string{
		"-c", envoyconfig.MountPath + "/" + envoyconfig.BootstrapFile,
		"--log-level", sc.LogLevel,
	}
	if sc.Concurrency != nil {
		args = append(args, "--concurrency", strconv.Itoa(int(*sc.Concurrency)))
	}
	var env []corev1.EnvVar
	if sc.XDS {
		args = append(args, "--service-node", "$(POD_NAME).$(POD_NAMESPACE)")
		env = xdsNodeEnv
	}
	ready := &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/ready", Port: intstr.FromInt32(envoyconfig.StatusPort),
		}},
		PeriodSeconds: 1, FailureThreshold: 3,
	}
	startup := ready.DeepCopy()
	startup.FailureThreshold = 120

	return corev1.Container{
		Name:  SidecarName,
		Image: sc.Image,
		Args:  args,
		Env:   env,
		Ports: []corev1.ContainerPort{
			port,
			{Name: StatusPortName, ContainerPort: envoyconfig.StatusPort, Protocol: corev1.ProtocolTCP},
		},
		Resources:      sc.Resources,
		StartupProbe:   startup,
		ReadinessProbe: ready,
		VolumeMounts: []corev1.VolumeMount{{
			Name: ConfigVolumeName, MountPath: envoyconfig.MountPath, ReadOnly: true,
		}},
		SecurityContext: RestrictedSecurityContext(),
	}
}

// configVolume mounts the ConfigMap named cm as Envoy's config directory.
func configVolume(cm string) corev1.Volume {
	return corev1.Volume{
		Name: ConfigVolumeName,
		VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: cm},
		}},
	}
}

// RestrictedSecurityContext satisfies the restricted Pod Security Standard on its
// own, so the sidecar is never the reason a pod is rejected.
func RestrictedSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		ReadOnlyRootFilesystem:   ptr.To(true),
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](envoyUID),
		RunAsGroup:               ptr.To[int64](envoyUID),
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

// merge returns a copy of base with over's entries set on top.
func merge(base, over map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}
