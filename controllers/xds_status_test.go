package controllers

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
	"github.com/envoymesh/envoymesh-operator/internal/xds"
)

func TestStreamObservations(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	acked := func(v string) xds.Versions {
		return xds.Versions{xds.ListenerType: v, xds.ClusterType: v, xds.EndpointType: "e1"}
	}
	st := xds.NodeStatus{
		Snapshot: xds.Versions{xds.ListenerType: "v2", xds.ClusterType: "v2"},
		Proxies: []xds.ProxyStatus{
			{NodeID: "a-1.shop", Since: t0, Acked: acked("v2")},
			{NodeID: "b-1.shop", Since: t0, Acked: acked("v1"), NACK: &xds.NACK{TypeURL: xds.ListenerType, Version: "v2", Message: "bad listener"}},
			// an older stream of the same pod, still open: the newer wins
			{NodeID: "b-1.shop", Since: t0.Add(-time.Minute), Acked: acked("v0")},
			// a stale NACK of a version no longer current is not a rejection
			{NodeID: "c-1.shop", Since: t0, Acked: acked("v2"), NACK: &xds.NACK{TypeURL: xds.ClusterType, Version: "v1", Message: "old"}},
			// another namespace's node id never shows up here
			{NodeID: "x-1.other", Since: t0, Acked: acked("v2")},
		},
	}
	probed := []prober.PodObservation{
		// stats counters say v9: ignored in XDS meshes
		{Pod: "a-1", State: envoyadmin.StateLive, EnvoyVersion: "1.40.0", LDSVersion: "v9", CDSVersion: "v9", Rejecting: true, Denied: 3},
		// probed but holding no stream: no version at all
		{Pod: "d-1", State: envoyadmin.StateLive, LDSVersion: "v2", CDSVersion: "v2"},
	}
	obs, x := streamObservations(probed, st, "shop")

	want := []prober.PodObservation{
		{Pod: "a-1", State: envoyadmin.StateLive, EnvoyVersion: "1.40.0", LDSVersion: "v2", CDSVersion: "v2", Denied: 3},
		{Pod: "d-1", State: envoyadmin.StateLive},
		{Pod: "b-1", State: envoyadmin.StateLive, LDSVersion: "v1", CDSVersion: "v1", Rejecting: true},
		{Pod: "c-1", State: envoyadmin.StateLive, LDSVersion: "v2", CDSVersion: "v2"},
	}
	if d := cmp.Diff(want, obs); d != "" {
		t.Errorf("observations (-want +got):\n%s", d)
	}
	wantX := map[string]*meshv1alpha1.XDSProxyStatus{
		"a-1": {Connected: true, AckedVersion: "v2"},
		"d-1": {},
		"b-1": {Connected: true, AckedVersion: "v1", RejectedVersion: "v2", RejectReason: "bad listener"},
		"c-1": {Connected: true, AckedVersion: "v2"},
	}
	if d := cmp.Diff(wantX, x); d != "" {
		t.Errorf("xds status (-want +got):\n%s", d)
	}
	if !syncedTo(obs[0], "v2") || syncedTo(obs[1], "v2") || syncedTo(obs[2], "v2") {
		t.Errorf("synced: a-1 is, d-1 (no stream) and b-1 (NACKed) are not")
	}
}

func TestNewlyNACKed(t *testing.T) {
	rejected := func(pod, v string) meshv1alpha1.ProxyStatus {
		return meshv1alpha1.ProxyStatus{Pod: pod, XDS: &meshv1alpha1.XDSProxyStatus{Connected: true, RejectedVersion: v, RejectReason: "why"}}
	}
	prev := []meshv1alpha1.ProxyStatus{rejected("a", "v1"), rejected("b", "")}
	next := []meshv1alpha1.ProxyStatus{rejected("a", "v1"), rejected("b", "v2"), rejected("c", "v2"), {Pod: "d"}}
	got := newlyNACKed(prev, next)
	want := []string{
		"proxy b rejected config version v2 over xDS and keeps its last accepted config: why",
		"proxy c rejected config version v2 over xDS and keeps its last accepted config: why",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// The leader counts the other replicas' live reports, never its own (its own
// streams come from memory) nor one whose replica stopped renewing it.
func TestXDSReportsProxies(t *testing.T) {
	now := time.Unix(2e9, 0)
	p := proxyReport{NodeID: "a-1.shop", Since: now, Acked: map[string]string{xds.ListenerType: "v1"},
		NACK: &nackReport{TypeURL: xds.ClusterType, Version: "v2", Message: "bad"}}
	r := &xdsReports{Self: "me", Expiry: time.Minute, Now: func() time.Time { return now }, reports: map[string]xdsReport{
		"r-me":    {Replica: "me", Renewed: now, Nodes: map[string][]proxyReport{"a.shop": {p}}},
		"r-other": {Replica: "other", Renewed: now.Add(-59 * time.Second), Nodes: map[string][]proxyReport{"a.shop": {p}}},
		"r-gone":  {Replica: "gone", Renewed: now.Add(-61 * time.Second), Nodes: map[string][]proxyReport{"a.shop": {p}}},
	}}
	got := r.proxies("a.shop")
	want := []xds.ProxyStatus{{NodeID: "a-1.shop", Since: now, Acked: xds.Versions{xds.ListenerType: "v1"},
		NACK: &xds.NACK{TypeURL: xds.ClusterType, Version: "v2", Message: "bad"}}}
	if d := cmp.Diff(want, got, cmpopts.IgnoreUnexported(xds.NACK{})); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if got := r.proxies("b.shop"); len(got) != 0 {
		t.Errorf("b.shop: %v", got)
	}
	if d := cmp.Diff(map[string]bool{"a.shop": true, "c.shop": true}, changedKeys(
		map[string][]proxyReport{"a.shop": {p}, "b.shop": {p}},
		map[string][]proxyReport{"b.shop": {p}, "c.shop": {p}})); d != "" {
		t.Errorf("changedKeys (-want +got):\n%s", d)
	}
}
