package controllers

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// loadClusterRole reads the ClusterRole controller-gen generates from the
// +kubebuilder:rbac markers.
func loadClusterRole(t interface{ Fatalf(string, ...any) }) *rbacv1.ClusterRole {
	data, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatalf("%v", err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(data, role); err != nil {
		t.Fatalf("%v", err)
	}
	return role
}

// TestClusterRoleIsLeastPrivilege pins every permission the manager holds: no
// wildcards, no Secrets, nothing beyond what the controllers and probers use. A
// new permission must be added here on purpose.
func TestClusterRoleIsLeastPrivilege(t *testing.T) {
	want := map[string][]string{
		"/configmaps":                            {"create", "delete", "get", "list", "patch", "watch"},
		"/services":                              {"create", "delete", "get", "list", "patch", "watch"},
		"/pods":                                  {"get", "list", "watch"},
		"apps/deployments":                       {"create", "delete", "get", "list", "patch", "watch"},
		"events.k8s.io/events":                   {"create", "patch"},
		"mesh.envoymesh.io/meshservices":         {"get", "list", "watch"},
		"mesh.envoymesh.io/servicemeshes":        {"get", "list", "watch"},
		"mesh.envoymesh.io/meshservices/status":  {"get", "patch", "update"},
		"mesh.envoymesh.io/servicemeshes/status": {"get", "patch", "update"},
	}
	got := map[string][]string{}
	for _, rule := range loadClusterRole(t).Rules {
		if len(rule.ResourceNames) > 0 || len(rule.NonResourceURLs) > 0 {
			t.Errorf("unexpected rule shape %+v", rule)
		}
		for _, g := range rule.APIGroups {
			for _, r := range rule.Resources {
				if g == "*" || r == "*" || slices.Contains(rule.Verbs, "*") {
					t.Errorf("wildcard in rule %+v", rule)
				}
				if r == "secrets" {
					t.Errorf("the manager must not read Secrets: %+v", rule)
				}
				key := g + "/" + r
				got[key] = append(got[key], rule.Verbs...)
			}
		}
	}
	for k := range got {
		slices.Sort(got[k])
		got[k] = slices.Compact(got[k])
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			t.Errorf("%s: verbs %v, want %v", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected permission on %s: %v", k, got[k])
		}
	}
}
