package kubeletdouble_test

import (
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/envoymesh/envoymesh-operator/internal/kubeletdouble"
)

const sidecarUID = 65532

// restricted is a container securityContext that passes the restricted Pod Security level.
func restricted(uid *int64) *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsUser:                uid,
		RunAsNonRoot:             ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// meshedPod has an app container running as the image's user and the sidecar as 65532,
// so the kubelet finds no single fsUser.
func meshedPod(fsGroup *int64) *corev1.Pod {
	return &corev1.Pod{Spec: corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{FSGroup: fsGroup},
		Containers: []corev1.Container{
			{Name: "app", SecurityContext: restricted(nil)},
			{Name: "envoy", SecurityContext: restricted(ptr.To[int64](sidecarUID))},
		},
	}}
}

func TestProjectedFileAccess(t *testing.T) {
	vol := &corev1.ProjectedVolumeSource{DefaultMode: ptr.To[int32](0o644)}
	sameUser := &corev1.Pod{Spec: corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](sidecarUID)},
		Containers: []corev1.Container{
			{Name: "app", SecurityContext: restricted(nil)},
			{Name: "envoy", SecurityContext: restricted(nil)},
		},
	}}
	otherInit := sameUser.DeepCopy()
	otherInit.Spec.InitContainers = []corev1.Container{{Name: "init", SecurityContext: restricted(ptr.To[int64](1000))}}

	for _, tc := range []struct {
		name     string
		pod      *corev1.Pod
		vol      *corev1.ProjectedVolumeSource
		want     kubeletdouble.FileAccess
		readable bool
	}{
		{"no fsGroup: defaultMode, root, others may read", meshedPod(nil), vol,
			kubeletdouble.FileAccess{Mode: 0o644}, true},
		{"nil defaultMode is the API default 0644", meshedPod(nil), &corev1.ProjectedVolumeSource{},
			kubeletdouble.FileAccess{Mode: 0o644}, true},
		{"fsGroup: 0600 then 0640, group fsGroup, read through the supplemental group", meshedPod(ptr.To[int64](2000)), vol,
			kubeletdouble.FileAccess{Mode: 0o640, GID: 2000}, true},
		{"fsGroup overrides a restrictive defaultMode", meshedPod(ptr.To[int64](2000)), &corev1.ProjectedVolumeSource{DefaultMode: ptr.To[int32](0o400)},
			kubeletdouble.FileAccess{Mode: 0o640, GID: 2000}, true},
		{"one runAsUser for all containers: fsUser owns a 0600 file", sameUser, vol,
			kubeletdouble.FileAccess{Mode: 0o600, UID: sidecarUID}, true},
		{"an init container with another user: no fsUser", otherInit, vol,
			kubeletdouble.FileAccess{Mode: 0o644}, true},
		{"defaultMode 0400 without fsGroup: root only", meshedPod(nil), &corev1.ProjectedVolumeSource{DefaultMode: ptr.To[int32](0o400)},
			kubeletdouble.FileAccess{Mode: 0o400}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := kubeletdouble.ProjectedFileAccess(tc.pod, tc.vol)
			if got != tc.want {
				t.Fatalf("ProjectedFileAccess = %+v (mode %v), want %+v", got, got.Mode, tc.want)
			}
			envoy := &tc.pod.Spec.Containers[1]
			if r := kubeletdouble.CanRead(tc.pod, envoy, got); r != tc.readable {
				t.Fatalf("CanRead(envoy, %+v) = %v, want %v", got, r, tc.readable)
			}
		})
	}
}

func TestCanReadEdges(t *testing.T) {
	pod := meshedPod(nil)
	app := &pod.Spec.Containers[0] // no runAsUser: the image decides, but runAsNonRoot rules out root
	for _, tc := range []struct {
		name      string
		container *corev1.Container
		access    kubeletdouble.FileAccess
		want      bool
	}{
		{"unknown non-root user, world-readable", app, kubeletdouble.FileAccess{Mode: 0o644}, true},
		{"unknown non-root user, root-only file", app, kubeletdouble.FileAccess{Mode: 0o600}, false},
		{"unknown user may be in the file's group only through the image", app, kubeletdouble.FileAccess{Mode: 0o640, GID: 2000}, false},
		{"unknown user may own a non-root file", app, kubeletdouble.FileAccess{Mode: 0o044, UID: 1000}, false},
		{"root without capabilities reads as the owner", &corev1.Container{SecurityContext: &corev1.SecurityContext{
			RunAsUser: ptr.To[int64](0), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}},
			kubeletdouble.FileAccess{Mode: 0o600, UID: sidecarUID}, false},
		{"root with the default capabilities reads anything", &corev1.Container{SecurityContext: &corev1.SecurityContext{
			RunAsUser: ptr.To[int64](0)}}, kubeletdouble.FileAccess{Mode: 0o400, UID: sidecarUID}, true},
		{"runAsGroup matches the file's group", &corev1.Container{SecurityContext: &corev1.SecurityContext{
			RunAsUser: ptr.To[int64](1000), RunAsGroup: ptr.To[int64](2000)}}, kubeletdouble.FileAccess{Mode: 0o640, GID: 2000}, true},
		{"owner class only: group and others do not help the owner", &corev1.Container{SecurityContext: &corev1.SecurityContext{
			RunAsUser: ptr.To[int64](sidecarUID), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}},
			kubeletdouble.FileAccess{Mode: 0o044, UID: sidecarUID}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := kubeletdouble.CanRead(pod, tc.container, tc.access); got != tc.want {
				t.Fatalf("CanRead(%+v) = %v, want %v", tc.access, got, tc.want)
			}
		})
	}
	// A file mode is os.FileMode: the permission bits, as os.Stat reports them.
	if m := kubeletdouble.ProjectedFileAccess(meshedPod(ptr.To[int64](1)), &corev1.ProjectedVolumeSource{}).Mode; m.Perm() != m || m != os.FileMode(0o640) {
		t.Fatalf("mode %v carries more than permission bits", m)
	}
}
