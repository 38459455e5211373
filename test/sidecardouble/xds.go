package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin/admintest"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/xds/fleetsim"
)

// This file is the double's xDS delivery: a pod whose bootstrap has an
// ads_config gets its listeners, clusters and endpoints from the manager's ADS
// server, through an in-process Envoy-like client (fleetsim), as a real Envoy
// started with that bootstrap would.

// initialFetchTimeout is how long an Envoy waits for its first listeners before
// it goes LIVE anyway: Envoy's default ConfigSource.initial_fetch_timeout.
const initialFetchTimeout = 15 * time.Second

// Reconnect backoff: Envoy retries a broken ADS stream with a jittered
// exponential backoff from 500ms; the double caps it at a few seconds so a
// restarted manager is found again quickly in the e2e suite.
const (
	reconnectBase = 500 * time.Millisecond
	reconnectMax  = 4 * time.Second
)

// rejectFaultMessage is the error_detail of a NACK caused by the reject fault.
const rejectFaultMessage = "sidecar double: fault reject: every config update is refused"

// adsBootstrap is what an ADS bootstrap tells the Envoy started with it.
type adsBootstrap struct {
	// Target is the xDS server, "<ip>:<port>": the address of the cluster
	// ads_config names. Only a loopback IP is accepted.
	Target string
	// ServerID is the URI SAN the server's certificate must carry.
	ServerID string
	// NodeCluster is the bootstrap's node.cluster, the MeshService (or
	// gateway) whose config the proxy asks for.
	NodeCluster string
	// NodeOnFirstRequestOnly is ads_config.set_node_on_first_message_only.
	NodeOnFirstRequestOnly bool
}

// parseADSBootstrap reads the ADS server out of a bootstrap (envoy.yaml). A
// bootstrap without ads_config is file delivery: nil, nil. One with an
// ads_config the double cannot follow (no such cluster, not one loopback IP
// endpoint, no server SAN) is an error.
func parseADSBootstrap(envoyYAML string) (*adsBootstrap, error) {
	if strings.TrimSpace(envoyYAML) == "" {
		return nil, nil // no bootstrap: nothing names an ADS server
	}
	j, err := yaml.YAMLToJSON([]byte(envoyYAML))
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	var b bootstrapv3.Bootstrap
	// The Any fields resolve against the types envoyconfig's builders register.
	if err := protojson.Unmarshal(j, &b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	ads := b.GetDynamicResources().GetAdsConfig()
	if ads == nil {
		return nil, nil
	}
	var clusterName string
	for _, g := range ads.GetGrpcServices() {
		if name := g.GetEnvoyGrpc().GetClusterName(); name != "" {
			clusterName = name
			break
		}
	}
	if clusterName == "" {
		return nil, errors.New("bootstrap: ads_config names no envoy_grpc cluster")
	}
	var cluster *clusterv3.Cluster
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == clusterName {
			cluster = c
		}
	}
	if cluster == nil {
		return nil, fmt.Errorf("bootstrap: no static cluster %q, which ads_config names", clusterName)
	}
	var addrs []string
	for _, l := range cluster.GetLoadAssignment().GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			addrs = append(addrs, net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))))
		}
	}
	if len(addrs) != 1 {
		return nil, fmt.Errorf("bootstrap: cluster %q has %d endpoints, want 1", clusterName, len(addrs))
	}
	// A DNS name is never resolved: the double dials loopback IPs only.
	if !isLoopback(addrs[0]) {
		return nil, fmt.Errorf("bootstrap: cluster %q points at %s, not a loopback IP: the double dials nothing else", clusterName, addrs[0])
	}
	var upstream tlsv3.UpstreamTlsContext
	if ts := cluster.GetTransportSocket(); ts == nil || ts.GetTypedConfig().UnmarshalTo(&upstream) != nil {
		return nil, fmt.Errorf("bootstrap: cluster %q has no UpstreamTlsContext", clusterName)
	}
	var serverID string
	for _, m := range upstream.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
		if m.GetSanType() == tlsv3.SubjectAltNameMatcher_URI && m.GetMatcher().GetExact() != "" {
			serverID = m.GetMatcher().GetExact()
		}
	}
	if serverID == "" {
		return nil, fmt.Errorf("bootstrap: cluster %q requires no exact URI SAN of the server", clusterName)
	}
	if b.GetNode().GetCluster() == "" {
		return nil, errors.New("bootstrap: no node.cluster")
	}
	return &adsBootstrap{Target: addrs[0], ServerID: serverID, NodeCluster: b.GetNode().GetCluster(),
		NodeOnFirstRequestOnly: ads.GetSetNodeOnFirstMessageOnly()}, nil
}

