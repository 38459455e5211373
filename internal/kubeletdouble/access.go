package kubeletdouble

import (
	"os"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The kubelet's modes, from pkg/volume/volume_linux.go: a projected volume is read-only,
// so SetVolumeOwnership adds roMask (and, on directories, execMask and setgid).
const (
	roMask   os.FileMode = 0o440
	execMask os.FileMode = 0o110

	// defaultProjectedMode is the API server's default for ProjectedVolumeSource.defaultMode.
	defaultProjectedMode int32 = 0o644
	// fsUserOrGroupMode is what collectData gives a podCertificate, clusterTrustBundle or
	// serviceAccountToken file when the pod has an fsUser or fsGroup.
	fsUserOrGroupMode int32 = 0o600
)

// FileAccess is what the kubelet would give a file of a projected source: mode, owner uid and gid
// (after SetVolumeOwnership for fsGroup). The kubelet runs as root, so 0 is the owner and group it
// does not change.
type FileAccess struct {
	Mode os.FileMode
	UID  int64
	GID  int64
}

// ProjectedFileAccess is the access the kubelet (feature gates at their 1.37 defaults) gives each
// file of a podCertificate or clusterTrustBundle source of vol in pod: projected.go's collectData
// mode (defaultMode, or 0600 when the pod has an fsUser or fsGroup), owned by the fsUser (FsUserFrom)
// if any, then SetVolumeOwnership's chgrp to fsGroup and mode|0440. A nil defaultMode counts as the
// API server's default, 0644. The volume's directories are 0755 (02755 with fsGroup): any user can
// traverse them.
func ProjectedFileAccess(pod *corev1.Pod, vol *corev1.ProjectedVolumeSource) FileAccess {
	a := FileAccess{Mode: os.FileMode(collectDataMode(pod, vol))}
	if u := fsUserFrom(pod); u != nil {
		a.UID = *u
	}
	if g := fsGroupOf(pod); g != nil {
		a.GID = *g
		a.Mode |= roMask
	}
	return a
}

// collectDataMode is the mode projected.go's collectData writes a podCertificate or
// clusterTrustBundle file with, before SetVolumeOwnership. (The per-source user fields of
// KEP-5936 are behind the alpha gate AtomicWriteVolumeUserFields, off by default: ignored.)
func collectDataMode(pod *corev1.Pod, vol *corev1.ProjectedVolumeSource) int32 {
	mode := defaultProjectedMode
	if vol.DefaultMode != nil {
		mode = *vol.DefaultMode
	}
	if fsUserFrom(pod) != nil || fsGroupOf(pod) != nil {
		mode = fsUserOrGroupMode
	}
	return mode
}

func fsGroupOf(pod *corev1.Pod) *int64 {
	if sc := pod.Spec.SecurityContext; sc != nil {
		return sc.FSGroup
	}
	return nil
}

// fsUserFrom is pkg/volume/util.FsUserFrom: the runAsUser every init, regular and ephemeral
// container runs as, or nil when one has none or two differ.
func fsUserFrom(pod *corev1.Pod) *int64 {
	var fsUser *int64
	for _, c := range allContainers(pod) {
		runAsUser := effectiveRunAsUser(pod, c)
		if runAsUser == nil || (fsUser != nil && *fsUser != *runAsUser) {
			return nil
		}
		if fsUser == nil {
			fsUser = runAsUser
		}
	}
	return fsUser
}

// allContainers lists the pod's containers in VisitContainers' order.
func allContainers(pod *corev1.Pod) []*corev1.Container {
	var out []*corev1.Container
	for i := range pod.Spec.InitContainers {
		out = append(out, &pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	for i := range pod.Spec.EphemeralContainers {
		out = append(out, (*corev1.Container)(&pod.Spec.EphemeralContainers[i].EphemeralContainerCommon))
	}
	return out
}

// effectiveRunAsUser is securitycontext.DetermineEffectiveRunAsUser: the container's runAsUser,
// else the pod's.
func effectiveRunAsUser(pod *corev1.Pod, c *corev1.Container) *int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return c.SecurityContext.RunAsUser
	}
	if pod.Spec.SecurityContext != nil {
		return pod.Spec.SecurityContext.RunAsUser
	}
	return nil
}

func effectiveRunAsGroup(pod *corev1.Pod, c *corev1.Container) *int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsGroup != nil {
		return c.SecurityContext.RunAsGroup
	}
	if pod.Spec.SecurityContext != nil {
		return pod.Spec.SecurityContext.RunAsGroup
	}
	return nil
}

