package objects

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestApplyBodySendsOnlyWhatTheBuilderSet(t *testing.T) {
	body, err := ApplyBody(Deployment(testMeshService(), DefaultSidecar("envoy:1"), "h", true))
	if err != nil {
		t.Fatal(err)
	}
	if body.GetAPIVersion() != "apps/v1" || body.GetKind() != "Deployment" || body.GetName() != "service-a" {
		t.Errorf("identity %s %s %s", body.GetAPIVersion(), body.GetKind(), body.GetName())
	}
	if _, ok := body.Object["status"]; ok {
		t.Error("status must not be applied")
	}
	for _, path := range [][]string{
		{"metadata", "creationTimestamp"},
		{"spec", "template", "metadata", "creationTimestamp"},
	} {
		if _, found, _ := unstructured.NestedFieldNoCopy(body.Object, path...); found {
			t.Errorf("null %v must not be applied", path)
		}
	}
	if replicas, _, _ := unstructured.NestedInt64(body.Object, "spec", "replicas"); replicas != 2 {
		t.Errorf("spec.replicas %d, want 2", replicas)
	}
}
