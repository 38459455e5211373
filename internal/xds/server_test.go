package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync/atomic"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/xds/fleetsim"
)

// The manager runs the server on every replica and probes it.
var (
	_ manager.Runnable               = (*Server)(nil)
	_ manager.LeaderElectionRunnable = (*Server)(nil)
	_ healthz.Checker                = (*Server)(nil).ReadyCheck
)

func TestNewRequiresTLSAndAuthorize(t *testing.T) {
	p := newPKI(t)
	if _, err := New(Options{Authorize: authorizeByServiceAccount}); err == nil {
		t.Error("New without TLS succeeded")
	}
	if _, err := New(Options{TLS: p.serverTLS(t)}); err == nil {
		t.Error("New without Authorize succeeded")
	}
	noCAs := p.serverTLS(t)
	noCAs.ClientCAs = nil
	if _, err := New(Options{TLS: noCAs, Authorize: authorizeByServiceAccount}); err == nil {
		t.Error("New without client CAs succeeded")
	}
}

// Credentials that rotate come through GetConfigForClient; whatever config it
// returns, a client certificate is required, and with no CAs nobody gets in.
func TestGetConfigForClientStillRequiresClientCerts(t *testing.T) {
	p := newPKI(t)
	server := p.serverTLS(t)
	var roots atomic.Pointer[x509.CertPool]
	rotating := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{Certificates: server.Certificates, ClientCAs: roots.Load(), ClientAuth: tls.VerifyClientCertIfGiven}, nil
	}}
	srv, err := New(Options{TLS: rotating, Authorize: authorizeByServiceAccount})
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, srv, newChanges(), srv.Serve)
	res := sidecarResources(t, "ns", "a", 8080, "127.0.0.10")
	if err := srv.SetSnapshot(context.Background(), NodeKey("a", "ns"), res); err != nil {
		t.Fatal(err)
	}
	refused := func(name string, tlsConfig *tls.Config) {
		sc := sidecar(t, ts, tlsConfig, "ns", "a", "a-1", nil)
		if err := sc.WaitFor(waitCtx(t), func(st *fleetsim.State) bool { return st.Err != nil }); err != nil {
			t.Fatal(err)
		}
		if got := sc.State(); got.Responses != 0 {
			t.Errorf("%s: %d responses", name, got.Responses)
		}
	}
	refused("no client CAs yet", p.clientTLS(t, "ns", "a"))
	roots.Store(p.roots)
	noCert := p.clientTLS(t, "ns", "a")
	noCert.Certificates = nil
	refused("no certificate", noCert)
	synced(t, sidecar(t, ts, p.clientTLS(t, "ns", "a"), "ns", "a", "a-1", nil), res)
}

// A snapshot reaches the sidecar as Envoy takes it (CDS, EDS, LDS, each once),
// the sidecar ACKs, and the status shows the proxy by its pod's node id, in
// sync at the build's versions.
func TestPushIsACKedAndShownInStatus(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, testLog(t))
	if srv.NeedLeaderElection() {
		t.Error("NeedLeaderElection: every replica must serve")
	}
	key := NodeKey("a", "ns")
	res := sidecarResources(t, "ns", "a", 8080, "127.0.0.10")
	if err := srv.SetSnapshot(context.Background(), key, res); err != nil {
		t.Fatal(err)
	}

	sc := sidecar(t, srv, p.clientTLS(t, "ns", "a"), "ns", "a", "a-7d9f-x1", nil)
	synced(t, sc, res)
	if st := sc.State(); st.Received[ClusterType] != 1 || st.Received[EndpointType] != 1 || st.Received[ListenerType] != 1 || st.NACKs != 0 {
		t.Errorf("sidecar received %v with %d NACKs, want each type once and none", st.Received, st.NACKs)
	}

	st := srv.waitStatus(t, key, func(st NodeStatus) bool { return len(st.Proxies) == 1 && st.Proxies[0].Synced(st.Snapshot) })
	proxy := st.Proxies[0]
	switch {
	case !st.Connected() || st.Streams != 1:
		t.Errorf("streams = %d, want 1", st.Streams)
	case proxy.NodeID != "a-7d9f-x1.ns" || proxy.SPIFFEID != identity.SPIFFEID(trustDomain, "ns", "a"):
		t.Errorf("proxy = %s as %s", proxy.NodeID, proxy.SPIFFEID)
	case proxy.ConfigVersion() != res.Version || proxy.Acked[EndpointType] != res.EndpointsVersion:
		t.Errorf("proxy acked %v, want config %s and endpoints %s", proxy.Acked, res.Version, res.EndpointsVersion)
	case st.Snapshot[ListenerType] != res.Version || st.Snapshot[EndpointType] != res.EndpointsVersion:
		t.Errorf("snapshot versions %v", st.Snapshot)
	case st.LastAcked[ListenerType] != res.Version || st.LastNACK != nil || proxy.NACK != nil || st.Changed.IsZero():
		t.Errorf("status %+v", st)
	}
	if srv.changes.count(key) == 0 {
		t.Error("OnChange was not called")
	}
	if got := srv.Keys(); len(got) != 1 || got[0] != key {
		t.Errorf("Keys() = %v, want [%s]", got, key)
	}

	// Ready once serving (the sidecar just proved it) and told synced.
	if srv.Ready() || srv.ReadyCheck(nil) == nil {
		t.Error("ready before MarkSynced")
	}
	srv.MarkSynced()
	if !srv.Ready() || srv.ReadyCheck(nil) != nil {
		t.Errorf("not ready after MarkSynced: %v", srv.ReadyCheck(nil))
	}

	sc.Close()
	st = srv.waitStatus(t, key, func(st NodeStatus) bool { return !st.Connected() })
	if st.LastAcked[ListenerType] != res.Version || len(st.Proxies) != 0 {
		t.Errorf("after close: %+v, want the last ACKed version kept", st)
	}
	if got := srv.Keys(); len(got) != 0 {
		t.Errorf("Keys() = %v after the stream closed, want none", got)
	}
}

