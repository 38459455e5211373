package bundle

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestMetricsEndpoint: the bundle installs the manager's metrics as config/default
// does: HTTPS on 8443 with authentication and authorization (no
// --metrics-secure=false), its Service and NetworkPolicy on that port, and the
// metrics-reader ClusterRole a scraper is bound to. The manager's permission to
// check scrapers is TestInstallHonorsOperatorGroup's.
func TestMetricsEndpoint(t *testing.T) {
	b := loadBundle(t)
	dep, i := managerContainer(t, b.CSV)
	c := dep.Spec.Template.Spec.Containers[i]
	if !contains(c.Args, "--metrics-bind-address=:8443") {
		t.Errorf("manager args %q do not serve metrics at :8443", c.Args)
	}
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--metrics-secure") {
			t.Errorf("manager arg %q: the bundle serves metrics with the secure default", a)
		}
	}
	var ports []int32
	for _, p := range c.Ports {
		ports = append(ports, p.ContainerPort)
	}
	if fmt.Sprint(ports) != "[18000 8443]" {
		t.Errorf("manager ports %v, want 18000 (xDS) and 8443 (metrics) only", ports)
	}

	var (
		svc    *corev1.Service
		policy *networkingv1.NetworkPolicy
		reader *rbacv1.ClusterRole
	)
	for _, o := range b.Objects {
		var into any
		switch {
		case o.GetKind() == "Service" && o.GetName() == "envoymesh-controller-manager-metrics-service":
			svc = &corev1.Service{}
			into = svc
		case o.GetKind() == "NetworkPolicy" && o.GetName() == "envoymesh-controller-manager":
			policy = &networkingv1.NetworkPolicy{}
			into = policy
		case o.GetKind() == "ClusterRole" && o.GetName() == "envoymesh-metrics-reader":
			reader = &rbacv1.ClusterRole{}
			into = reader
		default:
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}

	if svc == nil {
		t.Error("the bundle has no Service envoymesh-controller-manager-metrics-service")
	} else if p := svc.Spec.Ports; len(p) != 1 || p[0].Port != 8443 || p[0].TargetPort != intstr.FromInt32(8443) {
		t.Errorf("metrics Service ports %v, want 8443 -> 8443", p)
	}

	if policy == nil {
		t.Error("the bundle has no NetworkPolicy envoymesh-controller-manager")
	} else {
		var ports []string
		for _, rule := range policy.Spec.Ingress {
			for _, p := range rule.Ports {
				ports = append(ports, p.Port.String())
			}
		}
		if strings.Join(ports, ",") != "8443,8081,18000" {
			t.Errorf("the manager's NetworkPolicy admits ports %v, want 8443 (metrics), 8081 (health) and 18000 (xDS)", ports)
		}
	}

	var want rbacv1.ClusterRole
	readInto(t, filepath.Join(repoRoot, "config", "rbac", "metrics_reader_role.yaml"), &want)
	if reader == nil {
		t.Error("the bundle has no ClusterRole envoymesh-metrics-reader")
	} else if !equality.Semantic.DeepEqual(reader.Rules, want.Rules) {
		t.Errorf("envoymesh-metrics-reader rules %v, want config/rbac/metrics_reader_role.yaml's %v", reader.Rules, want.Rules)
	}
}
