package controllers

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
)

func TestRoutesResolvedCondition(t *testing.T) {
	const (
		refused  = "MeshService [other/pay] of another namespace does not consent to this gateway (it needs spec.allowFrom naming this namespace); its routes answer 403 until it does"
		notFound = "MeshService [ns/b] not found; its routes answer 503 until it exists"
		outOfNS  = "MeshService [far/shop] is in a namespace this operator does not watch (it watches [ns other]), so it cannot be resolved; " +
			"its routes answer 503. Have the operator watch that namespace too (the OperatorGroup's targetNamespaces, or --watch-namespaces)"
	)
	outside := notWatched{keys: []string{"far/shop"}, watched: []string{"ns", "other"}}
	for _, tc := range []struct {
		name                string
		missing, notAllowed []string
		outside             notWatched
		total               int
		want                metav1.Condition
	}{
		{"all resolved", nil, nil, notWatched{}, 2, newCondition(ConditionRoutesResolved, true, ReasonResolved, "all 2 routes resolved")},
		{"one missing", []string{"ns/b"}, nil, notWatched{}, 2, newCondition(ConditionRoutesResolved, false, ReasonRouteNotFound, notFound)},
		{"one without consent, one missing: consent first, both named", []string{"ns/b"}, []string{"other/pay"}, notWatched{}, 2,
			newCondition(ConditionRoutesResolved, false, ReasonNotAllowed, refused+"; "+notFound)},
		{"one in a namespace not watched", nil, nil, outside, 1, newCondition(ConditionRoutesResolved, false, ReasonNamespaceNotWatched, outOfNS)},
		{"not watched before consent and missing", []string{"ns/b"}, []string{"other/pay"}, outside, 3,
			newCondition(ConditionRoutesResolved, false, ReasonNamespaceNotWatched, outOfNS+"; "+refused+"; "+notFound)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, routesResolvedCondition(tc.missing, tc.notAllowed, tc.outside, tc.total)); diff != "" {
				t.Errorf("routesResolvedCondition() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMeshReadyCondition(t *testing.T) {
	ready := deploymentState{found: true, desired: 2, replicas: 2, readyReplicas: 2, ready: true}
	gateway := func(d deploymentState, synced *int32) *gatewayState {
		return &gatewayState{deployment: d, configVersion: "v7", synced: synced}
	}
	for _, tc := range []struct {
		name string
		in   meshReadyInputs
		want metav1.Condition
	}{
		{"gateway cannot be built", meshReadyInputs{failure: &failure{ReasonInvalidConfig, "speaks TCP"}, services: 1, readyServices: 1},
			newCondition(meshv1alpha1.ConditionReady, false, ReasonInvalidConfig, "speaks TCP")},
		{"gateway name taken", meshReadyInputs{failure: &failure{ReasonConflict, `Deployment "default-gateway" already exists`}},
			newCondition(meshv1alpha1.ConditionReady, false, ReasonConflict, `Deployment "default-gateway" already exists`)},
		{"gateway Deployment not in the cache yet", meshReadyInputs{gateway: gateway(deploymentState{desired: 1}, ptr.To[int32](0))},
			newCondition(meshv1alpha1.ConditionReady, false, ReasonProgressing, "gateway 0/1 replicas ready")},
		{"gateway rolling out", meshReadyInputs{gateway: gateway(deploymentState{found: true, desired: 2, readyReplicas: 1}, ptr.To[int32](2))},
			newCondition(meshv1alpha1.ConditionReady, false, ReasonProgressing, "gateway 1/2 replicas ready")},
		{"gateway Envoys behind", meshReadyInputs{gateway: gateway(ready, ptr.To[int32](1)), services: 1, readyServices: 1},
			newCondition(meshv1alpha1.ConditionReady, false, ReasonSidecarsNotReady, "gateway 1/2 Envoys live on config version v7")},
		{"gateway ready, no prober, members not", meshReadyInputs{gateway: gateway(ready, nil), services: 3, readyServices: 2},
			newCondition(meshv1alpha1.ConditionReady, false, ReasonProgressing, "2/3 MeshServices ready")},
		{"gateway and members ready", meshReadyInputs{gateway: gateway(ready, ptr.To[int32](2)), services: 3, readyServices: 3},
			newCondition(meshv1alpha1.ConditionReady, true, ReasonAvailable, "3/3 MeshServices ready")},
		{"no gateway, no members", meshReadyInputs{},
			newCondition(meshv1alpha1.ConditionReady, true, ReasonAvailable, "0/0 MeshServices ready")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, meshReadyCondition(tc.in)); diff != "" {
				t.Errorf("meshReadyCondition() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCountSynced(t *testing.T) {
	obs := []prober.PodObservation{
		{State: envoyadmin.StateLive, LDSVersion: "v7", CDSVersion: "v7"},
		{State: envoyadmin.StateLive, LDSVersion: "v7", CDSVersion: "v6"},
		{State: prober.StateUnreachable},
		{State: envoyadmin.StateLive, LDSVersion: "v7", CDSVersion: "v7"},
	}
	if got := countSynced(obs, "v7"); got != 2 {
		t.Errorf("countSynced() = %d, want 2", got)
	}
}

func TestGatewayOf(t *testing.T) {
	edge := &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "edge"}}
	want := []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "edge"}}}
	obj := func(name string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
	}
	for _, tc := range []struct {
		name  string
		names handler.MapFunc
		obj   string
		want  []reconcile.Request
	}{
		{"the gateway Deployment or Service", sameName, objects.GatewayName(edge), want},
		{"the gateway ConfigMap", configMapOf, objects.GatewayConfigMapName(edge), want},
		{"a MeshService's ConfigMap", configMapOf, "web-envoy", nil},
		{"a MeshService's Deployment", sameName, "web", nil},
		{"the bare suffix", sameName, objects.GatewaySuffix, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := gatewayOf(tc.names)(context.Background(), obj(tc.obj))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("gatewayOf() (-want +got):\n%s", diff)
			}
		})
	}
}
