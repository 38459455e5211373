package xds

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
)

func TestParseNode(t *testing.T) {
	for _, tc := range []struct {
		node             *corev3.Node
		wantName, wantNS string
		wantErr          bool
	}{
		{node: &corev3.Node{Id: "a.ns", Cluster: "a"}, wantName: "a", wantNS: "ns"},              // file delivery's bootstrap
		{node: &corev3.Node{Id: "a-7d9f-x1.ns", Cluster: "a"}, wantName: "a", wantNS: "ns"},      // --service-node <pod>.<namespace>
		{node: &corev3.Node{Id: "web.v2-abc.ns", Cluster: "web"}, wantName: "web", wantNS: "ns"}, // a pod name with a dot
		{node: &corev3.Node{Id: "m-gateway-1.ns", Cluster: "m-gateway"}, wantName: "m-gateway", wantNS: "ns"},
		{node: &corev3.Node{Id: "a.ns"}, wantErr: true},
		{node: &corev3.Node{Id: "a", Cluster: "a"}, wantErr: true},
		{node: &corev3.Node{Id: "a.", Cluster: "a"}, wantErr: true},
		{node: &corev3.Node{Id: ".ns", Cluster: "a"}, wantErr: true},
		{node: &corev3.Node{Id: "a.ns", Cluster: "a.ns"}, wantErr: true},
		{node: nil, wantErr: true},
	} {
		name, ns, err := ParseNode(tc.node)
		if (err != nil) != tc.wantErr || name != tc.wantName || ns != tc.wantNS {
			t.Errorf("ParseNode(%v) = %q, %q, %v", tc.node, name, ns, err)
		}
		if !tc.wantErr && (nodeKeyHash{}).ID(tc.node) != NodeKey(tc.wantName, tc.wantNS) {
			t.Errorf("snapshot key of %v = %q", tc.node, (nodeKeyHash{}).ID(tc.node))
		}
	}
}

// The snapshot carries the builder's versions, and a Resources without them
// gets the very same: one hash scheme, so replicas and deliveries agree.
func TestSnapshotVersionsAreTheBuildsContentHashes(t *testing.T) {
	res := sidecarResources(t, "ns", "a", 8080, "127.0.0.10", "127.0.0.11")
	snap, err := snapshotOf(res)
	if err != nil {
		t.Fatal(err)
	}
	want := Versions{ListenerType: res.Version, ClusterType: res.Version, SecretType: res.Version, EndpointType: res.EndpointsVersion}
	if got := versionsOf(snap); !equal(got, want) {
		t.Errorf("versions %v, want %v", got, want)
	}
	bare := *res
	bare.Version, bare.EndpointsVersion = "", ""
	snap, err = snapshotOf(&bare)
	if err != nil {
		t.Fatal(err)
	}
	if got := versionsOf(snap); !equal(got, want) {
		t.Errorf("versions computed here %v, want the builder's %v", got, want)
	}

	// Endpoints that do not match the EDS clusters are refused.
	bare.Endpoints = append(bare.Endpoints, assignment("out.stranger.ns"))
	if _, err := snapshotOf(&bare); err == nil {
		t.Error("a snapshot with an assignment for no cluster was accepted")
	}
	bare.Endpoints = nil
	if _, err := snapshotOf(&bare); err == nil {
		t.Error("a snapshot without the assignment of an EDS cluster was accepted")
	}
}

func equal(a, b Versions) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// The tracker's rules for when a NACK stops standing.
func TestNACKStandsUntilALaterACK(t *testing.T) {
	tr := newTracker(nil)
	tr.opened(1, "127.0.0.1:1", "id")
	tr.opened(2, "127.0.0.2:1", "id")
	st1, st2 := tr.get(1), tr.get(2)
	tr.bound(st1, "a.ns", "a-1.ns", "a")
	tr.bound(st2, "a.ns", "a-2.ns", "a")
	req := func(st *stream, version, nonce string, nack bool) {
		r := &discoveryv3.DiscoveryRequest{TypeUrl: ListenerType, VersionInfo: version, ResponseNonce: nonce}
		if nack {
			r.ErrorDetail = &rpcstatus.Status{Code: 13, Message: "bad listener"}
		}
		tr.requested(st, r)
	}
	sent := func(id int64, version, nonce string) {
		tr.responded(id, &discoveryv3.DiscoveryResponse{TypeUrl: ListenerType, VersionInfo: version, Nonce: nonce})
	}

	req(st1, "", "", false)
	sent(1, "v1", "1")
	req(st1, "v1", "1", false) // ACK
	sent(1, "v2", "2")
	req(st1, "v1", "2", true) // NACK of v2
	st := tr.status("a.ns")
	if st.LastNACK == nil || st.LastNACK.Version != "v2" || st.Proxies[0].NACK == nil || st.Proxies[0].Acked[ListenerType] != "v1" {
		t.Fatalf("after the NACK: %+v", st)
	}

	req(st1, "v1", "2", false) // a resource hint after the NACK, same nonce: still rejecting
	if st := tr.status("a.ns"); st.LastNACK == nil || st.Proxies[0].NACK == nil {
		t.Fatal("a request repeating the NACKed response's nonce cleared the NACK")
	}
	req(st2, "v2", "7", false) // another proxy ACKs the version the first rejected
	if st := tr.status("a.ns"); st.LastNACK == nil {
		t.Fatal("another proxy ACKing the rejected version cleared the NACK")
	}

	sent(1, "v3", "3")
	req(st1, "v3", "3", false) // ACK of a later response
	st = tr.status("a.ns")
	if st.LastNACK != nil || st.Proxies[0].NACK != nil || st.LastAcked[ListenerType] != "v3" {
		t.Fatalf("after the later ACK: %+v", st)
	}
}
