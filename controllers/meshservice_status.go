package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
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
// written until writeStatus compares it with what is stored. Its methods fill
// the fields that report what was observed; the conditions come from the pure
// functions below, each set once per reconcile.
type statusBuilder struct {
	ms     *meshv1alpha1.MeshService
	status meshv1alpha1.MeshServiceStatus
}

func newStatusBuilder(ms *meshv1alpha1.MeshService) *statusBuilder {
	return &statusBuilder{ms: ms, status: *ms.Status.DeepCopy()}
}

func (b *statusBuilder) setConditions(cs ...metav1.Condition) {
	setConditions(&b.status.Conditions, b.ms.Generation, cs...)
}

// upstreams reports each spec.upstreams entry, keeping the endpoint counts last
// observed, and returns the keys of those that do not exist and of those in a
// namespace outside watched (the namespaces the operator watches; none: all),
// which could not be looked up.
func (b *statusBuilder) upstreams(found map[types.NamespacedName]*meshv1alpha1.MeshService, watched []string) (missing []string, outside notWatched) {
	b.status.Upstreams = nil
	outside.watched = watched
	for _, u := range b.ms.Spec.Upstreams {
		key := u.Key(b.ms.Namespace)
		_, ok := found[key]
		prev := findUpstreamStatus(b.ms.Status.Upstreams, key)
		b.status.Upstreams = append(b.status.Upstreams, meshv1alpha1.UpstreamStatus{
			Name: key.Name, Namespace: key.Namespace, Resolved: ok,
			HealthyEndpoints: prev.HealthyEndpoints, Endpoints: prev.Endpoints,
		})
		switch {
		case ok:
		case !watches(watched, key.Namespace):
			outside.keys = append(outside.keys, key.String())
		default:
			missing = append(missing, key.String())
		}
	}
	return missing, outside
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

// deployment reports the Deployment's replicas and the selector of its pods,
// and returns its readiness. replicas and selector are what the scale
// subresource shows: a HorizontalPodAutoscaler finds the pods by the selector.
func (b *statusBuilder) deployment(dep *appsv1.Deployment) deploymentState {
	d := deploymentReadiness(dep)
	b.status.Selector = labels.SelectorFromSet(objects.SelectorLabels(b.ms)).String()
	if d.found {
		b.status.Replicas = d.replicas
		b.status.ReadyReplicas = d.readyReplicas
		b.status.Ready = fmt.Sprintf("%d/%d", d.readyReplicas, d.desired)
	}
	return d
}

func (b *statusBuilder) succeeded() { b.status.ObservedGeneration = b.ms.Generation }

// upstreamsResolvedCondition is UpstreamsResolved: True when no upstream is
// missing or outside the watched namespaces among the total named in
// spec.upstreams. The message names every one that is.
func upstreamsResolvedCondition(missing []string, outside notWatched, total int) metav1.Condition {
	var notFound string
	if len(missing) > 0 {
		notFound = fmt.Sprintf("MeshService %v not found; its local listener answers 503 until it exists", missing)
	}
	switch {
	case len(outside.keys) > 0:
		return newCondition(meshv1alpha1.ConditionUpstreamsResolved, false, ReasonNamespaceNotWatched,
			joinMessages(outside.message("its local listener answers 503"), notFound))
	case len(missing) > 0:
		return newCondition(meshv1alpha1.ConditionUpstreamsResolved, false, ReasonUpstreamNotFound, notFound)
	}
	return newCondition(meshv1alpha1.ConditionUpstreamsResolved, true, ReasonResolved,
		fmt.Sprintf("all %d upstreams exist", total))
}

// meshServiceReadyInputs is everything a MeshService's Ready condition depends on.
type meshServiceReadyInputs struct {
	// failure, when set, is all Ready reports: nothing was applied.
	failure    *failure
	deployment deploymentState
	// sidecars is nil when no prober runs; Ready then ignores the sidecars.
	sidecars      *sidecarView
	configVersion string
	// missingMesh names the ServiceMesh spec.mesh names when it does not exist.
	missingMesh string
}

// meshServiceReadyCondition is Ready: the failure if there was one, else the
// Deployment ready and, with a prober, every sidecar live on configVersion.
func meshServiceReadyCondition(in meshServiceReadyInputs) metav1.Condition {
	if in.failure != nil {
		return newCondition(meshv1alpha1.ConditionReady, false, in.failure.reason, in.failure.message)
	}
	d := in.deployment
	replicas := fmt.Sprintf("%d/%d replicas ready", d.readyReplicas, d.desired)
	var c metav1.Condition
	switch {
	case !d.found:
		c = newCondition(meshv1alpha1.ConditionReady, false, ReasonDeploymentNotFound, "the Deployment is being created")
	case !d.ready:
		c = newCondition(meshv1alpha1.ConditionReady, false, ReasonProgressing, replicas)
	case in.sidecars != nil && !in.sidecars.allSynced:
		c = newCondition(meshv1alpha1.ConditionReady, false, ReasonSidecarsNotReady,
			fmt.Sprintf("%d/%d sidecars live and on config version %s", in.sidecars.counts.Synced, in.sidecars.counts.Total, in.configVersion))
	default:
		c = newCondition(meshv1alpha1.ConditionReady, true, ReasonAvailable, replicas)
	}
	if in.missingMesh != "" {
		// Worth knowing, but not an error.
		c.Message += fmt.Sprintf("; ServiceMesh %q not found, built-in defaults apply", in.missingMesh)
	}
	return c
}

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
