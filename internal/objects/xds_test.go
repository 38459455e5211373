package objects

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// In an XDS mesh each Envoy names itself after its pod, so the ADS server can
// tell the proxies of one MeshService apart; file delivery needs no such name.
func TestXDSSidecarNamesItsNode(t *testing.T) {
	sc := DefaultSidecar("envoy:1")
	plain := Deployment(testMeshService(), sc, "h", true).Spec.Template.Spec.InitContainers[0]
	if plain.Env != nil {
		t.Errorf("file delivery sets env %v", plain.Env)
	}
	sc.XDS = true
	c := Deployment(testMeshService(), sc, "h", true).Spec.Template.Spec.InitContainers[0]
	want := []string{"-c", "/etc/envoy/envoy.yaml", "--log-level", "info", "--service-node", "$(POD_NAME).$(POD_NAMESPACE)"}
	if d := cmp.Diff(want, c.Args); d != "" {
		t.Errorf("args (-want +got):\n%s", d)
	}
	got := map[string]string{}
	for _, e := range c.Env {
		got[e.Name] = e.ValueFrom.FieldRef.FieldPath
	}
	if d := cmp.Diff(map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}, got); d != "" {
		t.Errorf("env (-want +got):\n%s", d)
	}
}
