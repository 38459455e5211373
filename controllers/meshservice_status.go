package controllers

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// Condition reasons.
const (
	ReasonAvailable          = "Available"
	ReasonProgressing        = "Progressing"
	ReasonResolved           = "Resolved"
	ReasonUpstreamNotFound   = "UpstreamNotFound"
	ReasonConflict           = "Conflict"
	ReasonInvalidConfig      = "InvalidConfig"
	ReasonDeploymentNotFound = "DeploymentNotFound"
)

// statusBuilder computes a MeshService's next status in memory; nothing is
// written until writeStatus compares it with what is stored.
type statusBuilder struct {
	ms     *meshv1alpha1.MeshService
	status meshv1alpha1.MeshServiceStatus
}

func newStatusBuilder(ms *meshv1alpha1.MeshService) *statusBuilder {
	return &statusBuilder{ms: ms, status: *ms.Status.DeepCopy()}
}

// setCondition sets a condition for the current generation; meta.SetStatusCondition
// keeps lastTransitionTime when only the message changes.
func (b *statusBuilder) setCondition(t string, ok bool, reason, msg string) {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	b.setConditionStatus(t, s, reason, msg)
}

func (b *statusBuilder) setConditionStatus(t string, s metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&b.status.Conditions, metav1.Condition{
		Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: b.ms.Generation,
	})
}

func (b *statusBuilder) upstreams(found map[types.NamespacedName]*meshv1alpha1.MeshService) {
	b.status.Upstreams = nil
	var missing []string
	for _, u := range b.ms.Spec.Upstreams {
		key := u.Key(b.ms.Namespace)
		_, ok := found[key]
		prev := findUpstreamStatus(b.ms.Status.Upstreams, key)
		b.status.Upstreams = append(b.status.Upstreams, meshv1alpha1.UpstreamStatus{
			Name: key.Name, Namespace: key.Namespace, Resolved: ok,
			HealthyEndpoints: prev.HealthyEndpoints, Endpoints: prev.Endpoints,
		})
		if !ok {
			missing = append(missing, key.String())
		}
	}
	if len(missing) > 0 {
		b.setCondition(meshv1alpha1.ConditionUpstreamsResolved, false, ReasonUpstreamNotFound,
			fmt.Sprintf("MeshService %v not found; its local listener answers 503 until it exists", missing))
		return
	}
	b.setCondition(meshv1alpha1.ConditionUpstreamsResolved, true, ReasonResolved,
		fmt.Sprintf("all %d upstreams exist", len(b.ms.Spec.Upstreams)))
}

func findUpstreamStatus(list []meshv1alpha1.UpstreamStatus, key types.NamespacedName) meshv1alpha1.UpstreamStatus {
	for _, u := range list {
		if u.Name == key.Name && u.Namespace == key.Namespace {
			return u
		}
	}
	return meshv1alpha1.UpstreamStatus{}
}

func (b *statusBuilder) configVersion(v string) { b.status.ConfigVersion = v }

// deployment reports replicas and readiness from the Deployment: Ready is its
// Available condition with every desired replica ready. It returns that readiness.
func (b *statusBuilder) deployment(dep *appsv1.Deployment) bool {
	if dep.Name == "" {
		b.setCondition(meshv1alpha1.ConditionReady, false, ReasonDeploymentNotFound, "the Deployment is being created")
		return false
	}
	want := ptr.Deref(dep.Spec.Replicas, 1)
	b.status.Replicas = dep.Status.Replicas
	b.status.ReadyReplicas = dep.Status.ReadyReplicas
	b.status.Ready = fmt.Sprintf("%d/%d", dep.Status.ReadyReplicas, want)

	available := false
	for _, c := range dep.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == "True" {
			available = true
		}
	}
	upToDate := dep.Status.ObservedGeneration >= dep.Generation && dep.Status.UpdatedReplicas >= want
	if available && upToDate && dep.Status.ReadyReplicas >= want {
		b.setCondition(meshv1alpha1.ConditionReady, true, ReasonAvailable,
			fmt.Sprintf("%d/%d replicas ready", dep.Status.ReadyReplicas, want))
		return true
	}
	b.setCondition(meshv1alpha1.ConditionReady, false, ReasonProgressing,
		fmt.Sprintf("%d/%d replicas ready", dep.Status.ReadyReplicas, want))
	return false
}

// failed marks the reconcile as failed: Ready is False with the reason, and
// observedGeneration stays at the last successful generation.
func (b *statusBuilder) failed(reason, msg string) {
	b.setCondition(meshv1alpha1.ConditionReady, false, reason, msg)
}

// noteMissingMesh says in the Ready message that the named ServiceMesh does not
// exist and built-in defaults apply: worth knowing, but not an error.
func (b *statusBuilder) noteMissingMesh() {
	c := meta.FindStatusCondition(b.status.Conditions, meshv1alpha1.ConditionReady)
	if c == nil {
		return
	}
	note := fmt.Sprintf("; ServiceMesh %q not found, built-in defaults apply", b.ms.Spec.Mesh)
	if !strings.HasSuffix(c.Message, note) {
		b.setConditionStatus(c.Type, c.Status, c.Reason, c.Message+note)
	}
}

func (b *statusBuilder) succeeded() { b.status.ObservedGeneration = b.ms.Generation }

// writeStatus writes the status once, and only when it changed. It uses Update
// so a concurrent change is a 409 that requeues rather than a lost write.
func (r *MeshServiceReconciler) writeStatus(ctx context.Context, ms *meshv1alpha1.MeshService, b *statusBuilder) error {
	if equality.Semantic.DeepEqual(ms.Status, b.status) {
		return nil
	}
	next := ms.DeepCopy()
	next.Status = b.status
	return r.Status().Update(ctx, next)
}