// identityDir is where the kubelet double writes a pod's identity volume:
// bundle.pem (key, then chain) and ca.pem (the trust bundle).
func identityDir(kubeletDir, podUID string) string {
	return filepath.Dir(bundlePath(kubeletDir, podUID))
}

// clientTLS is the Envoy's side of the channel, as the bootstrap sets it up:
// the pod's certificate, read from its identity volume at every handshake (so a
// rotation is used at the next connection), and the server verified against
// the volume's trust bundle and the bootstrap's server SPIFFE ID
// (fleetsim.ClientTLS's check).
func clientTLS(dir, serverID string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return loadCertificate(dir)
		},
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection, as fleetsim.ClientTLS does
		VerifyConnection: func(cs tls.ConnectionState) error {
			roots, err := loadRoots(dir)
			if err != nil {
				return err
			}
			return fleetsim.ClientTLS(tls.Certificate{}, roots, serverID).VerifyConnection(cs)
		},
	}
}

// loadCertificate reads the credential bundle: a private key, then the chain.
func loadCertificate(dir string) (*tls.Certificate, error) {
	b, err := os.ReadFile(filepath.Join(dir, envoyconfig.CredentialBundleFile))
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(b, b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", envoyconfig.CredentialBundleFile, err)
	}
	return &cert, nil
}

func loadRoots(dir string) (*x509.CertPool, error) {
	b, err := os.ReadFile(filepath.Join(dir, envoyconfig.TrustBundleFile))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no certificate", envoyconfig.TrustBundleFile)
	}
	return roots, nil
}

// refusal is a config an Envoy cannot load: it NACKs it whenever it is sent.
type refusal struct {
	message string
	byFault bool // the reject fault's, forgotten when the fault is cleared; else a /nack's
}

// xdsClient is one pod's Envoy in an XDS mesh: its ADS stream and what it
// accepted. The double's loop (under double.mu) starts and reconnects it; the
// status port and the stream goroutine read it concurrently, so what they share
// is atomic or under mu, and mu is never held while waiting for the stream.
type xdsClient struct {
	key     string // the pod, for logs
	boot    adsBootstrap
	node    *corev3.Node
	dir     string // the identity volume; "" when the pod has none (or no --kubelet-dir)
	started time.Time

	// Owned by the double's loop.
	failures int
	next     time.Time // no connection attempt before
	waiting  string    // why it is not connecting, as last logged
	ended    bool      // the current stream's end was logged

	sim atomic.Pointer[fleetsim.Sidecar]

	mu       sync.Mutex
	reject   bool                            // the reject fault: refuse every update
	nackNext string                          // an armed /nack: refuse the next update with this message
	running  map[string][32]byte             // per LDS/CDS type URL: the content accepted last
	refusing map[string]map[[32]byte]refusal // per type URL: contents refused
	rejected map[string]uint64               // per type URL: NACKs sent
}

func newXDSClient(key, podName, namespace, dir string, boot adsBootstrap, now time.Time) *xdsClient {
	return &xdsClient{
		key: key, boot: boot, dir: dir, started: now,
		node:     &corev3.Node{Id: podName + "." + namespace, Cluster: boot.NodeCluster},
		running:  map[string][32]byte{},
		refusing: map[string]map[[32]byte]refusal{},
		rejected: map[string]uint64{},
	}
}

