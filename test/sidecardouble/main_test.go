package main

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func configMap(version string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a-envoy"},
		Data: map[string]string{
			"lds.yaml": "version_info: " + version + "\nresources: []\n",
			"cds.yaml": "version_info: " + version + "\nresources:\n- name: local_app\n- name: out.b.ns\n",
		},
	}
}

func TestParseConfigAndHosts(t *testing.T) {
	version, clusters := parseConfig(configMap("v1"))
	if version != "v1" || len(clusters) != 2 || clusters[1] != "out.b.ns" {
		t.Fatalf("parseConfig = %q, %v", version, clusters)
	}
	got := hosts(clusters, map[string]int{"ns/b": 3})
	if got[0].Hosts != 1 || got[1].Hosts != 3 || got[1].Healthy != 3 {
		t.Fatalf("hosts = %+v", got)
	}
}

// TestStepLoadsAfterDelayAndRejects follows one sidecar through a first load, a
// delayed update, a rejected update and the fault being cleared. The double's clock
// is the test's: the delay has passed exactly when the test moves the clock past it,
// so no sleep decides anything.
func TestStepLoadsAfterDelayAndRejects(t *testing.T) {
	const delay = 50 * time.Millisecond
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := &double{delay: delay, now: func() time.Time { return clock }, sidecars: map[string]*sidecar{}, faults: map[string]string{}}
	s := &sidecar{key: "ns/a-1/uid", owner: "ns/a", addr: "127.0.0.1:0", configMap: "a-envoy"}
	defer func() { s.stub.Close() }()
	cm := configMap("v1")
	get := func(string, string) (*corev1.ConfigMap, error) { return cm, nil }

	d.step(s, get, nil)
	if s.loaded != "v1" {
		t.Fatalf("first version not loaded at once: %q", s.loaded)
	}
	cm = configMap("v2")
	d.step(s, get, nil)
	if s.loaded != "v1" {
		t.Fatalf("v2 loaded before the propagation delay")
	}
	clock = clock.Add(delay - time.Nanosecond)
	d.step(s, get, nil)
	if s.loaded != "v1" {
		t.Fatalf("v2 loaded %v before the propagation delay ends", time.Nanosecond)
	}
	clock = clock.Add(time.Nanosecond)
	d.step(s, get, nil)
	if s.loaded != "v2" {
		t.Fatalf("v2 not loaded after the delay: %q", s.loaded)
	}

	d.faults["ns/a"] = faultReject
	cm = configMap("v3")
	d.step(s, get, nil)
	if s.loaded != "v2" || s.rejected != 0 {
		t.Fatalf("reject before the delay: loaded %q, rejected %d; want v2, 0", s.loaded, s.rejected)
	}
	clock = clock.Add(delay)
	d.step(s, get, nil)
	d.step(s, get, nil)
	if s.loaded != "v2" || s.rejected != 1 {
		t.Fatalf("reject: loaded %q, rejected %d; want v2, 1", s.loaded, s.rejected)
	}
	delete(d.faults, "ns/a")
	d.step(s, get, nil)
	if s.loaded != "v3" {
		t.Fatalf("after clearing the fault: loaded %q, want v3", s.loaded)
	}
}
