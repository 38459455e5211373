package objects

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

func TestPodDisruptionBudget(t *testing.T) {
	for _, tc := range []struct {
		name       string
		disruption meshv1alpha1.Disruption
		want       policyv1.PodDisruptionBudgetSpec
	}{
		{"maxUnavailable as a number", meshv1alpha1.Disruption{MaxUnavailable: ptr.To(intstr.FromInt32(1))},
			policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(1))}},
		{"minAvailable as a percentage", meshv1alpha1.Disruption{MinAvailable: ptr.To(intstr.FromString("50%"))},
			policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromString("50%"))}},
		{"maxUnavailable 0 is kept: no voluntary eviction at all", meshv1alpha1.Disruption{MaxUnavailable: ptr.To(intstr.FromInt32(0))},
			policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr.To(intstr.FromInt32(0))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := testMeshService()
			ms.Spec.Disruption = &tc.disruption
			pdb := PodDisruptionBudget(ms)

			want := tc.want
			want.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{ServiceLabel: "service-a"}}
			want.UnhealthyPodEvictionPolicy = ptr.To(policyv1.AlwaysAllow)
			if d := cmp.Diff(want, pdb.Spec); d != "" {
				t.Errorf("spec (-want +got):\n%s", d)
			}
			if pdb.APIVersion != "policy/v1" || pdb.Kind != "PodDisruptionBudget" {
				t.Errorf("type %s %s, want policy/v1 PodDisruptionBudget", pdb.APIVersion, pdb.Kind)
			}
			if pdb.Name != "service-a" || pdb.Namespace != "shop" {
				t.Errorf("named %s/%s, want shop/service-a", pdb.Namespace, pdb.Name)
			}
			if d := cmp.Diff(commonLabels(ms), pdb.Labels); d != "" {
				t.Errorf("labels (-want +got):\n%s", d)
			}
			if pdb.Labels[ManagedByLabel] != ManagedBy {
				t.Errorf("labels %v lack %s=%s", pdb.Labels, ManagedByLabel, ManagedBy)
			}
			refs := pdb.OwnerReferences
			if len(refs) != 1 || refs[0].UID != "uid-1" || refs[0].Kind != "MeshService" || !ptr.Deref(refs[0].Controller, false) {
				t.Errorf("owner references %+v, want one controller reference to the MeshService", refs)
			}
		})
	}
}

// The budget must count exactly the pods the Deployment runs.
func TestPodDisruptionBudgetSelectsTheDeploymentsPods(t *testing.T) {
	ms := testMeshService()
	ms.Spec.Disruption = &meshv1alpha1.Disruption{MinAvailable: ptr.To(intstr.FromInt32(1))}
	pdb := PodDisruptionBudget(ms)
	dep := Deployment(ms, DefaultSidecar("envoy:1"), "h1", true)
	if d := cmp.Diff(dep.Spec.Selector, pdb.Spec.Selector); d != "" {
		t.Errorf("selector differs from the Deployment's (-deployment +pdb):\n%s", d)
	}
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Errorf("selector %s does not select the pod template's labels %v", sel, dep.Spec.Template.Labels)
	}
}

func TestGatewayPodDisruptionBudget(t *testing.T) {
	mesh := testServiceMesh()
	mesh.Spec.Gateway.Disruption = &meshv1alpha1.Disruption{MaxUnavailable: ptr.To(intstr.FromString("25%"))}
	pdb := GatewayPodDisruptionBudget(mesh)

	want := policyv1.PodDisruptionBudgetSpec{
		Selector:                   &metav1.LabelSelector{MatchLabels: map[string]string{GatewayLabel: "edge"}},
		MaxUnavailable:             ptr.To(intstr.FromString("25%")),
		UnhealthyPodEvictionPolicy: ptr.To(policyv1.AlwaysAllow),
	}
	if d := cmp.Diff(want, pdb.Spec); d != "" {
		t.Errorf("spec (-want +got):\n%s", d)
	}
	if pdb.Name != "edge-gateway" || pdb.Namespace != "shop" {
		t.Errorf("named %s/%s, want shop/edge-gateway", pdb.Namespace, pdb.Name)
	}
	if d := cmp.Diff(gatewayLabels(mesh), pdb.Labels); d != "" {
		t.Errorf("labels (-want +got):\n%s", d)
	}
	refs := pdb.OwnerReferences
	if len(refs) != 1 || refs[0].UID != "mesh-uid" || refs[0].Kind != "ServiceMesh" || !ptr.Deref(refs[0].Controller, false) {
		t.Errorf("owner references %+v, want one controller reference to the ServiceMesh", refs)
	}
	dep := GatewayDeployment(mesh, DefaultSidecar("envoy:1"), "h1")
	if d := cmp.Diff(dep.Spec.Selector, pdb.Spec.Selector); d != "" {
		t.Errorf("selector differs from the gateway Deployment's (-deployment +pdb):\n%s", d)
	}
}