// step connects the client once its certificate is there, and reconnects a
// stream that ended, with backoff. It runs on the double's loop.
func (x *xdsClient) step(now time.Time) {
	if now.Before(x.next) {
		return
	}
	sim := x.sim.Load()
	if sim == nil {
		if reason := x.notReady(); reason != "" {
			if reason != x.waiting {
				log.Printf("%s: ADS to %s waits: %s", x.key, x.boot.Target, reason)
				x.waiting = reason
			}
			return
		}
		s, err := fleetsim.Start(fleetsim.Config{
			Target:                 x.boot.Target,
			TLS:                    clientTLS(x.dir, x.boot.ServerID),
			Node:                   x.node,
			NodeOnFirstRequestOnly: x.boot.NodeOnFirstRequestOnly,
			Accept:                 x.accept,
		})
		if err != nil {
			log.Printf("%s: ADS: %v", x.key, err)
			x.backoff(now)
			return
		}
		log.Printf("%s: ADS stream to %s as node %s (cluster %s), server %s", x.key, x.boot.Target, x.node.GetId(), x.node.GetCluster(), x.boot.ServerID)
		x.sim.Store(s)
		x.next = now.Add(reconnectBase)
		return
	}
	st := sim.State()
	switch {
	case st.Connected:
		x.failures, x.ended = 0, false
	case st.Err != nil:
		if !x.ended {
			log.Printf("%s: ADS stream to %s ended: %v", x.key, x.boot.Target, st.Err)
			x.ended = true
		}
		if err := sim.Reconnect(""); err != nil {
			log.Printf("%s: ADS reconnect: %v", x.key, err)
		}
		x.backoff(now)
	}
}

// notReady says why the client cannot connect yet: the pod's certificate or
// trust bundle is missing (the kubelet writes them after the pod started).
func (x *xdsClient) notReady() string {
	if x.dir == "" {
		return "no identity volume (or no --kubelet-dir): the ADS channel needs the Pod Certificate"
	}
	if _, err := loadCertificate(x.dir); err != nil {
		return "no certificate yet: " + err.Error()
	}
	if _, err := loadRoots(x.dir); err != nil {
		return "no trust bundle yet: " + err.Error()
	}
	return ""
}

func (x *xdsClient) backoff(now time.Time) {
	x.failures++
	d := reconnectBase << min(x.failures-1, 4)
	x.next = now.Add(min(d, reconnectMax))
}

func (x *xdsClient) close() {
	if s := x.sim.Load(); s != nil {
		s.Close()
	}
}

// state is the stream's state; the zero State before the first connection.
func (x *xdsClient) state() fleetsim.State {
	if s := x.sim.Load(); s != nil {
		return s.State()
	}
	return fleetsim.State{}
}

// live reports whether the Envoy finished initializing: once it handled its
// first listeners (accepted or not), or after the initial fetch timeout.
func (x *xdsClient) live(now time.Time) bool {
	return x.state().Received[resourcev3.ListenerType] > 0 || now.Sub(x.started) >= initialFetchTimeout
}