func rejectListeners(reject *atomic.Bool) func(string, []*anypb.Any) error {
	return func(typeURL string, _ []*anypb.Any) error {
		if typeURL == ListenerType && reject.Load() {
			return errRejected
		}
		return nil
	}
}

// barrier proves that every response the server queued for sc before it is
// delivered: two endpoint-only pushes, the first ACKed as far as the server's
// status (so every request before that ACK was processed, and what it queued
// is ahead of the second push on the stream).
func barrier(t *testing.T, srv *testServer, sc *fleetsim.Sidecar, key string, res *envoyconfig.Resources) {
	t.Helper()
	for i, addr := range []string{"127.0.0.201", "127.0.0.202"} {
		next := withEndpoints(t, res, "ns", addr)
		if err := srv.SetSnapshot(context.Background(), key, next); err != nil {
			t.Fatal(err)
		}
		if err := sc.WaitAcked(waitCtx(t), EndpointType, next.EndpointsVersion); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			srv.waitStatus(t, key, func(st NodeStatus) bool {
				return len(st.Proxies) == 1 && st.Proxies[0].Acked[EndpointType] == next.EndpointsVersion
			})
		}
	}
}

// A sidecar that rejects every listener update NACKs the version once and is
// not sent it again; the status has the rejected version and Envoy's reason.
func TestNACKedVersionIsNotResent(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, testLog(t))
	key := NodeKey("a", "ns")
	res := sidecarResources(t, "ns", "a", 8080, "127.0.0.10")
	if err := srv.SetSnapshot(context.Background(), key, res); err != nil {
		t.Fatal(err)
	}
	var reject atomic.Bool
	reject.Store(true)
	sc := sidecar(t, srv, p.clientTLS(t, "ns", "a"), "ns", "a", "a-1", rejectListeners(&reject))

	st := srv.waitStatus(t, key, func(st NodeStatus) bool { return st.LastNACK != nil })
	nack := st.LastNACK
	if nack.TypeURL != ListenerType || nack.Version != res.Version || nack.Message != errRejected.Error() {
		t.Errorf("LastNACK = %+v, want LDS %s with %q", nack, res.Version, errRejected)
	}
	if proxy := st.Proxies[0]; proxy.NACK == nil || proxy.NACK.Version != res.Version || proxy.ConfigVersion() != "" {
		t.Errorf("proxy = %+v, want it rejecting %s and not in sync", proxy, res.Version)
	}

	barrier(t, srv, sc, key, res)
	if got := sc.State(); got.NACKs != 1 || got.RejectedResends != 0 || got.Received[ListenerType] != 1 {
		t.Errorf("sidecar: %d NACKs, %d resends of the rejected version, %d LDS responses; want 1, 0, 1", got.NACKs, got.RejectedResends, got.Received[ListenerType])
	}
	if st := srv.Status(key); st.LastNACK == nil {
		t.Error("the NACK was cleared by an endpoint update")
	}
}

