package main

import (
	"strings"
	"testing"
)

func TestCheckFailsOnlyOnWhatTheOperatorControls(t *testing.T) {
	in := `[OK] default-gateway/demo v1/Service
[CRITICAL] default-gateway/demo apps/v1/Deployment: (envoy) Memory limit is not set
[CRITICAL] service-a/demo apps/v1/Deployment: (service-a) Memory limit is not set
[CRITICAL] service-a/demo apps/v1/Deployment: (envoy) CPU limit is not set
[CRITICAL] service-a/demo apps/v1/Deployment: The pod does not have a matching NetworkPolicy
[CRITICAL] service-a/demo apps/v1/Deployment: No matching PodDisruptionBudget was found
[CRITICAL] m/sys apps/v1/Deployment: (manager) The container is running with a low user ID
[CRITICAL] m/sys apps/v1/Deployment: (manager) ImagePullPolicy is not set to Always
[WARNING] m/sys apps/v1/Deployment: Deployment few replicas
`
	var out strings.Builder
	failed, err := check(strings.NewReader(in), &out, []string{"default-gateway/demo v1/Service", "m/sys apps/v1/Deployment"})
	if err != nil {
		t.Fatal(err)
	}
	// envoy's memory limit, the pod's NetworkPolicy, the manager's user ID.
	if failed != 3 {
		t.Errorf("failed %d, want 3:\n%s", failed, out.String())
	}
	for _, want := range []string{
		"  FAIL    [CRITICAL] default-gateway/demo apps/v1/Deployment: (envoy) Memory limit",
		"  user's  [CRITICAL] service-a/demo apps/v1/Deployment: (service-a) Memory limit",
		"  ignored [CRITICAL] service-a/demo apps/v1/Deployment: (envoy) CPU limit",
		"  FAIL    [CRITICAL] service-a/demo apps/v1/Deployment: The pod does not have a matching NetworkPolicy",
		"  ignored [CRITICAL] service-a/demo apps/v1/Deployment: No matching PodDisruptionBudget",
		"  FAIL    [CRITICAL] m/sys apps/v1/Deployment: (manager) The container is running with a low user ID",
		"  ignored [CRITICAL] m/sys apps/v1/Deployment: (manager) ImagePullPolicy",
		"  report  [WARNING] m/sys apps/v1/Deployment: Deployment few replicas",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCheckFailsWhenAnObjectWasNotScored(t *testing.T) {
	_, err := check(strings.NewReader("[OK] a/ns v1/Service\n"), &strings.Builder{}, []string{"a/ns v1/Service", "b/ns apps/v1/Deployment"})
	if err == nil || !strings.Contains(err.Error(), "b/ns apps/v1/Deployment") {
		t.Errorf("err %v, want b/ns apps/v1/Deployment not scored", err)
	}
}
