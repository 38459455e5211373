package xds

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// NodeStatus is what this replica knows of the proxies of one MeshService or
// gateway (one NodeKey): each pod's Envoy holds a stream, and Proxies tells
// them apart by their own node ids.
type NodeStatus struct {
	// Streams is the number of open, authorized streams.
	Streams int
	// Proxies has one entry per open stream, oldest first.
	Proxies []ProxyStatus
	// LastAcked is, per type URL, the version last ACKed by any of the
	// proxies. It outlives the streams: a disconnected Envoy keeps running it.
	LastAcked Versions
	// LastNACK is the latest rejection still standing: nil once the proxy
	// that sent it ACKs a later response of that type, or any proxy ACKs
	// another version of that type.
	LastNACK *NACK
	// Snapshot holds the versions of the current snapshot, nil when there is
	// none.
	Snapshot Versions
	// Changed is when the streams last changed what is above (not Snapshot).
	Changed time.Time
}

// ProxyStatus is one stream's proxy.
type ProxyStatus struct {
	StreamID int64
	// NodeID is the proxy's own node.id: "<pod>.<namespace>" in XDS meshes.
	NodeID string
	// Peer is the client's address as seen by the server (pod IP and port).
	Peer string
	// SPIFFEID is the identity its certificate proved.
	SPIFFEID string
	// Since is when the stream opened.
	Since time.Time
	// Acked has a key for every type URL the proxy asked for: the version it
	// ACKed (or presented when it reconnected), "" while it has none.
	Acked Versions
	// NACK is the proxy's standing rejection, cleared once it ACKs a later
	// response of that type.
	NACK *NACK
}

// NACK is a rejected response: the proxy keeps running its previous version.
type NACK struct {
	TypeURL string
	// Version is the rejected version; "" if the NACK named a response this
	// replica did not send last on the stream.
	Version string
	// Message is Envoy's error_detail.message, the reason it gives.
	Message string
	At      time.Time

	nonce    string // the response rejected, to tell a later ACK from a resource-hint request
	streamID int64
}

// Synced tells whether the proxy runs the snapshot: every type it asked for is
// ACKed at the snapshot's version.
func (p ProxyStatus) Synced(snapshot Versions) bool {
	if len(p.Acked) == 0 || snapshot == nil {
		return false
	}
	for typeURL, v := range p.Acked {
		if v == "" || v != snapshot[typeURL] {
			return false
		}
	}
	return true
}

// ConfigVersion is the version the proxy ACKed for every type it asked for
// but EDS (listeners, clusters and secrets share Resources.Version), "" while
// those differ, mid-update, or before its first ACK. Endpoints move on their
// own version, Acked[EndpointType].
func (p ProxyStatus) ConfigVersion() string {
	version := ""
	for typeURL, v := range p.Acked {
		switch {
		case typeURL == EndpointType:
		case v == "" || (version != "" && v != version):
			return ""
		default:
			version = v
		}
	}
	return version
}

// Connected tells whether any proxy has a stream open.
func (n NodeStatus) Connected() bool { return n.Streams > 0 }

// stream is what the server tracks of one authorized or authenticating stream.
type stream struct {
	id       int64
	peer     string
	spiffeID string
	since    time.Time
	// key is the config the first request asked for and Authorize allowed,
	// "" until then; nodeID and cluster are that request's node, which may
	// not change.
	key, nodeID, cluster string
	acked                Versions
	nack                 *NACK
	// sent is, per type URL, the last response sent: what a NACK rejects.
	sent map[string]sentResponse
}

type sentResponse struct{ nonce, version string }

type node struct {
	streams       map[int64]*stream
	lastAcked     Versions
	lastNACK      *NACK
	snapshot      Versions
	changed       time.Time
	clearWhenIdle bool
}

// tracker keeps the status of every stream and node. One mutex guards it all:
// each callback does a few map operations under it, cheap at thousands of
// streams. Callbacks of one stream come from that stream's goroutine, in order.
type tracker struct {
	mu       sync.Mutex
	streams  map[int64]*stream
	nodes    map[string]*node
	onChange func(key string)
	now      func() time.Time
}

func newTracker(onChange func(string)) *tracker {
	if onChange == nil {
		onChange = func(string) {}
	}
	return &tracker{streams: map[int64]*stream{}, nodes: map[string]*node{}, onChange: onChange, now: time.Now}
}

func (t *tracker) nodeLocked(id string) *node {
	n := t.nodes[id]
	if n == nil {
		n = &node{streams: map[int64]*stream{}, lastAcked: Versions{}}
		t.nodes[id] = n
	}
	return n
}

// opened records an authenticated stream; its node is not known yet.
func (t *tracker) opened(id int64, peer, spiffeID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams[id] = &stream{id: id, peer: peer, spiffeID: spiffeID, since: t.now(), acked: Versions{}, sent: map[string]sentResponse{}}
}

// get returns the stream, nil if it was never opened (refused at open).
func (t *tracker) get(id int64) *stream {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.streams[id]
}

// bound attaches an authorized stream to the config it asks for.
func (t *tracker) bound(st *stream, key, nodeID, cluster string) {
	t.mu.Lock()
	st.key, st.nodeID, st.cluster = key, nodeID, cluster
	n := t.nodeLocked(key)
	n.streams[st.id] = st
	n.changed = t.now()
	t.mu.Unlock()
	t.onChange(key)
}