// Without the watcher, go-control-plane answers a NACK with the rejected
// version at once, forever: the loop the watcher exists for.
func TestLibraryAloneResendsNACKedVersion(t *testing.T) {
	p := newPKI(t)
	srv, err := New(Options{TLS: p.serverTLS(t), Authorize: authorizeByServiceAccount})
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, srv, newChanges(), func(ctx context.Context, lis net.Listener) error { return srv.serve(ctx, lis, srv.cache) })
	res := sidecarResources(t, "ns", "a", 8080, "127.0.0.10")
	if err := srv.SetSnapshot(context.Background(), NodeKey("a", "ns"), res); err != nil {
		t.Fatal(err)
	}
	var reject atomic.Bool
	reject.Store(true)
	sc := sidecar(t, ts, p.clientTLS(t, "ns", "a"), "ns", "a", "a-1", rejectListeners(&reject))
	if err := sc.WaitFor(waitCtx(t), func(st *fleetsim.State) bool { return st.RejectedResends >= 100 }); err != nil {
		t.Fatal(err)
	}
	sc.Close()
}

// After a NACK, a new snapshot is pushed, and its ACK ends the rejection.
func TestChangeAfterNACKIsPushed(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, testLog(t))
	key := NodeKey("a", "ns")
	bad := sidecarResources(t, "ns", "a", 8080, "127.0.0.10")
	if err := srv.SetSnapshot(context.Background(), key, bad); err != nil {
		t.Fatal(err)
	}
	var reject atomic.Bool
	reject.Store(true)
	sc := sidecar(t, srv, p.clientTLS(t, "ns", "a"), "ns", "a", "a-1", rejectListeners(&reject))
	srv.waitStatus(t, key, func(st NodeStatus) bool { return st.LastNACK != nil })

	reject.Store(false)
	good := sidecarResources(t, "ns", "a", 8081, "127.0.0.10")
	if err := srv.SetSnapshot(context.Background(), key, good); err != nil {
		t.Fatal(err)
	}
	synced(t, sc, good)
	st := srv.waitStatus(t, key, func(st NodeStatus) bool { return len(st.Proxies) == 1 && st.Proxies[0].Synced(st.Snapshot) })
	if st.LastNACK != nil || st.Proxies[0].NACK != nil || st.Proxies[0].ConfigVersion() != good.Version {
		t.Errorf("status %+v, want %s ACKed and no NACK standing", st, good.Version)
	}
	if got := sc.State(); got.NACKs != 1 || got.RejectedResends != 0 {
		t.Errorf("%d NACKs, %d rejected resends; want 1, 0", got.NACKs, got.RejectedResends)
	}
}

// An EndpointSlice change pushes EDS alone, whether the controller passes the
// whole build (WithEndpoints) or only the endpoints (SetEndpoints), at the
// same version either way.
func TestEndpointsChangeAlone(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, testLog(t))
	key := NodeKey("a", "ns")
	res := sidecarResources(t, "ns", "a", 8080, "127.0.0.10")
	if err := srv.SetSnapshot(context.Background(), key, res); err != nil {
		t.Fatal(err)
	}
	sc := sidecar(t, srv, p.clientTLS(t, "ns", "a"), "ns", "a", "a-1", fleetsim.Validate)
	synced(t, sc, res)

	moved := withEndpoints(t, res, "ns", "127.0.0.11", "127.0.0.12")
	if moved.Version != res.Version || moved.EndpointsVersion == res.EndpointsVersion {
		t.Fatalf("WithEndpoints: versions %s/%s from %s/%s", moved.Version, moved.EndpointsVersion, res.Version, res.EndpointsVersion)
	}
	if err := srv.SetSnapshot(context.Background(), key, moved); err != nil {
		t.Fatal(err)
	}
	synced(t, sc, moved)

	again := withEndpoints(t, res, "ns", "127.0.0.13")
	cluster := envoyconfig.UpstreamClusterName(backend, "ns")
	if err := srv.SetEndpoints(context.Background(), key, again.Endpoints); err != nil {
		t.Fatal(err)
	}
	if err := sc.WaitAcked(waitCtx(t), EndpointType, again.EndpointsVersion); err != nil {
		t.Fatalf("SetEndpoints did not push the version WithEndpoints computes: %v", err)
	}
	if err := srv.SetEndpoints(context.Background(), key, nil); err == nil {
		t.Errorf("SetEndpoints without the assignment of %s succeeded", cluster)
	}
	if err := srv.SetEndpoints(context.Background(), NodeKey("nobody", "ns"), again.Endpoints); err == nil {
		t.Error("SetEndpoints without a snapshot succeeded")
	}

	barrier(t, srv, sc, key, res)
	if got := sc.State(); got.Received[ClusterType] != 1 || got.Received[ListenerType] != 1 || got.Received[EndpointType] != 5 {
		t.Errorf("received %v, want CDS and LDS once, EDS 5 times (initial, two changes, two for the barrier)", got.Received)
	}
}

