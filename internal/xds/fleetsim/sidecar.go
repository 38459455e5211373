package fleetsim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
)

// Config is one simulated sidecar.
type Config struct {
	// Target is the xDS server's address, host:port (loopback in tests).
	Target string
	// TLS is the client side of the channel: the sidecar's certificate and
	// how it verifies the server (see ClientTLS). nil dials without TLS.
	TLS *tls.Config
	// Node is what the sidecar says it is.
	Node *corev3.Node
	// NodeOnFirstRequestOnly sends the node on a stream's first request only,
	// as Envoy with set_node_on_first_message_only.
	NodeOnFirstRequestOnly bool
	// Accept plays Envoy applying a response: nil accepts it (ACK), an error
	// rejects it (NACK) with the error's text as error_detail.message. It runs
	// on the stream's goroutine.
	Accept func(typeURL string, resources []*anypb.Any) error
}

// State is what a sidecar has seen, over all its streams.
type State struct {
	// Connected is true while a stream is open.
	Connected bool
	// Streams counts the streams opened.
	Streams int
	// Err is why the last stream ended; nil while it is open or before any.
	Err error
	// Acked is, per type URL, the version last accepted ("" for none yet, for
	// a type subscribed to).
	Acked map[string]string
	// Resources are the resources last accepted, per type URL.
	Resources map[string][]*anypb.Any
	// EDSNames are the EDS resource names currently subscribed to.
	EDSNames []string
	// Responses counts the responses received; NACKs the ones rejected.
	Responses, NACKs int
	// Received counts the responses received per type URL.
	Received map[string]int
	// RejectedResends counts responses carrying a (type, version) this
	// sidecar had rejected before: what a server must not loop on.
	RejectedResends int
	// LastNACK is the error_detail message of the last NACK sent.
	LastNACK string
}

// Sidecar is one simulated Envoy. Its methods are safe for concurrent use.
type Sidecar struct {
	cfg Config

	mu      sync.Mutex
	state   State
	changed chan struct{} // closed and replaced on every change of state
	subs    []*subscription
	// stream is the current stream's handle, nil between streams.
	stream *streamHandle
}

type streamHandle struct {
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan struct{}
}

// subscription is one type's protocol state; like Envoy's, it outlives
// streams, except for the nonce.
type subscription struct {
	typeURL  string
	wildcard bool
	names    []string
	version  string // last accepted
	nonce    string // last response on the current stream
	rejected map[string]bool
}

// Start connects a sidecar and opens its stream. It does not wait for the
// server: a refused stream shows in State.Err.
func Start(cfg Config) (*Sidecar, error) {
	if cfg.Node == nil {
		return nil, errors.New("fleetsim: Config.Node is required")
	}
	s := &Sidecar{cfg: cfg, changed: make(chan struct{})}
	s.state.Acked = map[string]string{}
	s.state.Resources = map[string][]*anypb.Any{}
	s.state.Received = map[string]int{}
	return s, s.connect(cfg.Target)
}

// Node is the node the sidecar presents.
func (s *Sidecar) Node() *corev3.Node { return s.cfg.Node }

// State returns a copy of the sidecar's state.
func (s *Sidecar) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.copyLocked()
}

func (s *Sidecar) copyLocked() State {
	st := s.state
	st.Acked = maps.Clone(st.Acked)
	st.Resources = maps.Clone(st.Resources)
	st.Received = maps.Clone(st.Received)
	st.EDSNames = slices.Clone(st.EDSNames)
	return st
}

// WaitFor blocks until ok(state) holds or ctx ends. ok runs with the
// sidecar's lock held, on a state it must neither keep nor modify; it is
// checked once at once and again on every change, never by polling.
func (s *Sidecar) WaitFor(ctx context.Context, ok func(*State) bool) error {
	for {
		s.mu.Lock()
		done, changed := ok(&s.state), s.changed
		s.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("sidecar %s: %w (state: %+v)", s.cfg.Node.GetId(), ctx.Err(), s.summary())
		}
	}
}

// WaitAcked waits until the sidecar has accepted version of typeURL.
func (s *Sidecar) WaitAcked(ctx context.Context, typeURL, version string) error {
	return s.WaitFor(ctx, func(st *State) bool { return st.Acked[typeURL] == version })
}