// accept is the Envoy applying a response (fleetsim's Accept hook, on the
// stream's goroutine). Endpoints are always accepted. A listener or cluster
// update is refused when its content was refused before (Envoy would fail on
// it again), or when it changes what runs while a /nack is armed (once) or
// the reject fault is set; otherwise it is accepted.
func (x *xdsClient) accept(typeURL string, resources []*anypb.Any) error {
	if typeURL != resourcev3.ListenerType && typeURL != resourcev3.ClusterType {
		return nil
	}
	h := contentHash(resources)
	x.mu.Lock()
	defer x.mu.Unlock()
	if r, ok := x.refusing[typeURL][h]; ok {
		x.rejected[typeURL]++
		return errors.New(r.message)
	}
	if cur, ok := x.running[typeURL]; ok && cur == h {
		return nil // unchanged: a push for another type's change
	}
	r := refusal{message: x.nackNext}
	switch {
	case r.message != "":
		x.nackNext = ""
	case x.reject:
		r = refusal{message: rejectFaultMessage, byFault: true}
	default:
		x.running[typeURL] = h
		return nil
	}
	if x.refusing[typeURL] == nil {
		x.refusing[typeURL] = map[[32]byte]refusal{}
	}
	x.refusing[typeURL][h] = r
	x.rejected[typeURL]++
	log.Printf("%s: NACK of %s: %s", x.key, shortType(typeURL), r.message)
	return errors.New(r.message)
}

// contentHash identifies a response's resources whatever their order: the
// server marshals each one deterministically, but lists them in map order, which
// changes from response to response.
func contentHash(resources []*anypb.Any) [32]byte {
	each := make([][32]byte, 0, len(resources))
	for _, r := range resources {
		h := sha256.New()
		for _, b := range [][]byte{[]byte(r.GetTypeUrl()), r.GetValue()} {
			_ = binary.Write(h, binary.BigEndian, uint64(len(b)))
			h.Write(b)
		}
		each = append(each, [32]byte(h.Sum(nil)))
	}
	slices.SortFunc(each, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	h := sha256.New()
	for _, e := range each {
		h.Write(e[:])
	}
	return [32]byte(h.Sum(nil))
}

func shortType(typeURL string) string {
	switch typeURL {
	case resourcev3.ListenerType:
		return "LDS"
	case resourcev3.ClusterType:
		return "CDS"
	case resourcev3.EndpointType:
		return "EDS"
	}
	return typeURL
}

// setReject sets or clears the reject fault; clearing it forgets what it refused.
func (x *xdsClient) setReject(on bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.reject == on {
		return
	}
	x.reject = on
	if !on {
		x.forgetLocked(true)
	}
}

// armNACK makes the next listener or cluster update that changes what runs a NACK with message.
func (x *xdsClient) armNACK(message string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.nackNext = message
}

// clearNACK disarms a /nack and forgets the configs /nack made it refuse.
func (x *xdsClient) clearNACK() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.nackNext = ""
	x.forgetLocked(false)
}

func (x *xdsClient) forgetLocked(byFault bool) {
	for _, m := range x.refusing {
		for h, r := range m {
			if r.byFault == byFault {
				delete(m, h)
			}
		}
	}
}

func (x *xdsClient) counts() (lds, cds uint64, armed string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.rejected[resourcev3.ListenerType], x.rejected[resourcev3.ClusterType], x.nackNext
}

// XDSInfo is an XDS sidecar's stream as GET /sidecars reports it.
type XDSInfo struct {
	Target    string `json:"target"`
	Node      string `json:"node"`
	Connected bool   `json:"connected"`
	Streams   int    `json:"streams"`
	Error     string `json:"error,omitempty"`
	// LDS, CDS and EDS are the versions ACKed.
	LDS string `json:"lds,omitempty"`
	CDS string `json:"cds,omitempty"`
	EDS string `json:"eds,omitempty"`
	// LDSRejected and CDSRejected count NACKs; LastNACK is the last one's message.
	LDSRejected uint64 `json:"ldsRejected"`
	CDSRejected uint64 `json:"cdsRejected"`
	LastNACK    string `json:"lastNACK,omitempty"`
	// NACKArmed is the message of an armed /nack.
	NACKArmed string `json:"nackArmed,omitempty"`
	// Clusters are the clusters of the accepted CDS with their hosts (from EDS for EDS clusters).
	Clusters []ClusterHosts `json:"clusters,omitempty"`
}