// A sidecar that moves to another replica holding the same snapshot is sent
// nothing; moving back after a change there, it gets the change.
func TestReconnectToAnotherReplica(t *testing.T) {
	p := newPKI(t)
	first, second := startServer(t, p, testLog(t)), startServer(t, p, testLog(t))
	key := NodeKey("a", "ns")
	res := sidecarResources(t, "ns", "a", 8080, "127.0.0.10")
	for _, srv := range []*testServer{first, second} {
		if err := srv.SetSnapshot(context.Background(), key, sidecarResources(t, "ns", "a", 8080, "127.0.0.10")); err != nil {
			t.Fatal(err)
		}
	}
	sc := sidecar(t, first, p.clientTLS(t, "ns", "a"), "ns", "a", "a-1", nil)
	synced(t, sc, res)

	if err := sc.Reconnect(second.addr); err != nil {
		t.Fatal(err)
	}
	st := second.waitStatus(t, key, func(st NodeStatus) bool { return len(st.Proxies) == 1 && st.Proxies[0].Synced(st.Snapshot) })
	if st.Proxies[0].ConfigVersion() != res.Version {
		t.Errorf("second replica sees %v", st.Proxies[0].Acked)
	}
	barrier(t, second, sc, key, res)
	if got := sc.State(); got.Streams != 2 || got.Received[ClusterType] != 1 || got.Received[ListenerType] != 1 || got.Received[EndpointType] != 3 {
		t.Errorf("after reconnecting: %d streams, received %v; want 2, CDS and LDS once, EDS for the barrier only", got.Streams, got.Received)
	}
	first.waitStatus(t, key, func(st NodeStatus) bool { return !st.Connected() })

	changed := sidecarResources(t, "ns", "a", 8081, "127.0.0.10")
	if err := first.SetSnapshot(context.Background(), key, changed); err != nil {
		t.Fatal(err)
	}
	if err := sc.Reconnect(first.addr); err != nil {
		t.Fatal(err)
	}
	synced(t, sc, changed)
}

// A certificate of another MeshService than the one the node names is
// refused before any resource is sent; the owner is served beside it.
func TestOtherServicesIdentityIsRefused(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, testLog(t))
	for _, name := range []string{"a", "b"} {
		if err := srv.SetSnapshot(context.Background(), NodeKey(name, "ns"), sidecarResources(t, "ns", name, 8080, "127.0.0.10")); err != nil {
			t.Fatal(err)
		}
	}
	thief := sidecar(t, srv, p.clientTLS(t, "ns", "b"), "ns", "a", "b-1", nil)
	if err := thief.WaitFor(waitCtx(t), func(st *fleetsim.State) bool { return st.Err != nil }); err != nil {
		t.Fatal(err)
	}
	if got := thief.State(); status.Code(got.Err) != codes.PermissionDenied || got.Responses != 0 {
		t.Errorf("b claiming a: %v after %d responses, want PermissionDenied and none", got.Err, got.Responses)
	}
	owner := sidecar(t, srv, p.clientTLS(t, "ns", "b"), "ns", "b", "b-1", nil)
	synced(t, owner, sidecarResources(t, "ns", "b", 8080, "127.0.0.10"))
	if st := srv.Status(NodeKey("a", "ns")); st.Streams != 0 {
		t.Errorf("a has %d streams", st.Streams)
	}
}