func effectiveRunAsNonRoot(pod *corev1.Pod, c *corev1.Container) bool {
	if c.SecurityContext != nil && c.SecurityContext.RunAsNonRoot != nil {
		return *c.SecurityContext.RunAsNonRoot
	}
	return pod.Spec.SecurityContext != nil && pod.Spec.SecurityContext.RunAsNonRoot != nil && *pod.Spec.SecurityContext.RunAsNonRoot
}

// CanRead reports whether a container (uid/gid from container then pod securityContext,
// supplemental groups incl. fsGroup) can read such a file. It decides from the pod spec alone and
// is conservative where the spec leaves a choice to the image: with no runAsUser or runAsGroup, or
// with the default supplementalGroupsPolicy Merge (the image's /etc/group may add groups), the
// answer is true only if every permission class that could then apply allows reading. A known root
// uid reads anything while it keeps CAP_DAC_OVERRIDE (in the runtimes' default set) or is given
// CAP_DAC_READ_SEARCH. User namespaces (hostUsers: false) are not modelled.
func CanRead(pod *corev1.Pod, container *corev1.Container, a FileAccess) bool {
	uid := effectiveRunAsUser(pod, container)
	if uid != nil && *uid == 0 && bypassesReadChecks(container) {
		return true
	}
	if uid != nil && *uid == a.UID {
		return a.Mode&0o400 != 0
	}
	var classes []os.FileMode // the read bit of each class that may apply
	if uid == nil && !(effectiveRunAsNonRoot(pod, container) && a.UID == 0) {
		classes = append(classes, 0o400) // the image's user may own the file
	}
	gid := effectiveRunAsGroup(pod, container)
	if (gid != nil && *gid == a.GID) || slices.Contains(supplementalGroups(pod), a.GID) {
		classes = append(classes, 0o040)
	} else {
		if gid == nil || !strictSupplementalGroups(pod) {
			classes = append(classes, 0o040) // the image may put the user in the file's group
		}
		classes = append(classes, 0o004)
	}
	for _, bit := range classes {
		if a.Mode&bit == 0 {
			return false
		}
	}
	return true
}

// supplementalGroups are the groups the kubelet gives every container (kuberuntime's
// security_context.go): fsGroup, then the pod's supplementalGroups.
func supplementalGroups(pod *corev1.Pod) []int64 {
	sc := pod.Spec.SecurityContext
	if sc == nil {
		return nil
	}
	var out []int64
	if sc.FSGroup != nil {
		out = append(out, *sc.FSGroup)
	}
	return append(out, sc.SupplementalGroups...)
}

func strictSupplementalGroups(pod *corev1.Pod) bool {
	sc := pod.Spec.SecurityContext
	return sc != nil && sc.SupplementalGroupsPolicy != nil && *sc.SupplementalGroupsPolicy == corev1.SupplementalGroupsPolicyStrict
}

// bypassesReadChecks reports whether a root container keeps a capability that overrides file
// read permissions: privileged, CAP_DAC_OVERRIDE not dropped (containerd and CRI-O grant it by
// default), or CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH added.
func bypassesReadChecks(c *corev1.Container) bool {
	sc := c.SecurityContext
	if sc == nil {
		return true
	}
	if sc.Privileged != nil && *sc.Privileged {
		return true
	}
	has := func(list []corev1.Capability, names ...string) bool {
		return slices.ContainsFunc(list, func(c corev1.Capability) bool {
			n := strings.TrimPrefix(strings.ToUpper(string(c)), "CAP_")
			return slices.Contains(names, n)
		})
	}
	if sc.Capabilities == nil {
		return true
	}
	if has(sc.Capabilities.Add, "ALL", "DAC_OVERRIDE", "DAC_READ_SEARCH") {
		return true
	}
	return !has(sc.Capabilities.Drop, "ALL", "DAC_OVERRIDE")
}