// requested reads an ACK, a NACK or a first request off a bound stream.
func (t *tracker) requested(st *stream, req *discoveryv3.DiscoveryRequest) {
	t.mu.Lock()
	changed := t.requestedLocked(st, req)
	t.mu.Unlock()
	if changed {
		t.onChange(st.key)
	}
}

func (t *tracker) requestedLocked(st *stream, req *discoveryv3.DiscoveryRequest) bool {
	typeURL, version := req.GetTypeUrl(), req.GetVersionInfo()
	n := t.nodes[st.key]
	if n == nil {
		return false
	}
	now := t.now()
	if req.GetErrorDetail() != nil {
		nack := &NACK{TypeURL: typeURL, Message: req.GetErrorDetail().GetMessage(), At: now, nonce: req.GetResponseNonce(), streamID: st.id}
		if sent, ok := st.sent[typeURL]; ok && sent.nonce == req.GetResponseNonce() {
			nack.Version = sent.version
		}
		if _, ok := st.acked[typeURL]; !ok {
			st.acked[typeURL] = version
		}
		st.nack, n.lastNACK, n.changed = nack, nack, now
		return true
	}
	changed := false
	if _, asked := st.acked[typeURL]; !asked || st.acked[typeURL] != version {
		// A first request reports the version the proxy already runs (after a
		// reconnect); later ones ACK what was sent. A resource-hint request
		// repeats the ACKed version and changes nothing.
		st.acked[typeURL] = version
		changed = true
	}
	if version != "" && n.lastAcked[typeURL] != version {
		n.lastAcked[typeURL] = version
		changed = true
	}
	// An ACK of a later response ends the proxy's rejection of this type; a
	// request naming the rejected response itself (a resource hint sent after
	// the NACK) does not.
	acksLater := req.GetResponseNonce() != ""
	if st.nack != nil && st.nack.TypeURL == typeURL && acksLater && req.GetResponseNonce() != st.nack.nonce {
		if n.lastNACK == st.nack {
			n.lastNACK = nil
		}
		st.nack = nil
		changed = true
	}
	if ln := n.lastNACK; ln != nil && ln.TypeURL == typeURL && acksLater && version != "" && version != ln.Version && ln.streamID != st.id {
		n.lastNACK = nil
		changed = true
	}
	if changed {
		n.changed = now
	}
	return changed
}

// responded remembers the last response of each type on a stream, for the
// NACK that may follow.
func (t *tracker) responded(id int64, resp *discoveryv3.DiscoveryResponse) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.streams[id]; st != nil {
		st.sent[resp.GetTypeUrl()] = sentResponse{nonce: resp.GetNonce(), version: resp.GetVersionInfo()}
	}
}

// closed forgets a stream, and its config's snapshot if ClearSnapshot was
// waiting for the last stream to go.
func (t *tracker) closed(id int64, clearSnapshot func(string)) {
	t.mu.Lock()
	st := t.streams[id]
	delete(t.streams, id)
	if st == nil || st.key == "" {
		t.mu.Unlock()
		return
	}
	n := t.nodes[st.key]
	delete(n.streams, id)
	n.changed = t.now()
	if n.clearWhenIdle && len(n.streams) == 0 {
		clearSnapshot(st.key)
		delete(t.nodes, st.key)
	}
	t.mu.Unlock()
	t.onChange(st.key)
}

// snapshotSet records a snapshot's versions and cancels a pending clear.
func (t *tracker) snapshotSet(key string, v Versions) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodeLocked(key)
	n.snapshot, n.clearWhenIdle = v, false
}

// clearWhenIdle clears key's snapshot now if no stream is open, else when
// the last one closes.
func (t *tracker) clearWhenIdle(key string, clearSnapshot func(string)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[key]
	if n == nil || len(n.streams) == 0 {
		clearSnapshot(key)
		delete(t.nodes, key)
		return
	}
	n.clearWhenIdle = true
}

// status copies one key's status out, so callers never share the maps.
func (t *tracker) status(key string) NodeStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.nodes[key]
	if n == nil {
		return NodeStatus{}
	}
	out := NodeStatus{
		Streams:   len(n.streams),
		LastAcked: maps.Clone(n.lastAcked),
		LastNACK:  copyNACK(n.lastNACK),
		Snapshot:  maps.Clone(n.snapshot),
		Changed:   n.changed,
	}
	for _, st := range n.streams {
		out.Proxies = append(out.Proxies, ProxyStatus{
			StreamID: st.id, NodeID: st.nodeID, Peer: st.peer, SPIFFEID: st.spiffeID, Since: st.since,
			Acked: maps.Clone(st.acked), NACK: copyNACK(st.nack),
		})
	}
	slices.SortFunc(out.Proxies, func(a, b ProxyStatus) int { return cmp.Compare(a.StreamID, b.StreamID) })
	return out
}

// keys lists the keys with open streams.
func (t *tracker) keys() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.nodes))
	for key, n := range t.nodes {
		if len(n.streams) > 0 {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out
}

func copyNACK(n *NACK) *NACK {
	if n == nil {
		return nil
	}
	c := *n
	return &c
}