// ClusterHosts is one cluster of an XDS sidecar: its hosts, and how many are HEALTHY.
type ClusterHosts struct {
	Name    string `json:"name"`
	Hosts   int    `json:"hosts"`
	Healthy int    `json:"healthy"`
}

func (x *xdsClient) info() *XDSInfo {
	st := x.state()
	lds, cds, armed := x.counts()
	info := &XDSInfo{Target: x.boot.Target, Node: x.node.GetId(), Connected: st.Connected, Streams: st.Streams,
		LDS: st.Acked[resourcev3.ListenerType], CDS: st.Acked[resourcev3.ClusterType], EDS: st.Acked[resourcev3.EndpointType],
		LDSRejected: lds, CDSRejected: cds, LastNACK: st.LastNACK, NACKArmed: armed}
	if st.Err != nil && !st.Connected {
		info.Error = st.Err.Error()
	}
	for _, c := range clustersOf(st) {
		n := ClusterHosts{Name: c.name, Hosts: len(c.hosts)}
		for _, h := range c.hosts {
			if h.health == corev3.HealthStatus_HEALTHY {
				n.Healthy++
			}
		}
		info.Clusters = append(info.Clusters, n)
	}
	return info
}

// xdsCluster is a cluster of the accepted CDS and its hosts.
type xdsCluster struct {
	name, edsServiceName string
	hosts                []xdsHost
}

type xdsHost struct {
	address string
	port    uint32
	health  corev3.HealthStatus
	weight  uint32
	zone    string
}

// clustersOf lists the accepted clusters, sorted by name, with the hosts of
// their accepted load assignments: from EDS for EDS clusters (none until it
// arrived), else the cluster's own load_assignment.
func clustersOf(st fleetsim.State) []xdsCluster {
	assignments := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, r := range st.Resources[resourcev3.EndpointType] {
		var cla endpointv3.ClusterLoadAssignment
		if r.UnmarshalTo(&cla) == nil {
			assignments[cla.GetClusterName()] = &cla
		}
	}
	var out []xdsCluster
	for _, r := range st.Resources[resourcev3.ClusterType] {
		var c clusterv3.Cluster
		if r.UnmarshalTo(&c) != nil {
			continue
		}
		xc := xdsCluster{name: c.GetName()}
		cla := c.GetLoadAssignment()
		if c.GetType() == clusterv3.Cluster_EDS {
			xc.edsServiceName = c.GetEdsClusterConfig().GetServiceName()
			name := xc.edsServiceName
			if name == "" {
				name = c.GetName()
			}
			cla = assignments[name]
		}
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				h := xdsHost{address: sa.GetAddress(), port: sa.GetPortValue(), health: e.GetHealthStatus(),
					weight: max(e.GetLoadBalancingWeight().GetValue(), 1), zone: l.GetLocality().GetZone()}
				if h.health == corev3.HealthStatus_UNKNOWN {
					h.health = corev3.HealthStatus_HEALTHY // Envoy treats an unset status as healthy
				}
				xc.hosts = append(xc.hosts, h)
			}
		}
		out = append(out, xc)
	}
	slices.SortFunc(out, func(a, b xdsCluster) int { return strings.Compare(a.name, b.name) })
	return out
}

// serveClusters answers /clusters?format=json from the accepted CDS and EDS,
// in the admin.v3.Clusters proto-JSON shape: each host with its address and
// its eds_health_status (HEALTHY, DRAINING, ...), as Envoy reports EDS hosts.
func (x *xdsClient) serveClusters(w http.ResponseWriter) {
	statuses := []any{}
	for _, c := range clustersOf(x.state()) {
		hosts := []any{}
		for _, h := range c.hosts {
			host := map[string]any{
				"address": map[string]any{"socket_address": map[string]any{
					"protocol": "TCP", "address": h.address, "port_value": h.port,
				}},
				"stats": []any{
					map[string]any{"name": "cx_active", "value": "0", "type": "GAUGE"},
					map[string]any{"name": "rq_total", "value": "0", "type": "COUNTER"},
				},
				"health_status": map[string]any{"eds_health_status": h.health.String()},
				"weight":        h.weight,
			}
			if h.zone != "" {
				host["locality"] = map[string]any{"zone": h.zone}
			}
			hosts = append(hosts, host)
		}
		status := map[string]any{"name": c.name, "added_via_api": true, "host_statuses": hosts}
		if c.edsServiceName != "" {
			status["eds_service_name"] = c.edsServiceName
		}
		statuses = append(statuses, status)
	}
	writeJSON(w, map[string]any{"cluster_statuses": statuses})
}

