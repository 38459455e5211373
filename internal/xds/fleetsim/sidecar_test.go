package fleetsim

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
)

// script is an ADS server driven by the test: it hands over every request
// and sends what it is told, so the test reads the sidecar's side of the
// conversation message by message.
type script struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	requests  chan *discoveryv3.DiscoveryRequest
	responses chan *discoveryv3.DiscoveryResponse
}

func (s *script) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	go func() {
		for {
			select {
			case resp := <-s.responses:
				if stream.Send(resp) != nil {
					return
				}
			case <-stream.Context().Done():
				return
			}
		}
	}()
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		s.requests <- req
	}
}

func startScript(t *testing.T) (*script, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &script{requests: make(chan *discoveryv3.DiscoveryRequest, 16), responses: make(chan *discoveryv3.DiscoveryResponse)}
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return s, lis.Addr().String()
}

func (s *script) expect(t *testing.T, want *discoveryv3.DiscoveryRequest) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case got := <-s.requests:
		if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
			t.Fatalf("request (-want +got):\n%s", d)
		}
	case <-ctx.Done():
		t.Fatalf("no request; want %v", want)
	}
}

func (s *script) send(t *testing.T, typeURL, version, nonce string, resources ...proto.Message) {
	t.Helper()
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: version, Nonce: nonce}
	for _, r := range resources {
		a, err := anypb.New(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	s.responses <- resp
}

func edsCluster(name, serviceName string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{ServiceName: serviceName},
	}
}

var errBadListener = errors.New("bad listener")

// The conversation Envoy has on a new ADS stream, a later NACK, and a
// reconnect, request by request.
func TestSidecarSpeaksLikeEnvoy(t *testing.T) {
	server, addr := startScript(t)
	node := &corev3.Node{Id: "a-1.ns", Cluster: "a"}
	sc, err := Start(Config{
		Target: addr, Node: node, NodeOnFirstRequestOnly: true,
		Accept: func(typeURL string, rs []*anypb.Any) error {
			if typeURL == resourcev3.ListenerType && len(rs) > 1 {
				return errBadListener
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()

	// CDS first, wildcard, with the node.
	server.expect(t, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType})
	server.send(t, resourcev3.ClusterType, "c1", "1",
		edsCluster("out.b.ns", ""), edsCluster("out.c.ns", "c-endpoints"),
		&clusterv3.Cluster{Name: "local", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}})
	// EDS for the EDS clusters (service_name when set), before the CDS ACK.
	server.expect(t, &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{"c-endpoints", "out.b.ns"}})
	server.expect(t, &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: "c1", ResponseNonce: "1"})
	// LDS only once the first EDS response is in.
	server.send(t, resourcev3.EndpointType, "e1", "2")
	server.expect(t, &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: "e1", ResponseNonce: "2", ResourceNames: []string{"c-endpoints", "out.b.ns"}})
	server.expect(t, &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType})
	server.send(t, resourcev3.ListenerType, "l1", "3", &listenerv3.Listener{Name: "in"})
	server.expect(t, &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, VersionInfo: "l1", ResponseNonce: "3"})

	// A rejected update: the previous version, the nonce, Envoy's error.
	server.send(t, resourcev3.ListenerType, "l2", "4", &listenerv3.Listener{Name: "in"}, &listenerv3.Listener{Name: "out"})
	server.expect(t, &discoveryv3.DiscoveryRequest{
		TypeUrl: resourcev3.ListenerType, VersionInfo: "l1", ResponseNonce: "4",
		ErrorDetail: &rpcstatus.Status{Code: 13, Message: errBadListener.Error()},
	})
	// Resent, it counts as a resend of a rejected version.
	server.send(t, resourcev3.ListenerType, "l2", "5", &listenerv3.Listener{Name: "in"}, &listenerv3.Listener{Name: "out"})
	server.expect(t, &discoveryv3.DiscoveryRequest{
		TypeUrl: resourcev3.ListenerType, VersionInfo: "l1", ResponseNonce: "5",
		ErrorDetail: &rpcstatus.Status{Code: 13, Message: errBadListener.Error()},
	})

	// A CDS update dropping an EDS cluster narrows the EDS subscription.
	server.send(t, resourcev3.ClusterType, "c2", "6", edsCluster("out.b.ns", ""))
	server.expect(t, &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: "e1", ResponseNonce: "2", ResourceNames: []string{"out.b.ns"}})
	server.expect(t, &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: "c2", ResponseNonce: "6"})

	st := sc.State()
	want := map[string]string{resourcev3.ClusterType: "c2", resourcev3.EndpointType: "e1", resourcev3.ListenerType: "l1"}
	if d := cmp.Diff(want, st.Acked); d != "" || st.NACKs != 2 || st.RejectedResends != 1 || st.Responses != 6 || st.LastNACK != errBadListener.Error() {
		t.Errorf("state: acked (-want +got) %s, %d NACKs, %d rejected resends, %d responses, last NACK %q", d, st.NACKs, st.RejectedResends, st.Responses, st.LastNACK)
	}

	// A new stream: every subscription in order, at its accepted version,
	// without nonce; the node on the first request only.
	if err := sc.Reconnect(""); err != nil {
		t.Fatal(err)
	}
	server.expect(t, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, VersionInfo: "c2"})
	server.expect(t, &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, VersionInfo: "e1", ResourceNames: []string{"out.b.ns"}})
	server.expect(t, &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, VersionInfo: "l1"})
	if st := sc.State(); st.Streams != 2 || !st.Connected {
		t.Errorf("after reconnect: %d streams, connected %v", st.Streams, st.Connected)
	}
}

// Without NodeOnFirstRequestOnly, as Envoy's default, every request names
// the node.
func TestSidecarSendsNodeOnEveryRequestByDefault(t *testing.T) {
	server, addr := startScript(t)
	node := &corev3.Node{Id: "a-1.ns", Cluster: "a"}
	sc, err := Start(Config{Target: addr, Node: node})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	server.expect(t, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType})
	server.send(t, resourcev3.ClusterType, "c1", "1")
	server.expect(t, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType, VersionInfo: "c1", ResponseNonce: "1"})
	server.expect(t, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType})
}

func TestValidate(t *testing.T) {
	good, _ := anypb.New(&listenerv3.Listener{Name: "in"})
	invalid, _ := anypb.New(&listenerv3.Listener{Name: "in", Address: &corev3.Address{
		Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{}}, // no address: PGV says min_len 1
	}})
	cluster, _ := anypb.New(&clusterv3.Cluster{Name: "c"})
	if err := Validate(resourcev3.ListenerType, []*anypb.Any{good}); err != nil {
		t.Errorf("a valid listener: %v", err)
	}
	if err := Validate(resourcev3.ListenerType, []*anypb.Any{cluster}); err == nil {
		t.Error("a cluster in an LDS response was accepted")
	}
	if err := Validate(resourcev3.ListenerType, []*anypb.Any{invalid}); err == nil {
		t.Error("a listener failing its validation rules was accepted")
	}
}
