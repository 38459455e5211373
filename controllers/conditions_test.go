package controllers

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
)

// deploymentWith is a Deployment of generation 2 that wants want replicas and
// whose status is what the Deployment controller reported.
func deploymentWith(want *int32, st appsv1.DeploymentStatus) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Generation: 2},
		Spec:       appsv1.DeploymentSpec{Replicas: want},
		Status:     st,
	}
}

func available(s corev1.ConditionStatus) []appsv1.DeploymentCondition {
	return []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: s}}
}

func TestDeploymentReadiness(t *testing.T) {
	done := appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 3, Conditions: available(corev1.ConditionTrue)}
	with := func(f func(*appsv1.DeploymentStatus)) appsv1.DeploymentStatus {
		s := *done.DeepCopy()
		f(&s)
		return s
	}
	for _, tc := range []struct {
		name string
		dep  *appsv1.Deployment
		want deploymentState
	}{
		{"nil", nil, deploymentState{desired: 1}},
		{"not found (empty)", &appsv1.Deployment{}, deploymentState{desired: 1}},
		{"available, updated and ready", deploymentWith(ptr.To[int32](3), done),
			deploymentState{found: true, desired: 3, replicas: 3, readyReplicas: 3, ready: true}},
		{"replicas unset means 1", deploymentWith(nil, with(func(s *appsv1.DeploymentStatus) { s.Replicas, s.UpdatedReplicas, s.ReadyReplicas = 1, 1, 1 })),
			deploymentState{found: true, desired: 1, replicas: 1, readyReplicas: 1, ready: true}},
		{"scaled to zero and available", deploymentWith(ptr.To[int32](0), with(func(s *appsv1.DeploymentStatus) { s.Replicas, s.UpdatedReplicas, s.ReadyReplicas = 0, 0, 0 })),
			deploymentState{found: true, desired: 0, ready: true}},
		{"not Available", deploymentWith(ptr.To[int32](3), with(func(s *appsv1.DeploymentStatus) { s.Conditions = available(corev1.ConditionFalse) })),
			deploymentState{found: true, desired: 3, replicas: 3, readyReplicas: 3}},
		{"no conditions yet", deploymentWith(ptr.To[int32](3), with(func(s *appsv1.DeploymentStatus) { s.Conditions = nil })),
			deploymentState{found: true, desired: 3, replicas: 3, readyReplicas: 3}},
		{"current spec not yet observed", deploymentWith(ptr.To[int32](3), with(func(s *appsv1.DeploymentStatus) { s.ObservedGeneration = 1 })),
			deploymentState{found: true, desired: 3, replicas: 3, readyReplicas: 3}},
		{"rolling: not every replica updated", deploymentWith(ptr.To[int32](3), with(func(s *appsv1.DeploymentStatus) { s.UpdatedReplicas = 2 })),
			deploymentState{found: true, desired: 3, replicas: 3, readyReplicas: 3}},
		{"not every replica ready", deploymentWith(ptr.To[int32](3), with(func(s *appsv1.DeploymentStatus) { s.ReadyReplicas = 2 })),
			deploymentState{found: true, desired: 3, replicas: 3, readyReplicas: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := deploymentReadiness(tc.dep); got != tc.want {
				t.Errorf("deploymentReadiness() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestSyncedTo(t *testing.T) {
	const v = "00000000000000aa"
	for _, tc := range []struct {
		name string
		obs  prober.PodObservation
		want bool
	}{
		{"live on v", prober.PodObservation{State: envoyadmin.StateLive, LDSVersion: v, CDSVersion: v}, true},
		{"listeners behind", prober.PodObservation{State: envoyadmin.StateLive, LDSVersion: "old", CDSVersion: v}, false},
		{"clusters behind", prober.PodObservation{State: envoyadmin.StateLive, LDSVersion: v, CDSVersion: "old"}, false},
		{"on v but not live", prober.PodObservation{State: "INITIALIZING", LDSVersion: v, CDSVersion: v}, false},
		{"unreachable", prober.PodObservation{State: prober.StateUnreachable}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := syncedTo(tc.obs, v); got != tc.want {
				t.Errorf("syncedTo() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSetConditionsStampsGenerationAndKeepsTransitionTime(t *testing.T) {
	var conds []metav1.Condition
	setConditions(&conds, 3, newCondition("Ready", false, "Progressing", "1/2"))
	first := conds[0].LastTransitionTime
	setConditions(&conds, 4, newCondition("Ready", false, "Progressing", "2/2"))
	if len(conds) != 1 || conds[0].ObservedGeneration != 4 || conds[0].Message != "2/2" {
		t.Fatalf("conditions = %+v", conds)
	}
	if !conds[0].LastTransitionTime.Equal(&first) {
		t.Errorf("lastTransitionTime moved without a status change")
	}
}

func TestWatches(t *testing.T) {
	for _, tc := range []struct {
		name       string
		namespaces []string
		ns         string
		want       bool
	}{
		{"every namespace", nil, "any", true},
		{"a watched one", []string{"a", "b"}, "b", true},
		{"another", []string{"a", "b"}, "c", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := watches(tc.namespaces, tc.ns); got != tc.want {
				t.Errorf("watches(%v, %q) = %v, want %v", tc.namespaces, tc.ns, got, tc.want)
			}
		})
	}
}

func TestNotWatchedMessage(t *testing.T) {
	if got := (notWatched{watched: []string{"a"}}).message("it fails"); got != "" {
		t.Errorf("nothing outside: message %q, want none", got)
	}
	got := notWatched{keys: []string{"x/up", "y/up"}, watched: []string{"a", "b"}}.message("its listener answers 503")
	for _, want := range []string{"MeshService [x/up y/up]", "it watches [a b]", "its listener answers 503", "targetNamespaces", "--watch-namespaces"} {
		if !strings.Contains(got, want) {
			t.Errorf("message %q lacks %q", got, want)
		}
	}
}

func TestJoinMessages(t *testing.T) {
	if got := joinMessages("", "a", "", "b", ""); got != "a; b" {
		t.Errorf("joinMessages() = %q, want %q", got, "a; b")
	}
	if got := joinMessages("", ""); got != "" {
		t.Errorf("joinMessages() = %q, want none", got)
	}
}