// Stats the double computes for an XDS sidecar (see serveStats).
const (
	ldsVersionStat     = "listener_manager.lds.version_text"
	cdsVersionStat     = "cluster_manager.cds.version_text"
	connectedStateStat = "control_plane.connected_state"
)

// serveStats answers /stats as the stub does (server state, update counters,
// inbound counters, the filter), with what the ADS stream holds: the LDS and
// CDS version_text are the versions ACKed, update_rejected the NACKs (the loop
// keeps the stub's counters at them), and control_plane.connected_state is 1
// while the stream is open.
func (x *xdsClient) serveStats(w http.ResponseWriter, r *http.Request, stub *admintest.Sidecar) {
	rec := httptest.NewRecorder()
	stub.ServeHTTP(rec, r)
	filter, err := regexp.Compile(r.URL.Query().Get("filter"))
	var body struct {
		Stats []json.RawMessage `json:"stats"`
	}
	if rec.Code != http.StatusOK || err != nil || json.Unmarshal(rec.Body.Bytes(), &body) != nil {
		copyResponse(w, rec) // a bad filter's 400, garbage mode: as the stub answered
		return
	}
	st := x.state()
	connected := 0
	if st.Connected {
		connected = 1
	}
	replace := map[string]any{
		ldsVersionStat: st.Acked[resourcev3.ListenerType],
		cdsVersionStat: st.Acked[resourcev3.ClusterType],
	}
	gauge := mustJSON(map[string]any{"name": connectedStateStat, "value": connected})
	out := make([]json.RawMessage, 0, len(body.Stats)+1)
	added := !filter.MatchString(connectedStateStat)
	for _, raw := range body.Stats {
		var s struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(raw, &s) != nil || s.Name == "" {
			// The histograms element closes the list, after the counters and gauges.
			if !added {
				out, added = append(out, gauge), true
			}
			out = append(out, raw)
			continue
		}
		if v, ok := replace[s.Name]; ok {
			raw = mustJSON(map[string]any{"name": s.Name, "value": v})
		}
		out = append(out, raw)
	}
	if !added {
		out = append(out, gauge)
	}
	writeJSON(w, map[string]any{"stats": out})
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings and numbers
	}
	return b
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// stepXDS brings an XDS sidecar up to date: its stream (connect, reconnect),
// the reject fault, and what the stub reports besides the stream-backed /stats
// and /clusters: LIVE once initialized, the ACKed listener version and the
// NACK counts.
func (d *double) stepXDS(s *sidecar, fault string, now time.Time) {
	x := s.xds
	if x == nil {
		ns, pod, _ := strings.Cut(s.key, "/")
		pod, _, _ = strings.Cut(pod, "/")
		dir := ""
		if d.kubeletDir != "" && s.identity {
			dir = identityDir(d.kubeletDir, s.uid)
		}
		x = newXDSClient(s.key, pod, ns, dir, *s.ads, now)
		s.xds = x
		s.view.Store(x)
	}
	x.setReject(fault == faultReject)
	x.step(now)
	if x.live(now) {
		s.stub.SetState("LIVE")
	} else {
		s.stub.SetState("INITIALIZING")
	}
	st := x.state()
	lds, cds, _ := x.counts()
	s.loaded = st.Acked[resourcev3.ListenerType]
	s.rejected = lds + cds
	s.stub.SetVersion(s.loaded)
	s.stub.SetRejected(lds, cds)
}

