package controllers

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
)

func TestUpstreamsResolvedCondition(t *testing.T) {
	const notWatchedMsg = "MeshService [other/pay] is in a namespace this operator does not watch (it watches [ns]), so it cannot be resolved; " +
		"its local listener answers 503. Have the operator watch that namespace too (the OperatorGroup's targetNamespaces, or --watch-namespaces)"
	outside := notWatched{keys: []string{"other/pay"}, watched: []string{"ns"}}
	for _, tc := range []struct {
		name    string
		missing []string
		outside notWatched
		total   int
		want    metav1.Condition
	}{
		{"none named", nil, notWatched{}, 0, newCondition(meshv1alpha1.ConditionUpstreamsResolved, true, ReasonResolved, "all 0 upstreams exist")},
		{"all exist", nil, notWatched{watched: []string{"ns"}}, 2, newCondition(meshv1alpha1.ConditionUpstreamsResolved, true, ReasonResolved, "all 2 upstreams exist")},
		{"some missing", []string{"ns/b", "ns/c"}, notWatched{}, 3, newCondition(meshv1alpha1.ConditionUpstreamsResolved, false, ReasonUpstreamNotFound,
			"MeshService [ns/b ns/c] not found; its local listener answers 503 until it exists")},
		{"one in a namespace not watched", nil, outside, 2, newCondition(meshv1alpha1.ConditionUpstreamsResolved, false, ReasonNamespaceNotWatched,
			notWatchedMsg)},
		{"one not watched, one missing: both named, not watched first", []string{"ns/b"}, outside, 3,
			newCondition(meshv1alpha1.ConditionUpstreamsResolved, false, ReasonNamespaceNotWatched,
				notWatchedMsg+"; MeshService [ns/b] not found; its local listener answers 503 until it exists")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, upstreamsResolvedCondition(tc.missing, tc.outside, tc.total)); diff != "" {
				t.Errorf("upstreamsResolvedCondition() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMeshServiceReadyCondition(t *testing.T) {
	ready := deploymentState{found: true, desired: 2, replicas: 2, readyReplicas: 2, ready: true}
	rolling := deploymentState{found: true, desired: 2, replicas: 2, readyReplicas: 1}
	allSynced := &sidecarView{counts: meshv1alpha1.SidecarCounts{Total: 2, Live: 2, Synced: 2}, allSynced: true}
	oneStale := &sidecarView{counts: meshv1alpha1.SidecarCounts{Total: 2, Live: 2, Synced: 1}}
	const note = `; ServiceMesh "edge" not found, built-in defaults apply`
	for _, tc := range []struct {
		name string
		in   meshServiceReadyInputs
		want metav1.Condition
	}{
		{"conflict: the failure is all it says", meshServiceReadyInputs{
			failure: &failure{ReasonConflict, `ConfigMap "x-envoy" already exists`}, deployment: ready, sidecars: allSynced, missingMesh: "edge",
		}, newCondition(meshv1alpha1.ConditionReady, false, ReasonConflict, `ConfigMap "x-envoy" already exists`)},
		{"invalid config", meshServiceReadyInputs{failure: &failure{ReasonInvalidConfig, "spec.upstreams[1]: named twice"}},
			newCondition(meshv1alpha1.ConditionReady, false, ReasonInvalidConfig, "spec.upstreams[1]: named twice")},
		{"Deployment not in the cache yet", meshServiceReadyInputs{deployment: deploymentState{desired: 1}},
			newCondition(meshv1alpha1.ConditionReady, false, ReasonDeploymentNotFound, "the Deployment is being created")},
		{"rolling out", meshServiceReadyInputs{deployment: rolling, sidecars: allSynced},
			newCondition(meshv1alpha1.ConditionReady, false, ReasonProgressing, "1/2 replicas ready")},
		{"Deployment ready, a sidecar stale", meshServiceReadyInputs{deployment: ready, sidecars: oneStale, configVersion: "v2"},
			newCondition(meshv1alpha1.ConditionReady, false, ReasonSidecarsNotReady, "1/2 sidecars live and on config version v2")},
		{"Deployment ready, nothing probed yet", meshServiceReadyInputs{deployment: ready, sidecars: &sidecarView{}, configVersion: "v2"},
			newCondition(meshv1alpha1.ConditionReady, false, ReasonSidecarsNotReady, "0/0 sidecars live and on config version v2")},
		{"ready and synced", meshServiceReadyInputs{deployment: ready, sidecars: allSynced},
			newCondition(meshv1alpha1.ConditionReady, true, ReasonAvailable, "2/2 replicas ready")},
		{"ready, no prober", meshServiceReadyInputs{deployment: ready},
			newCondition(meshv1alpha1.ConditionReady, true, ReasonAvailable, "2/2 replicas ready")},
		{"a missing mesh is noted, once", meshServiceReadyInputs{deployment: ready, sidecars: allSynced, missingMesh: "edge"},
			newCondition(meshv1alpha1.ConditionReady, true, ReasonAvailable, "2/2 replicas ready"+note)},
		{"a missing mesh is noted while progressing too", meshServiceReadyInputs{deployment: rolling, missingMesh: "edge"},
			newCondition(meshv1alpha1.ConditionReady, false, ReasonProgressing, "1/2 replicas ready"+note)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, meshServiceReadyCondition(tc.in)); diff != "" {
				t.Errorf("meshServiceReadyCondition() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigSyncedCondition(t *testing.T) {
	counts := func(total, live, synced, rejected, unreachable int32) meshv1alpha1.SidecarCounts {
		return meshv1alpha1.SidecarCounts{Total: total, Live: live, Synced: synced, Rejected: rejected, Unreachable: unreachable}
	}
	for _, tc := range []struct {
		name string
		view sidecarView
		want metav1.Condition
	}{
		{"nothing probed", sidecarView{}, metav1.Condition{Type: meshv1alpha1.ConditionConfigSynced, Status: metav1.ConditionUnknown,
			Reason: ReasonNoSidecars, Message: "no running sidecar has been probed yet"}},
		{"a rejection outranks an unreachable sidecar", sidecarView{counts: counts(3, 2, 1, 1, 1)},
			newCondition(meshv1alpha1.ConditionConfigSynced, false, ReasonRejected,
				"1 of 3 sidecars rejected config version v2; they keep serving their last accepted config")},
		{"unreachable", sidecarView{counts: counts(2, 1, 1, 0, 1)},
			newCondition(meshv1alpha1.ConditionConfigSynced, false, ReasonUnreachable, "1 of 2 sidecars did not answer on their status port")},
		{"stale", sidecarView{counts: counts(2, 2, 1, 0, 0)},
			newCondition(meshv1alpha1.ConditionConfigSynced, false, ReasonStale, "1 of 2 sidecars run config version v2")},
		{"fewer probed than ready replicas", sidecarView{counts: counts(1, 1, 1, 0, 0), allSynced: false},
			newCondition(meshv1alpha1.ConditionConfigSynced, false, ReasonStale, "1 of 1 sidecars run config version v2")},
		{"synced", sidecarView{counts: counts(2, 2, 2, 0, 0), allSynced: true},
			newCondition(meshv1alpha1.ConditionConfigSynced, true, ReasonSynced, "all 2 sidecars run config version v2")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, configSyncedCondition(tc.view, "v2")); diff != "" {
				t.Errorf("configSyncedCondition() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSidecarsCountsAgainstReadyReplicas(t *testing.T) {
	live := func(pod, v string) prober.PodObservation {
		return prober.PodObservation{Pod: pod, State: envoyadmin.StateLive, LDSVersion: v, CDSVersion: v}
	}
	for _, tc := range []struct {
		name          string
		readyReplicas int32
		obs           []prober.PodObservation
		want          sidecarView
	}{
		{"all probed and synced", 2, []prober.PodObservation{live("a", "v2"), live("b", "v2")},
			sidecarView{counts: meshv1alpha1.SidecarCounts{Total: 2, Live: 2, Synced: 2}, allSynced: true}},
		{"a ready replica not probed yet", 2, []prober.PodObservation{live("a", "v2")},
			sidecarView{counts: meshv1alpha1.SidecarCounts{Total: 1, Live: 1, Synced: 1}}},
		{"rejecting the current version", 2, []prober.PodObservation{live("a", "v2"), {Pod: "b", State: envoyadmin.StateLive, LDSVersion: "v1", CDSVersion: "v1", Rejecting: true}},
			sidecarView{counts: meshv1alpha1.SidecarCounts{Total: 2, Live: 2, Synced: 1, Rejected: 1}}},
		{"unreachable", 1, []prober.PodObservation{{Pod: "a", State: prober.StateUnreachable, Rejecting: true}},
			sidecarView{counts: meshv1alpha1.SidecarCounts{Total: 1, Unreachable: 1, Rejected: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newStatusBuilder(&meshv1alpha1.MeshService{})
			b.status.ConfigVersion, b.status.ReadyReplicas = "v2", tc.readyReplicas
			got := b.sidecars(tc.obs, nil)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(sidecarView{})); diff != "" {
				t.Errorf("sidecars() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewlyRejected(t *testing.T) {
	status := func(version, reason string) meshv1alpha1.MeshServiceStatus {
		s := meshv1alpha1.MeshServiceStatus{ConfigVersion: version}
		if reason != "" {
			s.Conditions = []metav1.Condition{{Type: meshv1alpha1.ConditionConfigSynced, Reason: reason}}
		}
		return s
	}
	for _, tc := range []struct {
		name       string
		prev, next meshv1alpha1.MeshServiceStatus
		want       bool
	}{
		{"first rejection ever", status("", ""), status("v2", ReasonRejected), true},
		{"synced, then v2 rejected", status("v1", ReasonSynced), status("v2", ReasonRejected), true},
		{"stale, then the same version rejected", status("v2", ReasonStale), status("v2", ReasonRejected), true},
		{"v2 still rejected: already reported", status("v2", ReasonRejected), status("v2", ReasonRejected), false},
		{"v1 rejected, then v2 rejected", status("v1", ReasonRejected), status("v2", ReasonRejected), true},
		{"no rejection now", status("v2", ReasonRejected), status("v2", ReasonSynced), false},
		{"no ConfigSynced at all", status("v2", ""), status("v2", ""), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := newlyRejected(tc.prev, tc.next); got != tc.want {
				t.Errorf("newlyRejected() = %v, want %v", got, tc.want)
			}
		})
	}
}
