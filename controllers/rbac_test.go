package controllers

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
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
// wildcards, no Secrets, nothing beyond what the controllers, the probers and the
// signer use. A new permission must be added here on purpose. Only the signer's
// own name may be signed for and attested.
func TestClusterRoleIsLeastPrivilege(t *testing.T) {
	want := map[string][]string{
		"/configmaps":                                             {"create", "delete", "get", "list", "patch", "watch"},
		"/services":                                               {"create", "delete", "get", "list", "patch", "watch"},
		"/pods":                                                   {"get", "list", "watch"},
		"/serviceaccounts":                                        {"create", "get", "list", "patch", "watch"},
		"networking.k8s.io/networkpolicies":                       {"create", "delete", "get", "list", "patch", "watch"},
		"policy/poddisruptionbudgets":                             {"create", "delete", "get", "list", "patch", "watch"},
		"discovery.k8s.io/endpointslices":                         {"get", "list", "watch"},
		"monitoring.coreos.com/podmonitors":                       {"create", "delete", "get", "list", "patch", "watch"},
		"certificates.k8s.io/podcertificaterequests":              {"get", "list", "watch"},
		"certificates.k8s.io/podcertificaterequests/status":       {"update"},
		"certificates.k8s.io/clustertrustbundles":                 {"create", "delete", "get", "list", "patch", "watch"},
		"certificates.k8s.io/signers[mesh.envoymesh.io/identity]": {"attest", "sign"},
		"apps/deployments":                                        {"create", "delete", "get", "list", "patch", "watch"},
		"events.k8s.io/events":                                    {"create", "patch"},
		"mesh.envoymesh.io/meshservices":                          {"get", "list", "watch"},
		"mesh.envoymesh.io/servicemeshes":                         {"get", "list", "watch"},
		"mesh.envoymesh.io/meshservices/status":                   {"get", "patch", "update"},
		"mesh.envoymesh.io/servicemeshes/status":                  {"get", "patch", "update"},
	}
	got := map[string][]string{}
	for _, rule := range loadClusterRole(t).Rules {
		if len(rule.NonResourceURLs) > 0 {
			t.Errorf("unexpected rule shape %+v", rule)
		}
		names := ""
		if len(rule.ResourceNames) > 0 {
			names = "[" + strings.Join(rule.ResourceNames, ",") + "]"
		}
		for _, g := range rule.APIGroups {
			for _, r := range rule.Resources {
				if g == "*" || r == "*" || slices.Contains(rule.Verbs, "*") {
					t.Errorf("wildcard in rule %+v", rule)
				}
				if r == "secrets" {
					t.Errorf("the manager must not read Secrets: %+v", rule)
				}
				key := g + "/" + r + names
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

// TestSecretsOnlyInTheManagersNamespace: the one Secret the manager touches, the
// identity CA, is reachable through a Role (namespaced), never the ClusterRole,
// and the Role grants nothing else and cannot update or delete it.
func TestSecretsOnlyInTheManagersNamespace(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "config", "rbac", "identity_ca_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{}
	if err := yaml.UnmarshalStrict(data, role); err != nil {
		t.Fatal(err)
	}
	want := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch", "create"}}}
	if role.Kind != "Role" || !slices.EqualFunc(role.Rules, want, func(a, b rbacv1.PolicyRule) bool {
		return slices.Equal(a.APIGroups, b.APIGroups) && slices.Equal(a.Resources, b.Resources) && slices.Equal(a.Verbs, b.Verbs) && len(a.ResourceNames) == 0
	}) {
		t.Errorf("identity CA role %s %+v, want a Role with %+v", role.Kind, role.Rules, want)
	}
}
