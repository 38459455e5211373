package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
)

// ServiceMesh condition types and reasons.
const (
	// ConditionRoutesResolved is True when every gateway route names an existing MeshService.
	ConditionRoutesResolved = "RoutesResolved"
	ReasonRouteNotFound     = "RouteNotFound"
	ReasonGatewayDisabled   = "GatewayDisabled"

	// ConditionMetricsScraped, present while spec.metrics.podMonitor is set, is
	// True when the mesh's PodMonitor is written.
	ConditionMetricsScraped    = "MetricsScraped"
	ReasonPodMonitorApplied    = "PodMonitorApplied"
	ReasonPodMonitorCRDMissing = "PodMonitorCRDMissing"
)

// podMonitorAppliedCondition is MetricsScraped True: the PodMonitor key is written.
func podMonitorAppliedCondition(key string) metav1.Condition {
	return newCondition(ConditionMetricsScraped, true, ReasonPodMonitorApplied,
		fmt.Sprintf("PodMonitor %s scrapes the sidecars and the gateway on their %s port at %s",
			key, objects.StatusPortName, objects.MetricsPath))
}

// podMonitorCRDMissingCondition is MetricsScraped False: there is no PodMonitor API.
func podMonitorCRDMissingCondition() metav1.Condition {
	return newCondition(ConditionMetricsScraped, false, ReasonPodMonitorCRDMissing,
		"the PodMonitor CRD (monitoring.coreos.com/v1) is not installed: install the Prometheus Operator, "+
			"or scrape the pods through their prometheus.io/scrape, prometheus.io/port and prometheus.io/path annotations")
}

// podMonitorConflictCondition is MetricsScraped False: a PodMonitor of the name
// exists that the mesh does not control, and is left as it is.
func podMonitorConflictCondition(err error) metav1.Condition {
	return newCondition(ConditionMetricsScraped, false, ReasonConflict, err.Error())
}

// routesResolvedCondition is RoutesResolved: True when no route target is
// outside the watched namespaces, refuses the gateway or is missing, among the
// total routes. The reason is the first of these that applies; the message
// names every target in each.
func routesResolvedCondition(missing, notAllowed []string, outside notWatched, total int) metav1.Condition {
	var refused, notFound string
	if len(notAllowed) > 0 {
		refused = fmt.Sprintf("MeshService %v of another namespace does not consent to this gateway (it needs spec.allowFrom naming this namespace); its routes answer 403 until it does", notAllowed)
	}
	if len(missing) > 0 {
		notFound = fmt.Sprintf("MeshService %v not found; its routes answer 503 until it exists", missing)
	}
	msg := joinMessages(outside.message("its routes answer 503"), refused, notFound)
	switch {
	case len(outside.keys) > 0:
		return newCondition(ConditionRoutesResolved, false, ReasonNamespaceNotWatched, msg)
	case len(notAllowed) > 0:
		return newCondition(ConditionRoutesResolved, false, ReasonNotAllowed, msg)
	case len(missing) > 0:
		return newCondition(ConditionRoutesResolved, false, ReasonRouteNotFound, msg)
	}
	return newCondition(ConditionRoutesResolved, true, ReasonResolved, fmt.Sprintf("all %d routes resolved", total))
}

// gatewayState is what a mesh's Ready condition needs of its gateway.
type gatewayState struct {
	deployment    deploymentState
	configVersion string
	// synced counts the gateway Envoys live on configVersion; nil when no
	// prober runs, and Ready then ignores the Envoys.
	synced *int32
}

// meshReadyInputs is everything a ServiceMesh's Ready condition depends on.
type meshReadyInputs struct {
	// failure, when set, is all Ready reports: no gateway object was applied.
	failure *failure
	// gateway is nil when the gateway is disabled.
	gateway                 *gatewayState
	services, readyServices int32
}

// meshReadyCondition is a ServiceMesh's Ready: the failure if there was one,
// else the gateway ready (its Deployment, then every Envoy synced), then every
// member MeshService Ready.
func meshReadyCondition(in meshReadyInputs) metav1.Condition {
	if in.failure != nil {
		return newCondition(meshv1alpha1.ConditionReady, false, in.failure.reason, in.failure.message)
	}
	if gw := in.gateway; gw != nil {
		d := gw.deployment
		if !d.ready {
			return newCondition(meshv1alpha1.ConditionReady, false, ReasonProgressing,
				fmt.Sprintf("gateway %d/%d replicas ready", d.readyReplicas, d.desired))
		}
		if gw.synced != nil && *gw.synced < d.desired {
			return newCondition(meshv1alpha1.ConditionReady, false, ReasonSidecarsNotReady,
				fmt.Sprintf("gateway %d/%d Envoys live on config version %s", *gw.synced, d.desired, gw.configVersion))
		}
	}
	members := fmt.Sprintf("%d/%d MeshServices ready", in.readyServices, in.services)
	if in.readyServices < in.services {
		return newCondition(meshv1alpha1.ConditionReady, false, ReasonProgressing, members)
	}
	return newCondition(meshv1alpha1.ConditionReady, true, ReasonAvailable, members)
}

// countSynced counts the observed Envoys synced to version.
func countSynced(obs []prober.PodObservation, version string) int32 {
	var n int32
	for _, o := range obs {
		if syncedTo(o, version) {
			n++
		}
	}
	return n
}

// writeMeshStatus writes status once, and only when it changed.
func (r *ServiceMeshReconciler) writeMeshStatus(ctx context.Context, mesh *meshv1alpha1.ServiceMesh, status meshv1alpha1.ServiceMeshStatus) error {
	if equality.Semantic.DeepEqual(mesh.Status, status) {
		return nil
	}
	next := mesh.DeepCopy()
	next.Status = status
	return r.Status().Update(ctx, next)
}