// A client whose certificate another CA signed, or with none, fails the TLS
// handshake: the server never sees a stream.
func TestHandshakeRefusesUntrustedClients(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, testLog(t))
	if err := srv.SetSnapshot(context.Background(), NodeKey("a", "ns"), sidecarResources(t, "ns", "a", 8080, "127.0.0.10")); err != nil {
		t.Fatal(err)
	}
	foreign := newPKI(t)
	noCert := p.clientTLS(t, "ns", "a")
	noCert.Certificates = nil
	for name, tlsConfig := range map[string]*tls.Config{
		"foreign CA":     fleetsim.ClientTLS(foreign.leaf(t, identity.SPIFFEID(trustDomain, "ns", "a")), p.roots, serverID),
		"no certificate": noCert,
	} {
		t.Run(name, func(t *testing.T) {
			sc := sidecar(t, srv, tlsConfig, "ns", "a", "a-1", nil)
			if err := sc.WaitFor(waitCtx(t), func(st *fleetsim.State) bool { return st.Err != nil }); err != nil {
				t.Fatal(err)
			}
			if got := sc.State(); status.Code(got.Err) != codes.Unavailable || got.Responses != 0 {
				t.Errorf("%v after %d responses, want Unavailable (handshake) and none", got.Err, got.Responses)
			}
		})
	}
	srv.status.mu.Lock()
	defer srv.status.mu.Unlock()
	if n := len(srv.status.streams); n != 0 {
		t.Errorf("the server opened %d streams", n)
	}
}

// A stream keeps the node its first request named; a first request without a
// usable node is refused. Checked with a raw client, since no Envoy does this.
func TestNodeMayNotChange(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, testLog(t))
	if err := srv.SetSnapshot(context.Background(), NodeKey("a", "ns"), sidecarResources(t, "ns", "a", 8080, "127.0.0.10")); err != nil {
		t.Fatal(err)
	}
	a := &corev3.Node{Id: "a-1.ns", Cluster: "a"}
	for name, second := range map[string]*corev3.Node{
		"other pod":     {Id: "a-2.ns", Cluster: "a"},
		"other cluster": {Id: "a-1.ns", Cluster: "b"},
	} {
		t.Run(name, func(t *testing.T) {
			stream := rawStream(t, srv, p)
			if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: a, TypeUrl: ClusterType}); err != nil {
				t.Fatal(err)
			}
			resp, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: second, TypeUrl: ClusterType, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}); err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied {
				t.Errorf("after the node changed: %v, want PermissionDenied", err)
			}
		})
	}
	for name, first := range map[string]*corev3.Node{
		"no node":    nil,
		"no cluster": {Id: "a-1.ns"},
		"no ns":      {Id: "a-1", Cluster: "a"},
	} {
		t.Run(name, func(t *testing.T) {
			stream := rawStream(t, srv, p)
			if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: first, TypeUrl: ClusterType}); err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied {
				t.Errorf("%v, want PermissionDenied", err)
			}
		})
	}
}

// Incremental xDS is not served.
func TestDeltaIsRefused(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, testLog(t))
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(rawConn(t, srv, p)).DeltaAggregatedResources(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "a-1.ns", Cluster: "a"}, TypeUrl: ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unimplemented {
		t.Errorf("delta stream: %v, want Unimplemented", err)
	}
}

func rawConn(t *testing.T, srv *testServer, p *pki) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+srv.addr, grpc.WithTransportCredentials(credentials.NewTLS(p.clientTLS(t, "ns", "a"))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func rawStream(t *testing.T, srv *testServer, p *pki) discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	t.Helper()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(rawConn(t, srv, p)).StreamAggregatedResources(waitCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// ClearSnapshot waits for the last proxy to go, and SetSnapshot cancels it.
func TestClearSnapshotWaitsForTheLastProxy(t *testing.T) {
	p := newPKI(t)
	srv := startServer(t, p, testLog(t))
	key := NodeKey("a", "ns")
	res := sidecarResources(t, "ns", "a", 8080, "127.0.0.10")
	if err := srv.SetSnapshot(context.Background(), key, res); err != nil {
		t.Fatal(err)
	}
	sc := sidecar(t, srv, p.clientTLS(t, "ns", "a"), "ns", "a", "a-1", nil)
	synced(t, sc, res)

	srv.ClearSnapshot(key)
	if err := srv.SetSnapshot(context.Background(), key, res); err != nil {
		t.Fatal(err)
	}
	srv.ClearSnapshot(key)
	if st := srv.Status(key); st.Snapshot == nil || !st.Connected() {
		t.Fatalf("cleared under a connected proxy: %+v", st)
	}
	sc.Close()
	srv.waitStatus(t, key, func(st NodeStatus) bool { return st.Snapshot == nil && !st.Connected() })
	if _, err := srv.cache.GetSnapshot(key); err == nil {
		t.Error("the cache still has the snapshot")
	}

	srv.ClearSnapshot(NodeKey("never", "ns")) // nothing to clear is fine
}