func (s *Sidecar) summary() string {
	st := s.State()
	return fmt.Sprintf("connected=%v streams=%d err=%v acked=%v responses=%d nacks=%d", st.Connected, st.Streams, st.Err, st.Acked, st.Responses, st.NACKs)
}

// update changes the state under the lock and wakes the waiters.
func (s *Sidecar) update(f func(*State)) {
	s.mu.Lock()
	f(&s.state)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// Reconnect ends the current stream and opens a new one, on a new connection
// to target ("" for the same one), as Envoy does when its stream breaks or
// its server goes away.
func (s *Sidecar) Reconnect(target string) error {
	s.stop()
	if target == "" {
		target = s.cfg.Target
	}
	s.cfg.Target = target
	return s.connect(target)
}

// Close ends the stream and the connection.
func (s *Sidecar) Close() { s.stop() }

func (s *Sidecar) stop() {
	s.mu.Lock()
	h := s.stream
	s.stream = nil
	s.mu.Unlock()
	if h == nil {
		return
	}
	h.cancel()
	<-h.done
	_ = h.conn.Close()
}

func (s *Sidecar) connect(target string) error {
	creds := insecure.NewCredentials()
	if s.cfg.TLS != nil {
		creds = credentials.NewTLS(s.cfg.TLS)
	}
	conn, err := grpc.NewClient("passthrough:///"+target,
		grpc.WithTransportCredentials(creds),
		// A thousand sidecars in one process: buffers only while writing.
		grpc.WithSharedWriteBuffer(true),
		grpc.WithReadBufferSize(8<<10),
	)
	if err != nil {
		return fmt.Errorf("fleetsim: dial %s: %w", target, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &streamHandle{conn: conn, cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	s.stream = h
	s.mu.Unlock()
	go func() {
		defer close(h.done)
		err := s.run(ctx, conn)
		s.update(func(st *State) {
			st.Connected = false
			if ctx.Err() == nil {
				st.Err = err
			} else {
				st.Err = context.Canceled
			}
		})
	}()
	return nil
}

// run is one stream: open it, send the initial requests, then answer every
// response until the stream ends.
func (s *Sidecar) run(ctx context.Context, conn *grpc.ClientConn) error {
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	c := &conversation{s: s, stream: stream, firstOnStream: true}
	s.update(func(st *State) { st.Connected, st.Err = true, nil; st.Streams++ })
	if err := c.start(); err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if err := c.handle(resp); err != nil {
			return err
		}
	}
}

// conversation is the protocol on one stream. Only the stream's goroutine
// touches the subscriptions, so they need no lock; State does.
type conversation struct {
	s             *Sidecar
	stream        discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	firstOnStream bool
	// waitingForEDS is set while initialization waits for the first EDS
	// response before subscribing to LDS.
	waitingForEDS bool
}

func (c *conversation) sub(typeURL string) *subscription {
	for _, sub := range c.s.subs {
		if sub.typeURL == typeURL {
			return sub
		}
	}
	return nil
}

func (c *conversation) subscribe(typeURL string, names []string) *subscription {
	sub := &subscription{typeURL: typeURL, wildcard: names == nil, names: names, rejected: map[string]bool{}}
	c.s.subs = append(c.s.subs, sub)
	c.s.update(func(st *State) {
		st.Acked[typeURL] = ""
		if typeURL == resourcev3.EndpointType {
			st.EDSNames = slices.Clone(names)
		}
	})
	return sub
}

// start sends the first requests: CDS on a first connection; on a
// reconnection every subscribed type, in subscription order, at the versions
// accepted and without nonce.
func (c *conversation) start() error {
	if len(c.s.subs) == 0 {
		return c.send(c.subscribe(resourcev3.ClusterType, nil), nil)
	}
	// Initialization still waiting for its first EDS response goes on waiting.
	c.waitingForEDS = c.sub(resourcev3.EndpointType) != nil && c.sub(resourcev3.ListenerType) == nil
	for _, sub := range c.s.subs {
		sub.nonce = ""
		if err := c.send(sub, nil); err != nil {
			return err
		}
	}
	return nil
}

// send sends sub's current request, a NACK when rejection is set.
func (c *conversation) send(sub *subscription, rejection error) error {
	req := &discoveryv3.DiscoveryRequest{
		TypeUrl:       sub.typeURL,
		VersionInfo:   sub.version,
		ResponseNonce: sub.nonce,
	}
	if !sub.wildcard {
		req.ResourceNames = sub.names
	}
	if c.firstOnStream || !c.s.cfg.NodeOnFirstRequestOnly {
		req.Node = c.s.cfg.Node
	}
	if rejection != nil {
		req.ErrorDetail = &rpcstatus.Status{Code: int32(codes.Internal), Message: rejection.Error()}
	}
	c.firstOnStream = false
	return c.stream.Send(req)
}

// handle applies (or rejects) one response and answers it as Envoy would.
func (c *conversation) handle(resp *discoveryv3.DiscoveryResponse) error {
	typeURL, version := resp.GetTypeUrl(), resp.GetVersionInfo()
	sub := c.sub(typeURL)
	c.s.update(func(st *State) {
		st.Responses++
		st.Received[typeURL]++
		if sub != nil && sub.rejected[version] {
			st.RejectedResends++
		}
	})
	if sub == nil {
		return nil // Envoy ignores a type it has no subscription for
	}
	sub.nonce = resp.GetNonce()
	var rejection error
	if accept := c.s.cfg.Accept; accept != nil {
		rejection = accept(typeURL, resp.GetResources())
	}
	var edsNames []string
	if rejection == nil && typeURL == resourcev3.ClusterType {
		edsNames, rejection = edsClusterNames(resp.GetResources())
	}
	if rejection != nil {
		sub.rejected[version] = true
		c.s.update(func(st *State) { st.NACKs++; st.LastNACK = rejection.Error() })
		if err := c.send(sub, rejection); err != nil {
			return err
		}
		return c.afterInitialResponse(typeURL, nil)
	}
	sub.version = version
	c.s.update(func(st *State) {
		st.Acked[typeURL] = version
		st.Resources[typeURL] = resp.GetResources()
	})
	if typeURL == resourcev3.ClusterType {
		// EDS first: Envoy resumes its paused EDS requests within the CDS
		// update, before the CDS ACK goes out.
		if err := c.requestEndpoints(edsNames); err != nil {
			return err
		}
	}
	if err := c.send(sub, nil); err != nil {
		return err
	}
	return c.afterInitialResponse(typeURL, edsNames)
}

// requestEndpoints subscribes EDS to names, or updates the subscription when
// they changed.
func (c *conversation) requestEndpoints(names []string) error {
	sub := c.sub(resourcev3.EndpointType)
	switch {
	case sub == nil && len(names) == 0:
		return nil
	case sub == nil:
		return c.send(c.subscribe(resourcev3.EndpointType, names), nil)
	case slices.Equal(sub.names, names):
		return nil
	}
	sub.names = names
	c.s.update(func(st *State) { st.EDSNames = slices.Clone(names) })
	return c.send(sub, nil)
}

// afterInitialResponse subscribes LDS once the cluster manager would have
// initialized: after the first CDS response, and the first EDS response if
// that CDS response named EDS clusters.
func (c *conversation) afterInitialResponse(typeURL string, edsNames []string) error {
	if c.sub(resourcev3.ListenerType) != nil {
		return nil
	}
	switch typeURL {
	case resourcev3.ClusterType:
		if len(edsNames) > 0 {
			c.waitingForEDS = true
			return nil
		}
	case resourcev3.EndpointType:
		if !c.waitingForEDS {
			return nil
		}
		c.waitingForEDS = false
	default:
		return nil
	}
	return c.send(c.subscribe(resourcev3.ListenerType, nil), nil)
}

// edsClusterNames are the EDS resources the clusters need, sorted as Envoy's
// request carries them in no particular order.
func edsClusterNames(resources []*anypb.Any) ([]string, error) {
	var names []string
	for _, r := range resources {
		var c clusterv3.Cluster
		if err := r.UnmarshalTo(&c); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		name := c.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = c.GetName()
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}
