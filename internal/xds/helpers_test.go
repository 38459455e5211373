package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/xds/fleetsim"
)

const (
	trustDomain = "cluster.local"
	// serverID is the manager's identity, the only one the sidecars accept.
	serverID = "spiffe://cluster.local/ns/envoymesh-system/sa/envoymesh-controller-manager"
)

// pki is a mesh CA and what the server and sidecars get from it.
type pki struct {
	ca    *identity.CA
	roots *x509.CertPool
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	ca, err := identity.GenerateCA(trustDomain, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &pki{ca: ca, roots: roots}
}

// leaf issues a certificate for spiffeID, as the signer does for a pod.
func (p *pki) leaf(t testing.TB, spiffeID string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	l, err := p.ca.Issue(key.Public(), spiffeID, 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{l.Cert.Raw}, PrivateKey: key, Leaf: l.Cert}
}

// serverTLS is the xDS server's side: its leaf, and the mesh CA for clients.
func (p *pki) serverTLS(t testing.TB) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.leaf(t, serverID)}, ClientCAs: p.roots}
}

// clientTLS is a sidecar of MeshService name in namespace.
func (p *pki) clientTLS(t testing.TB, namespace, name string) *tls.Config {
	return fleetsim.ClientTLS(p.leaf(t, identity.SPIFFEID(trustDomain, namespace, name)), p.roots, serverID)
}

// authorizeByServiceAccount is the controller's rule in miniature: a proxy
// may fetch the config of the MeshService whose ServiceAccount (named after
// it) its certificate names.
func authorizeByServiceAccount(n *corev3.Node, spiffeID string) error {
	name, namespace, err := ParseNode(n)
	if err != nil {
		return err
	}
	if want := identity.SPIFFEID(trustDomain, namespace, name); spiffeID != want {
		return fmt.Errorf("the identity of %s/%s is %s", namespace, name, want)
	}
	return nil
}

// changes records OnChange calls, for tests that wait on a status.
type changes struct {
	mu      sync.Mutex
	keys    map[string]int
	changed chan struct{} // closed and replaced on every call
}

func newChanges() *changes { return &changes{keys: map[string]int{}, changed: make(chan struct{})} }

func (c *changes) record(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys[key]++
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *changes) count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keys[key]
}

func (c *changes) next() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// waitStatus waits, on OnChange and never by polling, until key's status
// satisfies ok, and returns it.
func (srv *testServer) waitStatus(t testing.TB, key string, ok func(NodeStatus) bool) NodeStatus {
	t.Helper()
	ctx := waitCtx(t)
	for {
		next := srv.changes.next()
		st := srv.Status(key)
		if ok(st) {
			return st
		}
		select {
		case <-next:
		case <-ctx.Done():
			t.Fatalf("status of %s: %v; last: %+v", key, ctx.Err(), st)
		}
	}
}

// testServer is a Server serving on 127.0.0.1.
type testServer struct {
	*Server
	addr    string
	changes *changes
}

func startServer(t testing.TB, p *pki, log logr.Logger) *testServer {
	t.Helper()
	ch := newChanges()
	srv, err := New(Options{TLS: p.serverTLS(t), Authorize: authorizeByServiceAccount, OnChange: ch.record, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, srv, ch, srv.Serve)
}

func serve(t testing.TB, srv *Server, ch *changes, serveFn func(context.Context, net.Listener) error) *testServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveFn(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testServer{Server: srv, addr: lis.Addr().String(), changes: ch}
}

// testLog logs to the test, V(0) only: refusals, not the library's chatter.
func testLog(t *testing.T) logr.Logger { return testr.NewWithOptions(t, testr.Options{Verbosity: 0}) }

// backend is the upstream every test service calls, over an EDS cluster.
const backend = "backend"

// sidecarResources builds the real XDS-mesh config of MeshService name:
// ADS delivery, an inbound listener to the app on port, and an EDS cluster
// for backend with an endpoint per address.
func sidecarResources(t testing.TB, namespace, name string, port int32, addresses ...string) *envoyconfig.Resources {
	t.Helper()
	ads, err := envoyconfig.ADSDelivery(envoyconfig.ADS{Address: "envoymesh-xds.envoymesh-system.svc.cluster.local", Port: 18000, ServerSPIFFEID: serverID})
	if err != nil {
		t.Fatal(err)
	}
	svc := envoyconfig.Service{
		Name: name, Namespace: namespace, Port: port, ServicePort: 15006, Protocol: v1alpha1.ProtocolHTTP,
		Upstreams: []envoyconfig.Upstream{{
			Name: backend, Namespace: namespace, LocalPort: 20000,
			Target: &envoyconfig.Target{ServicePort: 15006, Protocol: v1alpha1.ProtocolHTTP, Traffic: envoyconfig.MergeTraffic(nil)},
		}},
	}
	cluster := envoyconfig.UpstreamClusterName(backend, namespace)
	res, err := envoyconfig.BuildSidecar(svc, envoyconfig.Options{
		ClusterDomain: "cluster.local",
		Delivery:      &ads,
		Endpoints:     map[string]*endpointv3.ClusterLoadAssignment{cluster: assignment(cluster, addresses...)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// assignment is a load assignment of healthy endpoints on port 15006.
func assignment(cluster string, addresses ...string) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	var lbs []*endpointv3.LbEndpoint
	for _, a := range addresses {
		addr := netip.MustParseAddr(a).String()
		lbs = append(lbs, &endpointv3.LbEndpoint{
			HealthStatus: corev3.HealthStatus_HEALTHY,
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 15006},
				}}},
			}},
		})
	}
	if lbs != nil {
		cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}
	}
	return cla
}

// withEndpoints is res with backend's endpoints replaced, as an EndpointSlice
// change makes it.
func withEndpoints(t testing.TB, res *envoyconfig.Resources, namespace string, addresses ...string) *envoyconfig.Resources {
	t.Helper()
	cluster := envoyconfig.UpstreamClusterName(backend, namespace)
	out, err := res.WithEndpoints(map[string]*endpointv3.ClusterLoadAssignment{cluster: assignment(cluster, addresses...)})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sidecar starts a simulated Envoy of pod in MeshService name's Deployment.
func sidecar(t testing.TB, srv *testServer, tlsConfig *tls.Config, namespace, name, pod string, accept func(string, []*anypb.Any) error) *fleetsim.Sidecar {
	t.Helper()
	s, err := fleetsim.Start(fleetsim.Config{
		Target: srv.addr,
		TLS:    tlsConfig,
		Node:   &corev3.Node{Id: pod + "." + namespace, Cluster: name},
		Accept: accept,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// waitCtx bounds a wait; a test that needs it has failed, it never decides
// an outcome by time.
func waitCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// synced waits until the sidecar has accepted res in full.
func synced(t testing.TB, s *fleetsim.Sidecar, res *envoyconfig.Resources) {
	t.Helper()
	err := s.WaitFor(waitCtx(t), func(st *fleetsim.State) bool {
		return st.Acked[ListenerType] == res.Version && st.Acked[ClusterType] == res.Version && st.Acked[EndpointType] == res.EndpointsVersion
	})
	if err != nil {
		t.Fatal(err)
	}
}

var errRejected = errors.New("rejected by the test")