// closeXDS ends an XDS sidecar's stream, as its Envoy going away does.
func (s *sidecar) closeXDS() {
	if s.xds != nil {
		s.view.Store(nil)
		s.xds.close()
		s.xds = nil
	}
}

// nack arms (message != "") or clears a NACK on the XDS sidecars of owner, or
// of its pod when pod is set, and returns how many it changed.
func (d *double) nack(owner, pod, message string, arm bool) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, s := range d.sidecars {
		if s.owner != owner || s.xds == nil {
			continue
		}
		if pod != "" && !strings.HasPrefix(s.key, strings.SplitN(owner, "/", 2)[0]+"/"+pod+"/") {
			continue
		}
		if arm {
			s.xds.armNACK(message)
		} else {
			s.xds.clearNACK()
		}
		n++
	}
	return n
}

// nackHandlers are PUT and DELETE /nack/{namespace}/{owner}.
func (d *double) nackHandlers(mux *http.ServeMux) {
	mux.HandleFunc("PUT /nack/{namespace}/{owner}", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		message := q.Get("message")
		if message == "" {
			message = "sidecar double: NACK injected through the control endpoint"
		}
		owner := r.PathValue("namespace") + "/" + r.PathValue("owner")
		if d.nack(owner, q.Get("pod"), message, true) == 0 {
			http.Error(w, "no XDS sidecar of "+owner+podSuffix(q.Get("pod")), http.StatusNotFound)
			return
		}
		log.Printf("NACK armed on %s%s: %q", owner, podSuffix(q.Get("pod")), message)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /nack/{namespace}/{owner}", func(w http.ResponseWriter, r *http.Request) {
		pod := r.URL.Query().Get("pod")
		owner := r.PathValue("namespace") + "/" + r.PathValue("owner")
		if d.nack(owner, pod, "", false) == 0 {
			http.Error(w, "no XDS sidecar of "+owner+podSuffix(pod), http.StatusNotFound)
			return
		}
		log.Printf("NACK cleared on %s%s", owner, podSuffix(pod))
		w.WriteHeader(http.StatusNoContent)
	})
}

func podSuffix(pod string) string {
	if pod == "" {
		return ""
	}
	return " (pod " + pod + ")"
}

// statusHandler serves a sidecar's status port: the admintest stub, except
// /stats and /clusters of an XDS sidecar, which follow its stream.
type statusHandler struct {
	stub *admintest.Sidecar
	s    *sidecar
}

func (h statusHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := h.s.view.Load()
	if x == nil || r.Method != http.MethodGet || h.s.hang.Load() {
		h.stub.ServeHTTP(w, r)
		return
	}
	switch r.URL.Path {
	case "/stats":
		x.serveStats(w, r, h.stub)
	case "/clusters":
		x.serveClusters(w)
	default:
		h.stub.ServeHTTP(w, r)
	}
}

// serveStatus binds the sidecar's status port and serves its stub there.
func (s *sidecar) serveStatus() error {
	if !isLoopback(s.addr) {
		return fmt.Errorf("%s is not a loopback address", s.addr)
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return err
	}
	stub := admintest.NewSidecar()
	srv := &http.Server{Handler: statusHandler{stub: stub, s: s}, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	s.stub, s.srv, s.bound = stub, srv, ln.Addr().String()
	s.hang.Store(false)
	return nil
}

// closeStatus closes the status port, releasing hung requests first.
func (s *sidecar) closeStatus() {
	if s.stub == nil {
		return
	}
	s.stub.Close()
	_ = s.srv.Close()
	s.stub, s.srv = nil, nil
}

// statusURL is the base URL of the status port, e.g. "http://127.1.0.5:15021".
func (s *sidecar) statusURL() string { return "http://" + s.bound }
