package controllers

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
)

// What MeshService and ServiceMesh status have in common: how a condition is
// built and set, when a Deployment counts as ready and when an Envoy counts as
// synced.

// newCondition is a condition of status True or False. Each condition a
// controller reports comes from exactly one pure function returning one of
// these; setConditions stamps the generation when it is stored.
func newCondition(t string, ok bool, reason, msg string) metav1.Condition {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg}
}

// setConditions stores each condition for generation, in memory only;
// meta.SetStatusCondition keeps lastTransitionTime unless the status changes.
func setConditions(conds *[]metav1.Condition, generation int64, cs ...metav1.Condition) {
	for _, c := range cs {
		c.ObservedGeneration = generation
		meta.SetStatusCondition(conds, c)
	}
}

// ReasonNamespaceNotWatched: an upstream or a gateway route names a MeshService
// in a namespace the operator does not watch (an OwnNamespace or
// SingleNamespace install, or --watch-namespaces), so it cannot be looked up.
const ReasonNamespaceNotWatched = "NamespaceNotWatched"

// watches reports whether a manager watching namespaces (none: all of them)
// sees namespace ns. Its cache answers for no other: a read there is an error.
func watches(namespaces []string, ns string) bool {
	return len(namespaces) == 0 || slices.Contains(namespaces, ns)
}

// notWatched is what a reconcile could not look up because it lies outside the
// namespaces the operator watches.
type notWatched struct {
	// keys are the "namespace/name" of the MeshServices named.
	keys []string
	// watched are the namespaces the operator watches.
	watched []string
}

// message says what is not watched, what follows (effect) and how to fix it;
// "" when everything is watched.
func (n notWatched) message(effect string) string {
	if len(n.keys) == 0 {
		return ""
	}
	return fmt.Sprintf("MeshService %v is in a namespace this operator does not watch (it watches %v), so it cannot be resolved; %s. "+
		"Have the operator watch that namespace too (the OperatorGroup's targetNamespaces, or --watch-namespaces)", n.keys, n.watched, effect)
}

// joinMessages joins the non-empty parts of a condition's message.
func joinMessages(parts ...string) string {
	return strings.Join(slices.DeleteFunc(parts, func(s string) bool { return s == "" }), "; ")
}

// failure is what ended a reconcile before it converged: a spec Envoy would
// reject, or a name held by a foreign object. Ready reports it as it is.
type failure struct {
	reason, message string
}

// deploymentState is what status needs of a Deployment we wrote.
type deploymentState struct {
	found bool
	// desired is spec.replicas (1 when unset); replicas and readyReplicas are
	// from its status.
	desired, replicas, readyReplicas int32
	// ready: the Deployment controller has seen the current spec, reports it
	// Available, and every desired replica is updated and ready.
	ready bool
}

// deploymentReadiness is the one definition of a ready Deployment, for
// MeshServices and gateways alike. A nil or empty (not found) Deployment is not.
func deploymentReadiness(dep *appsv1.Deployment) deploymentState {
	if dep == nil || dep.Name == "" {
		return deploymentState{desired: 1}
	}
	s := deploymentState{
		found:         true,
		desired:       ptr.Deref(dep.Spec.Replicas, 1),
		replicas:      dep.Status.Replicas,
		readyReplicas: dep.Status.ReadyReplicas,
	}
	available := false
	for _, c := range dep.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
			available = true
		}
	}
	upToDate := dep.Status.ObservedGeneration >= dep.Generation && dep.Status.UpdatedReplicas >= s.desired
	s.ready = available && upToDate && dep.Status.ReadyReplicas >= s.desired
	return s
}

// syncedTo is the one definition of a synced Envoy: live, with the listeners
// and the clusters of version loaded.
func syncedTo(o prober.PodObservation, version string) bool {
	return o.State == envoyadmin.StateLive && o.LDSVersion == version && o.CDSVersion == version
}
