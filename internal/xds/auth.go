package xds

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// NodeKey names the config of MeshService (or gateway) name in namespace:
// the key of its snapshot, of Status and of OnChange, "<name>.<namespace>".
// A proxy asks for it with node.cluster "<name>" and a node.id in namespace:
// "<pod>.<namespace>" in XDS meshes, where each Envoy names itself after its
// pod (--service-node), or the bootstrap's own "<name>.<namespace>".
func NodeKey(name, namespace string) string { return name + "." + namespace }

// ParseNode reads which MeshService (or gateway) a node asks for: node.cluster
// is its name, and the last dot-separated label of node.id its namespace
// (namespaces are DNS labels; pod names may hold dots).
func ParseNode(n *corev3.Node) (name, namespace string, err error) {
	dot := strings.LastIndexByte(n.GetId(), '.')
	if dot <= 0 || dot == len(n.GetId())-1 {
		return "", "", fmt.Errorf("node id %q is not <proxy>.<namespace>", n.GetId())
	}
	if n.GetCluster() == "" || strings.Contains(n.GetCluster(), ".") {
		return "", "", fmt.Errorf("node cluster %q is not the name of a MeshService or gateway", n.GetCluster())
	}
	return n.GetCluster(), n.GetId()[dot+1:], nil
}

// nodeKeyHash keys the snapshot cache by NodeKey, so all proxies of a
// service share its snapshot whatever their own node ids. A node ParseNode
// rejects never reaches the cache: the callbacks refuse its stream first.
type nodeKeyHash struct{}

func (nodeKeyHash) ID(n *corev3.Node) string {
	name, namespace, err := ParseNode(n)
	if err != nil {
		return ""
	}
	return NodeKey(name, namespace)
}

// SPIFFEID is the identity a certificate carries: its one URI SAN, which must
// be a spiffe:// URI (an X.509-SVID has exactly one).
func SPIFFEID(cert *x509.Certificate) (string, error) {
	if len(cert.URIs) != 1 {
		return "", fmt.Errorf("certificate has %d URI SANs, want one SPIFFE ID", len(cert.URIs))
	}
	u := cert.URIs[0]
	if u.Scheme != "spiffe" || u.Host == "" {
		return "", fmt.Errorf("URI SAN %q is not a SPIFFE ID", u)
	}
	return u.String(), nil
}

// peerIdentity is the SPIFFE ID of the client certificate that the TLS
// handshake of the stream's connection verified.
func peerIdentity(ctx context.Context) (addr, spiffeID string, err error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", "", errors.New("no peer")
	}
	if p.Addr != nil {
		addr = p.Addr.String()
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return addr, "", errors.New("not a TLS connection")
	}
	// VerifiedChains, not PeerCertificates: only a chain the handshake verified
	// against the client CAs proves anything.
	chains := info.State.VerifiedChains
	if len(chains) == 0 || len(chains[0]) == 0 {
		return addr, "", errors.New("no verified client certificate")
	}
	spiffeID, err = SPIFFEID(chains[0][0])
	return addr, spiffeID, err
}

// callbacks are the server's hooks into every stream: they authenticate it at
// open, authorize its node at the first request, keep the node from changing,
// and feed the status tracker. An error returned here ends the stream before
// the cache sees the request, so a refused stream is sent nothing.
type callbacks struct {
	authorize func(*corev3.Node, string) error
	status    *tracker
	clear     func(key string)
	log       logr.Logger
}

func (c *callbacks) refuse(code codes.Code, st *stream, n *corev3.Node, reason error) error {
	kv := []any{"node", n.GetId(), "cluster", n.GetCluster(), "reason", reason.Error()}
	if st != nil {
		kv = append(kv, "peer", st.peer, "spiffeID", st.spiffeID)
	}
	c.log.Info("refused xDS stream", kv...)
	return status.Error(code, reason.Error())
}

func (c *callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	addr, spiffeID, err := peerIdentity(ctx)
	if err != nil {
		c.log.Info("refused xDS stream", "peer", addr, "reason", err.Error())
		return status.Error(codes.Unauthenticated, err.Error())
	}
	c.status.opened(id, addr, spiffeID)
	return nil
}

func (c *callbacks) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	st := c.status.get(id)
	if st == nil {
		return status.Error(codes.Unauthenticated, "stream was not authenticated")
	}
	n := req.GetNode() // the server fills in the stream's first node when a request has none
	switch {
	case st.key == "":
		name, namespace, err := ParseNode(n)
		if err != nil {
			return c.refuse(codes.PermissionDenied, st, n, err)
		}
		if err := c.authorize(n, st.spiffeID); err != nil {
			return c.refuse(codes.PermissionDenied, st, n, fmt.Errorf("%s may not fetch the config of %s: %w", st.spiffeID, NodeKey(name, namespace), err))
		}
		c.status.bound(st, NodeKey(name, namespace), n.GetId(), n.GetCluster())
	case n.GetId() != st.nodeID || n.GetCluster() != st.cluster:
		return c.refuse(codes.PermissionDenied, st, n, fmt.Errorf("node changed mid-stream from %s (cluster %s)", st.nodeID, st.cluster))
	}
	c.status.requested(st, req)
	return nil
}

func (c *callbacks) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	c.status.responded(id, resp)
}

func (c *callbacks) OnStreamClosed(id int64, _ *corev3.Node) { c.status.closed(id, c.clear) }

// Incremental (delta) xDS and REST fetches are not served: the bootstraps ask
// for SotW ADS, and each further protocol would need its own NACK handling.
var errOnlySotW = status.Error(codes.Unimplemented, "only state-of-the-world xDS streams are served")

func (c *callbacks) OnDeltaStreamOpen(context.Context, int64, string) error { return errOnlySotW }
func (c *callbacks) OnDeltaStreamClosed(int64, *corev3.Node)                {}
func (c *callbacks) OnStreamDeltaRequest(int64, *discoveryv3.DeltaDiscoveryRequest) error {
	return errOnlySotW
}
func (c *callbacks) OnStreamDeltaResponse(int64, *discoveryv3.DeltaDiscoveryRequest, *discoveryv3.DeltaDiscoveryResponse) {
}
func (c *callbacks) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error {
	return errOnlySotW
}
func (c *callbacks) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}
