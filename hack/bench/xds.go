package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachetypes "github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/google/pprof/profile"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/anypb"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
	"github.com/envoymesh/envoymesh-operator/internal/xds"
	"github.com/envoymesh/envoymesh-operator/internal/xds/fleetsim"
)

// The xds scenario: a mesh delivering over xDS with simulated sidecars
// (internal/xds/fleetsim) on real ADS streams to the real manager, and the same
// fleet on go-control-plane alone fed the same snapshots (the floor). See
// docs/benchmarks.md, "xDS delivery".
const (
	// xdsCMNamespace holds the same services in a ConfigMap mesh, for the
	// same changes through ConfigMaps.
	xdsCMNamespace = "bench-cm"
	// xdsUpstreams: svc-j calls svc-(j+1) .. svc-(j+3), so every service has
	// three callers.
	xdsUpstreams = 3
	// xdsNACKServices is how many services get rejecting sidecars.
	xdsNACKServices = 10
	// xdsNACKWindow is how long resends of a rejected version are counted.
	xdsNACKWindow = 2 * time.Second
	// caSecretName is controllers.DefaultCASecretName, in managerNamespace.
	caSecretName = "envoymesh-identity-ca"
	// xdsWait bounds every wait of the scenario.
	xdsWait = 2 * time.Minute
	// xdsMemProfileRate is the heap profiles' sampling rate in the manager
	// (GODEBUG=memprofilerate) and in the bench, for the attribution by package.
	xdsMemProfileRate = 64 << 10
)

// xdsResult is one run: the manager's figures and the floor's.
type xdsResult struct {
	sidecars, services, pods int
	// connect: the fleet started → every sidecar ACKed its config.
	connect, floorConnect time.Duration
	// one: per affected sidecar of every step, a callee's spec.traffic patch (ours)
	// or SetSnapshot of the changed keys (floor) → the sidecar ACKed LDS and CDS.
	one, oneFloor []time.Duration
	oneWatch      []time.Duration // per step: patch → the bench's informer saw it
	oneAffected   []int           // sidecars per step whose config changed
	// *After: the same from the moment the bench's own watch saw the change,
	// which the manager's watch sees at about the same time: the operator's
	// and the library's part without the API server's.
	oneAfter, allAfter, edsAfter []time.Duration
	// all: the ServiceMesh's spec.defaults, every sidecar.
	all, allFloor []time.Duration
	allWatch      time.Duration
	// allReportWrites: the leader's report of its streams rewritten during the
	// step (seen by the bench's watch), and its bytes in all.
	allReportWrites int
	allReportBytes  int64
	// eds: an EndpointSlice update → each caller sidecar ACKed the new EDS.
	eds, edsFloor []time.Duration
	edsWatch      []time.Duration
	edsResponses  int // responses of other types than EDS during the EDS steps
	// reconnect: every sidecar moves to the follower: until each has a new
	// stream open, and until the follower's report of its streams shows every
	// one in sync; the responses sent meanwhile; whether the leader's status
	// then shows them all in sync; the report's size.
	reconnectStreams, reconnectReport time.Duration
	reconnectPushes, reportBytes      int
	reconnectStatusOK                 bool
	reconnectFloor                    time.Duration
	reconnectFloorPushes              int
	// heap: the manager's HeapInuse and StackInuse after a GC, before and after
	// the fleet connected; by package from its heap profiles.
	heapBefore, heapAfter, stackBefore, stackAfter int64
	heapByPkg                                      map[string]int64
	// floorHeap: the bench process's heap profile delta by side and package.
	floorHeap                     map[string]int64
	floorHeapInuse                int64 // the bench process's HeapInuse delta, server and simulator
	nack, nackFloor               []time.Duration
	nackSidecars                  int
	nackResends, nackFloorResends int
	// cm: the same changes in the ConfigMap mesh, until the ConfigMaps are written.
	cmOne, cmAll []time.Duration
	retries      int // sidecars whose stream failed and were reconnected
}

// xdsShape checks the scenario's knobs: services of pods sidecars each.
func (o options) xdsShape() (services, pods int, err error) {
	pods = o.xdsPods
	if pods < 2 {
		return 0, 0, fmt.Errorf("-xds-pods must be at least 2 (one sidecar per service is never made to reject), not %d", pods)
	}
	services = o.xdsSidecars / pods
	if services < 2*xdsUpstreams || services*pods != o.xdsSidecars {
		return 0, 0, fmt.Errorf("-xds-sidecars %d: want a multiple of -xds-pods %d with at least %d services", o.xdsSidecars, pods, 2*xdsUpstreams)
	}
	if o.xdsSteps < 1 {
		return 0, 0, fmt.Errorf("-xds-steps must be at least 1")
	}
	return services, pods, nil
}

// runXDS runs the xds scenario o.runs times.
func runXDS(ctx context.Context, o options, res *results) {
	if _, _, err := o.xdsShape(); err != nil {
		res.fail("xds", err)
		return
	}
	// Every heap sample after this is scaled right; the floor's servers and
	// fleets are all made later.
	runtime.MemProfileRate = xdsMemProfileRate
	for i := range o.runs {
		r, err := xdsRun(ctx, o, i)
		if err != nil {
			res.fail(fmt.Sprintf("xds %d sidecars run %d", o.xdsSidecars, i+1), err)
			continue
		}
		res.xds = append(res.xds, r)
	}
}

// xdsRun is one run: the manager's part on a fresh control plane, then the
// floor's replay of the same snapshots, in this process without it.
func xdsRun(ctx context.Context, o options, run int) (*xdsResult, error) {
	services, pods, _ := o.xdsShape()
	r := &xdsResult{sidecars: services * pods, services: services, pods: pods}
	ours, err := xdsOurs(ctx, o, r, run)
	if err != nil {
		return nil, err
	}
	if err := xdsFloor(ctx, r, ours, filepath.Join(o.logDir, fmt.Sprintf("xds-s%d-run%d", r.sidecars, run+1))); err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	logf("xds %d sidecars run %d: %s", r.sidecars, run+1, r.summary())
	return r, nil
}

func (r *xdsResult) summary() string {
	return fmt.Sprintf("one p99 %s (floor %s), all %s (floor %s), eds p99 %s (floor %s), reconnect status %s (floor %s, pushes %d/%d), heap %.1f KiB/sidecar, nack p99 %s (floor %s) resends %d (floor %d), configmaps one p99 %s all %s",
		dq(r.one, 0.99), dq(r.oneFloor, 0.99), dq(r.all, 1), dq(r.allFloor, 1), dq(r.eds, 0.99), dq(r.edsFloor, 0.99),
		r.reconnectReport.Round(time.Millisecond), r.reconnectFloor.Round(time.Millisecond), r.reconnectPushes, r.reconnectFloorPushes,
		r.heapPerSidecar()/1024, dq(r.nack, 0.99), dq(r.nackFloor, 0.99), r.nackResends, r.nackFloorResends, dq(r.cmOne, 0.99), dq(r.cmAll, 1))
}

func (r *xdsResult) heapPerSidecar() float64 {
	return float64(r.heapAfter-r.heapBefore) / float64(r.sidecars)
}

// minus is d, each less x.
func minus(d []time.Duration, x time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i, v := range d {
		out[i] = v - x
	}
	return out
}

// quantile is the q-quantile of d (nearest rank), 0 for none.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func dq(d []time.Duration, q float64) time.Duration {
	return quantile(d, q).Round(10 * time.Microsecond)
}

// --- the fleet ---

// xdsFleet is the simulated sidecars: pods of each service, every one with its
// own key and certificate, and a switch that makes it reject new listeners.
type xdsFleet struct {
	cfgs     []fleetsim.Config
	sc       []*fleetsim.Sidecar
	key      []string // NodeKey of its service
	svc      []int
	armed    []atomic.Bool
	rejectAt []atomic.Int64 // unix nanos of its first rejection since armed
	byKey    map[string][]int
	keys     []string
	pods     int
}

// newXDSFleet makes the configs of services×pods sidecars in namespace ns,
// each with a leaf from ca for its service's identity, trusting roots and
// only serverID.
func newXDSFleet(ca *identity.CA, roots *x509.CertPool, serverID, ns string, services, pods int) (*xdsFleet, error) {
	n := services * pods
	f := &xdsFleet{armed: make([]atomic.Bool, n), rejectAt: make([]atomic.Int64, n), byKey: map[string][]int{}, pods: pods}
	for j := range services {
		name := svcName(j)
		key := xds.NodeKey(name, ns)
		f.keys = append(f.keys, key)
		for k := range pods {
			i := len(f.cfgs)
			cert, err := leafFor(ca, identity.SPIFFEID(trustDomain, ns, name))
			if err != nil {
				return nil, err
			}
			f.cfgs = append(f.cfgs, fleetsim.Config{
				TLS:                    fleetsim.ClientTLS(cert, roots, serverID),
				Node:                   &corev3.Node{Id: podName(name, k) + "." + ns, Cluster: name},
				NodeOnFirstRequestOnly: true, // as ADSDelivery's bootstrap sets it
				Accept: func(typeURL string, _ []*anypb.Any) error {
					if typeURL == xds.ListenerType && f.armed[i].Load() {
						f.rejectAt[i].CompareAndSwap(0, time.Now().UnixNano())
						return errors.New("Error adding/updating listener(s) ingress: bench: this sidecar rejects every new listener version")
					}
					return nil
				},
			})
			f.key = append(f.key, key)
			f.svc = append(f.svc, j)
			f.byKey[key] = append(f.byKey[key], i)
		}
	}
	return f, nil
}

func podName(service string, k int) string { return service + "-pod-" + strconv.Itoa(k) }

// leafFor is a Pod Certificate for spiffeID as the signer would issue it.
func leafFor(ca *identity.CA, spiffeID string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := ca.Issue(key.Public(), spiffeID, 24*time.Hour, time.Now())
	if err != nil {
		return tls.Certificate{}, err
	}
	cert := tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: key, Leaf: leaf.Cert}
	for _, c := range ca.Chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, nil
}

// start connects every sidecar to target.
func (f *xdsFleet) start(target string) error {
	f.sc = make([]*fleetsim.Sidecar, len(f.cfgs))
	for i, cfg := range f.cfgs {
		cfg.Target = target
		s, err := fleetsim.Start(cfg)
		if err != nil {
			f.close()
			return err
		}
		f.sc[i] = s
	}
	return nil
}

func (f *xdsFleet) close() {
	var wg sync.WaitGroup
	for _, s := range f.sc {
		if s != nil {
			wg.Go(s.Close)
		}
	}
	wg.Wait()
}

func (f *xdsFleet) counters() fleetsim.Counters {
	return (&fleetsim.Fleet{Sidecars: f.sc}).Counters()
}

// reconnectAll moves every sidecar to target at once.
func (f *xdsFleet) reconnectAll(target string) error {
	return (&fleetsim.Fleet{Sidecars: f.sc}).ReconnectAll(target)
}

// all is every sidecar's index.
func (f *xdsFleet) all() []int {
	out := make([]int, len(f.sc))
	for i := range out {
		out[i] = i
	}
	return out
}

// ofServices are the sidecars of the given services.
func (f *xdsFleet) ofServices(ns string, svcs ...int) []int {
	var out []int
	for _, j := range svcs {
		out = append(out, f.byKey[xds.NodeKey(svcName(j), ns)]...)
	}
	return out
}

// tracking records, per sidecar, when it first ACKed a listener and cluster
// version other than the one it ran at the start, an endpoints version, its
// next stream opened, and that stream was sent every type again: set from
// inside the sidecar's state callback, so nothing polls.
type tracking struct {
	lc, eds, stream, resent []atomic.Int64
	lcDone, edsDone         []chan struct{}
	streamDone, resentDone  []chan struct{}
	cancel                  context.CancelFunc
	wg                      sync.WaitGroup
}

// track starts tracking every sidecar; call stop when the step is over.
func (f *xdsFleet) track() *tracking {
	n := len(f.sc)
	ctx, cancel := context.WithCancel(context.Background())
	t := &tracking{lc: make([]atomic.Int64, n), eds: make([]atomic.Int64, n), stream: make([]atomic.Int64, n), resent: make([]atomic.Int64, n),
		lcDone: make([]chan struct{}, n), edsDone: make([]chan struct{}, n), streamDone: make([]chan struct{}, n), resentDone: make([]chan struct{}, n),
		cancel: cancel}
	for i, s := range f.sc {
		before := s.State()
		for _, c := range []*[]chan struct{}{&t.lcDone, &t.edsDone, &t.streamDone, &t.resentDone} {
			(*c)[i] = make(chan struct{})
		}
		mark := func(at []atomic.Int64, done []chan struct{}, now int64) {
			if at[i].Load() == 0 {
				at[i].Store(now)
				close(done[i])
			}
		}
		t.wg.Go(func() {
			_ = s.WaitFor(ctx, func(st *fleetsim.State) bool {
				now := time.Now().UnixNano()
				if st.Acked[xds.ListenerType] != before.Acked[xds.ListenerType] && st.Acked[xds.ClusterType] != before.Acked[xds.ClusterType] {
					mark(t.lc, t.lcDone, now)
				}
				if st.Acked[xds.EndpointType] != before.Acked[xds.EndpointType] {
					mark(t.eds, t.edsDone, now)
				}
				if st.Streams > before.Streams && st.Connected {
					mark(t.stream, t.streamDone, now)
					resent := true
					for typ, n := range before.Received {
						resent = resent && st.Received[typ] > n
					}
					if resent && len(before.Received) > 0 {
						mark(t.resent, t.resentDone, now)
					}
				}
				return t.lc[i].Load() != 0 && t.eds[i].Load() != 0 && t.resent[i].Load() != 0
			})
		})
	}
	return t
}

func (t *tracking) stop() {
	t.cancel()
	t.wg.Wait()
}

// wait waits until done[i] closed for every i of idx.
func waitAll(ctx context.Context, done []chan struct{}, idx []int, what string) error {
	ctx, cancel := context.WithTimeout(ctx, xdsWait)
	defer cancel()
	for n, i := range idx {
		select {
		case <-done[i]:
		case <-ctx.Done():
			return fmt.Errorf("%s: %d of %d sidecars after %s", what, n, len(idx), xdsWait)
		}
	}
	return nil
}

// since is the time from start to each i's recorded moment.
func since(start time.Time, at []atomic.Int64, idx []int) []time.Duration {
	out := make([]time.Duration, 0, len(idx))
	for _, i := range idx {
		out = append(out, time.Duration(at[i].Load()-start.UnixNano()))
	}
	return out
}

// capture is what one sidecar of each service runs: a version and the
// resources per type, what the floor is then fed.
type capture map[string]keyConfig

type keyConfig struct {
	versions  map[string]string
	resources map[string][]*anypb.Any
}

var xdsTypes = []string{xds.ClusterType, xds.EndpointType, xds.ListenerType}

// capture reads each key's config off its last pod (never armed) and checks
// that every other pod that is not armed runs the same versions.
func (f *xdsFleet) capture() (capture, error) {
	c := capture{}
	for _, key := range f.keys {
		idx := f.byKey[key]
		ref := f.sc[idx[len(idx)-1]].State()
		kc := keyConfig{versions: map[string]string{}, resources: map[string][]*anypb.Any{}}
		for _, t := range xdsTypes {
			if v, ok := ref.Acked[t]; ok {
				kc.versions[t], kc.resources[t] = v, ref.Resources[t]
			}
		}
		for _, i := range idx {
			if f.armed[i].Load() {
				continue
			}
			if st := f.sc[i].State(); !maps.Equal(st.Acked, ref.Acked) {
				return nil, fmt.Errorf("the pods of %s run different versions: %v and %v", key, st.Acked, ref.Acked)
			}
		}
		c[key] = kc
	}
	return c, nil
}

// changed are the keys whose versions differ from prev.
func (c capture) changed(prev capture) []string {
	var out []string
	for key, kc := range c {
		if !maps.Equal(kc.versions, prev[key].versions) {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out
}

// snapshot is kc as a go-control-plane snapshot, each type at its version.
func (kc keyConfig) snapshot() (*cachev3.Snapshot, error) {
	snap := &cachev3.Snapshot{}
	for t, rt := range map[string]cachetypes.ResponseType{xds.ListenerType: cachetypes.Listener, xds.ClusterType: cachetypes.Cluster, xds.EndpointType: cachetypes.Endpoint} {
		items := make([]cachetypes.Resource, 0, len(kc.resources[t]))
		for _, a := range kc.resources[t] {
			m, err := a.UnmarshalNew()
			if err != nil {
				return nil, err
			}
			items = append(items, m)
		}
		snap.Resources[rt] = cachev3.NewResources(kc.versions[t], items)
	}
	return snap, snap.Consistent()
}

// xdsStep is one change as the floor replays it: the snapshots of the keys it
// changed, in the order the manager's run made them.
type xdsStep struct {
	kind    string // initial, one, eds, all, nack, restore
	configs map[string]keyConfig
	armed   []int
}

// --- the manager's part ---

// xdsOursResult is what the floor needs of the manager's run.
type xdsOursResult struct {
	steps []xdsStep
	fleet *xdsFleet // closed; its configs are reused
	ca    *identity.CA
	roots *x509.CertPool
}

// xdsWatch is the bench's own view of the API server: when it saw each
// resourceVersion (for the API watch's share of a change), and hooks on
// MeshService and ConfigMap events for the timed phases.
type xdsWatch struct {
	cache    cache.Cache
	mu       sync.Mutex
	seen     map[string]time.Time
	onMS     atomic.Pointer[func(*meshv1alpha1.MeshService, time.Time)]
	onCM     atomic.Pointer[func(*corev1.ConfigMap, time.Time)]
	onReport atomic.Pointer[func(*corev1.ConfigMap, time.Time)]
}

func rvKey(obj client.Object, kind string) string {
	return kind + "/" + obj.GetNamespace() + "/" + obj.GetName() + "/" + obj.GetResourceVersion()
}

func newXDSWatch(ctx context.Context, p *plane) (*xdsWatch, error) {
	c, err := cache.New(p.cfg, cache.Options{Scheme: scheme, DefaultNamespaces: map[string]cache.Config{benchNamespace: {}, xdsCMNamespace: {}, managerNamespace: {}}})
	if err != nil {
		return nil, err
	}
	w := &xdsWatch{cache: c, seen: map[string]time.Time{}}
	go func() { _ = c.Start(ctx) }()
	for kind, obj := range map[string]client.Object{"ms": &meshv1alpha1.MeshService{}, "mesh": &meshv1alpha1.ServiceMesh{},
		"slice": &discoveryv1.EndpointSlice{}, "cm": &corev1.ConfigMap{}} {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return nil, err
		}
		observe := func(o any) {
			now := time.Now()
			obj, ok := o.(client.Object)
			if !ok {
				return
			}
			w.mu.Lock()
			if _, dup := w.seen[rvKey(obj, kind)]; !dup {
				w.seen[rvKey(obj, kind)] = now
			}
			w.mu.Unlock()
			switch x := o.(type) {
			case *meshv1alpha1.MeshService:
				if h := w.onMS.Load(); h != nil {
					(*h)(x, now)
				}
			case *corev1.ConfigMap:
				if h := w.onCM.Load(); h != nil {
					(*h)(x, now)
				}
				if h := w.onReport.Load(); h != nil {
					(*h)(x, now)
				}
			}
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: observe, UpdateFunc: func(_, o any) { observe(o) }}); err != nil {
			return nil, err
		}
	}
	if !c.WaitForCacheSync(ctx) {
		return nil, errors.New("bench cache did not sync")
	}
	return w, nil
}

// seenAt waits (briefly) until the informer saw obj at its resourceVersion.
func (w *xdsWatch) seenAt(obj client.Object, kind string) (time.Time, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		w.mu.Lock()
		t, ok := w.seen[rvKey(obj, kind)]
		w.mu.Unlock()
		if ok {
			return t, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("the bench's watch never saw %s", rvKey(obj, kind))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// awaitMS waits until every MeshService of ns meets ok, from the cache.
func (w *xdsWatch) awaitMS(ctx context.Context, m *managerProc, ns string, want int, ok func(*meshv1alpha1.MeshService) bool, what string) error {
	deadline := time.Now().Add(xdsWait)
	for {
		var list meshv1alpha1.MeshServiceList
		if err := w.cache.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		n := 0
		for i := range list.Items {
			if ok(&list.Items[i]) {
				n++
			}
		}
		if n == want {
			return nil
		}
		if err := m.alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d MeshServices in %s after %s", what, n, want, ns, xdsWait)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// xdsService is svc-j of the scenario: pods replicas calling the next three.
func xdsService(ns string, j, services, pods int) *meshv1alpha1.MeshService {
	var ups []meshv1alpha1.Upstream
	for u := 1; u <= xdsUpstreams; u++ {
		ups = append(ups, meshv1alpha1.Upstream{Name: svcName((j + u) % services), LocalPort: int32(20000 + u)})
	}
	ms := meshService(svcName(j), ups...)
	ms.Namespace = ns
	ms.Spec.Replicas = ptr.To(int32(pods))
	return ms
}

// callersOf are the services calling svc-j.
func callersOf(j, services int) []int {
	out := make([]int, 0, xdsUpstreams)
	for u := 1; u <= xdsUpstreams; u++ {
		out = append(out, (j-u+services)%services)
	}
	return out
}

// endpointAddr is pod k of svc-j's address, never loopback (the API server
// refuses those in EndpointSlices); extra ones are 10.100.x.y.
func endpointAddr(j, k int) string {
	return fmt.Sprintf("10.%d.%d.%d", 1+j/250, j%250, k+1)
}

// endpointSliceFor is what the EndpointSlice controller (envtest runs none)
// writes for svc's headless Service: its labels, the service-name label, its
// port, a ready endpoint per address.
func endpointSliceFor(svc *corev1.Service, addrs []string) *discoveryv1.EndpointSlice {
	labels := maps.Clone(svc.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[discoveryv1.LabelServiceName] = svc.Name
	labels[discoveryv1.LabelManagedBy] = "endpointslice-controller.k8s.io"
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: svc.Namespace, Name: svc.Name + "-bench", Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, sp := range svc.Spec.Ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr.To(sp.Name), Port: ptr.To(sp.TargetPort.IntVal), Protocol: ptr.To(sp.Protocol), AppProtocol: sp.AppProtocol})
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}})
	}
	return s
}

// xdsQuiet waits until the manager has nothing queued and finished no
// reconcile, and the fleet received nothing, for a second.
func xdsQuiet(ctx context.Context, m *managerProc, f *xdsFleet) error {
	families := map[string]string{"workqueue_depth": "", "controller_runtime_reconcile_total": ""}
	var last map[string]float64
	lastResponses, stable := -1, 0
	deadline := time.Now().Add(xdsWait)
	for time.Now().Before(deadline) {
		if err := m.alive(); err != nil {
			return err
		}
		cur, err := m.metrics(families)
		if err != nil {
			return err
		}
		responses := 0
		if f != nil && f.sc != nil {
			responses = f.counters().Responses
		}
		if last != nil && cur["workqueue_depth"] == 0 && cur["controller_runtime_reconcile_total"] == last["controller_runtime_reconcile_total"] && responses == lastResponses {
			if stable++; stable >= 4 {
				return nil
			}
		} else {
			stable = 0
		}
		last, lastResponses = cur, responses
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return errors.New("the manager and the fleet did not go quiet")
}

// managerHeap forces a GC in the manager and reads its heap and stack in use,
// and its heap profile, which it also saves to path.
func managerHeap(m *managerProc, path string) (heap, stack int64, prof *profile.Profile, err error) {
	resp, err := http.Get("http://" + m.pprofAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return 0, 0, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, 0, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, nil, fmt.Errorf("pprof heap: %s", resp.Status)
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return 0, 0, nil, err
	}
	if prof, err = profile.Parse(bytes.NewReader(body)); err != nil {
		return 0, 0, nil, err
	}
	cur, err := m.metrics(map[string]string{"go_memstats_heap_inuse_bytes": "", "go_memstats_stack_inuse_bytes": ""})
	if err != nil {
		return 0, 0, nil, err
	}
	return int64(cur["go_memstats_heap_inuse_bytes"]), int64(cur["go_memstats_stack_inuse_bytes"]), prof, nil
}

// xdsOurs is the manager's part of a run: it fills r and returns what the floor
// replays.
func xdsOurs(ctx context.Context, o options, r *xdsResult, run int) (*xdsOursResult, error) {
	S, P := r.services, r.pods
	ns := benchNamespace
	p, err := startPlane(o)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := p.namespace(ctx, xdsCMNamespace); err != nil {
		return nil, err
	}
	label := fmt.Sprintf("xds-s%d-run%d", r.sidecars, run+1)
	profRate := []string{"GODEBUG=memprofilerate=" + strconv.Itoa(xdsMemProfileRate)}
	// The leader: leader election on, so the follower started later stays one.
	leader, err := launchManager(o, p, label+"-leader", []string{"--leader-elect=true"}, profRate,
		func(m *managerProc) (bool, error) { return m.workersStarted() })
	if err != nil {
		return nil, err
	}
	defer leader.stop()
	w, err := newXDSWatch(ctx, p)
	if err != nil {
		return nil, err
	}
	if err := awaitTrustBundle(ctx, p.client, leader); err != nil {
		return nil, err
	}
	ca, roots, err := meshPKI(ctx, p.client)
	if err != nil {
		return nil, err
	}
	serverID := identity.SPIFFEID(trustDomain, managerNamespace, managerServiceAccount)

	// The two meshes, the same services in each.
	for _, mns := range []string{ns, xdsCMNamespace} {
		mesh := &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: mns, Name: "default"},
			Spec: meshv1alpha1.ServiceMeshSpec{Delivery: meshv1alpha1.DeliveryXDS,
				Defaults: &meshv1alpha1.TrafficPolicy{ConnectTimeout: ptr.To(meshv1alpha1.Duration("2s"))}}}
		if mns == xdsCMNamespace {
			mesh.Spec.Delivery = meshv1alpha1.DeliveryConfigMap
		}
		if err := p.client.Create(ctx, mesh); err != nil {
			return nil, err
		}
		var objs []*meshv1alpha1.MeshService
		for j := range S {
			objs = append(objs, xdsService(mns, j, S, P))
		}
		if err := createAll(ctx, p.client, objs); err != nil {
			return nil, err
		}
	}
	for _, mns := range []string{ns, xdsCMNamespace} {
		if err := w.awaitMS(ctx, leader, mns, S, func(ms *meshv1alpha1.MeshService) bool { return converged(ms) && ms.Status.ConfigVersion != "" }, "convergence"); err != nil {
			return nil, err
		}
	}
	// The EndpointSlices, as the EndpointSlice controller would write them.
	for j := range S {
		svc := &corev1.Service{}
		if err := p.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: svcName(j)}, svc); err != nil {
			return nil, err
		}
		addrs := make([]string, P)
		for k := range P {
			addrs[k] = endpointAddr(j, k)
		}
		if err := p.client.Create(ctx, endpointSliceFor(svc, addrs)); err != nil {
			return nil, err
		}
	}
	if err := xdsQuiet(ctx, leader, nil); err != nil {
		return nil, err
	}

	// The fleet, and the manager's heap before and after it connected.
	fleet, err := newXDSFleet(ca, roots, serverID, ns, S, P)
	if err != nil {
		return nil, err
	}
	var profBefore, profAfter *profile.Profile
	if r.heapBefore, r.stackBefore, profBefore, err = managerHeap(leader, filepath.Join(o.logDir, label+"-leader-heap-before.pb.gz")); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := fleet.start(leader.xdsAddr); err != nil {
		return nil, err
	}
	defer fleet.close()
	if err := fleet.awaitInSync(ctx, w, ns, &r.retries); err != nil {
		return nil, err
	}
	r.connect = time.Since(start)
	if err := w.awaitMS(ctx, leader, ns, S, func(ms *meshv1alpha1.MeshService) bool {
		return ms.Status.Sidecars != nil && ms.Status.Sidecars.Synced == int32(P) && ms.Status.Sidecars.Total == int32(P)
	}, "the leader's status showing every sidecar in sync"); err != nil {
		return nil, err
	}
	if err := xdsQuiet(ctx, leader, fleet); err != nil {
		return nil, err
	}
	if r.heapAfter, r.stackAfter, profAfter, err = managerHeap(leader, filepath.Join(o.logDir, label+"-leader-heap-after.pb.gz")); err != nil {
		return nil, err
	}
	r.heapByPkg = heapDelta(profBefore, profAfter, heapPackage)
	logf("xds run %d: %d sidecars in sync %.2fs after the fleet started; manager heap %.1f → %.1f MiB (%.1f KiB per sidecar), stacks %.1f → %.1f MiB; by package %v",
		run+1, r.sidecars, r.connect.Seconds(), mib(r.heapBefore), mib(r.heapAfter), r.heapPerSidecar()/1024, mib(r.stackBefore), mib(r.stackAfter), r.heapByPkg)

	out := &xdsOursResult{fleet: fleet, ca: ca, roots: roots}
	prev, err := fleet.capture()
	if err != nil {
		return nil, err
	}
	out.steps = append(out.steps, xdsStep{kind: "initial", configs: prev})

	// step makes one change (act, which returns the object whose watch event
	// times the API's share, if any), waits for what the step is about, then
	// for quiet; it records the snapshots of the keys that changed for the
	// floor, and returns, for every sidecar of those keys but the armed ones,
	// the time from the change to its ACK of each type that changed.
	step := func(kind string, act func() (client.Object, string, error), wait func(*tracking) error) ([]time.Duration, time.Duration, []string, error) {
		t := fleet.track()
		defer t.stop()
		// A sidecar armed before or during the step runs what it chose to: no latency.
		wasArmed := map[int]bool{}
		for i := range fleet.armed {
			wasArmed[i] = fleet.armed[i].Load()
		}
		start := time.Now()
		obj, watchKind, err := act()
		if err != nil {
			return nil, 0, nil, fmt.Errorf("%s: %w", kind, err)
		}
		if err := wait(t); err != nil {
			return nil, 0, nil, fmt.Errorf("%s: %w", kind, err)
		}
		var watch time.Duration
		if obj != nil {
			seen, err := w.seenAt(obj, watchKind)
			if err != nil {
				return nil, 0, nil, err
			}
			watch = seen.Sub(start)
		}
		if err := xdsQuiet(ctx, leader, fleet); err != nil {
			return nil, 0, nil, fmt.Errorf("%s: %w", kind, err)
		}
		next, err := fleet.capture()
		if err != nil {
			return nil, 0, nil, fmt.Errorf("%s: %w", kind, err)
		}
		changed := next.changed(prev)
		st := xdsStep{kind: kind, configs: map[string]keyConfig{}}
		for i := range fleet.armed {
			if fleet.armed[i].Load() {
				st.armed = append(st.armed, i)
			}
		}
		var lat []time.Duration
		for _, key := range changed {
			st.configs[key] = next[key]
			was, now := prev[key].versions, next[key].versions
			lc := was[xds.ListenerType] != now[xds.ListenerType] || was[xds.ClusterType] != now[xds.ClusterType]
			eds := was[xds.EndpointType] != now[xds.EndpointType]
			for _, i := range fleet.byKey[key] {
				if fleet.armed[i].Load() || wasArmed[i] || kind == "restore" {
					continue
				}
				var at int64
				ok := true
				for _, x := range []struct {
					changed bool
					at      []atomic.Int64
				}{{lc, t.lc}, {eds, t.eds}} {
					if x.changed {
						ok = ok && x.at[i].Load() != 0
						at = max(at, x.at[i].Load())
					}
				}
				if !ok {
					return nil, 0, nil, fmt.Errorf("%s: sidecar %s of %s runs a new config its tracking missed", kind, fleet.cfgs[i].Node.GetId(), key)
				}
				lat = append(lat, time.Duration(at-start.UnixNano()))
			}
		}
		out.steps = append(out.steps, xdsStep{kind: kind, configs: st.configs, armed: st.armed})
		prev = next
		return lat, watch, changed, nil
	}
	patchMS := func(mns string, j int, edit func(*meshv1alpha1.MeshService)) (client.Object, string, error) {
		ms := &meshv1alpha1.MeshService{}
		if err := p.client.Get(ctx, types.NamespacedName{Namespace: mns, Name: svcName(j)}, ms); err != nil {
			return nil, "", err
		}
		before := ms.DeepCopy()
		edit(ms)
		return ms, "ms", p.client.Patch(ctx, ms, client.MergeFrom(before))
	}
	patchMesh := func(mns string, edit func(*meshv1alpha1.ServiceMesh)) (client.Object, string, error) {
		mesh := &meshv1alpha1.ServiceMesh{}
		if err := p.client.Get(ctx, types.NamespacedName{Namespace: mns, Name: "default"}, mesh); err != nil {
			return nil, "", err
		}
		before := mesh.DeepCopy()
		edit(mesh)
		return mesh, "mesh", p.client.Patch(ctx, mesh, client.MergeFrom(before))
	}
	K := min(o.xdsSteps, S)
	callee := func(s int) int { return s * S / K }
	timeout := func(s int) meshv1alpha1.Duration { return meshv1alpha1.Duration(fmt.Sprintf("%dms", 1001+s)) }

	// 1. One MeshService changes: a callee's traffic policy, which its callers' clusters carry.
	for s := range K {
		c := callee(s)
		callers := fleet.ofServices(ns, callersOf(c, S)...)
		lat, watch, changed, err := step("one", func() (client.Object, string, error) {
			return patchMS(ns, c, func(ms *meshv1alpha1.MeshService) {
				ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{ConnectTimeout: ptr.To(timeout(s))}
			})
		}, func(t *tracking) error { return waitAll(ctx, t.lcDone, callers, "callers ACKing") })
		if err != nil {
			return nil, err
		}
		r.one = append(r.one, lat...)
		r.oneAfter = append(r.oneAfter, minus(lat, watch)...)
		r.oneWatch = append(r.oneWatch, watch)
		r.oneAffected = append(r.oneAffected, len(lat))
		logf("xds run %d: %s changed: watch %s, %d sidecars ACKed in %s–%s", run+1, svcName(c), watch.Round(10*time.Microsecond), len(lat), dq(lat, 0), dq(lat, 1))
		if len(changed) != xdsUpstreams {
			logf("xds run %d: %s's change changed %d configs (%v), not its %d callers'", run+1, svcName(c), len(changed), changed, xdsUpstreams)
		}
	}

	// 2. An EndpointSlice changes: one more ready endpoint of an upstream.
	receivedLC := func() int {
		n := 0
		for _, s := range fleet.sc {
			st := s.State()
			n += st.Received[xds.ListenerType] + st.Received[xds.ClusterType]
		}
		return n
	}
	lcBefore := receivedLC()
	for s := range K {
		u := (callee(s) + 1) % S
		addr := fmt.Sprintf("10.100.%d.%d", u/250, u%250)
		callers := fleet.ofServices(ns, callersOf(u, S)...)
		lat, watch, _, err := step("eds", func() (client.Object, string, error) {
			slice := &discoveryv1.EndpointSlice{}
			if err := p.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: svcName(u) + "-bench"}, slice); err != nil {
				return nil, "", err
			}
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{addr},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}})
			return slice, "slice", p.client.Update(ctx, slice)
		}, func(t *tracking) error { return waitAll(ctx, t.edsDone, callers, "callers ACKing endpoints") })
		if err != nil {
			return nil, err
		}
		for _, i := range callers {
			if !hasEndpoint(fleet.sc[i].State(), addr) {
				return nil, fmt.Errorf("eds: sidecar %s ACKed endpoints without %s", fleet.cfgs[i].Node.GetId(), addr)
			}
		}
		r.eds = append(r.eds, lat...)
		r.edsAfter = append(r.edsAfter, minus(lat, watch)...)
		r.edsWatch = append(r.edsWatch, watch)
		logf("xds run %d: %s's EndpointSlice changed: watch %s, %d sidecars ACKed in %s–%s", run+1, svcName(u), watch.Round(10*time.Microsecond), len(lat), dq(lat, 0), dq(lat, 1))
	}
	r.edsResponses = receivedLC() - lcBefore

	// 3. Every config changes at once: the mesh's default traffic policy. The
	// leader's own report of its streams is rewritten meanwhile: counted.
	var reportWrites, reportWritten atomic.Int64
	countReport := func(cm *corev1.ConfigMap, _ time.Time) {
		if cm.Namespace == managerNamespace && cm.Name == xdsReportName(label+"-leader") {
			reportWrites.Add(1)
			reportWritten.Add(int64(len(cm.Data[xdsReportKey])))
		}
	}
	w.onReport.Store(&countReport)
	lat, watch, changed, err := step("all", func() (client.Object, string, error) {
		return patchMesh(ns, func(m *meshv1alpha1.ServiceMesh) {
			m.Spec.Defaults = &meshv1alpha1.TrafficPolicy{ConnectTimeout: ptr.To(meshv1alpha1.Duration("3s"))}
		})
	}, func(t *tracking) error { return waitAll(ctx, t.lcDone, fleet.all(), "every sidecar ACKing") })
	if err != nil {
		return nil, err
	}
	if len(changed) != S {
		return nil, fmt.Errorf("all: the mesh's defaults changed %d configs of %d", len(changed), S)
	}
	r.all, r.allWatch, r.allAfter = lat, watch, minus(lat, watch)
	w.onReport.Store(nil)
	r.allReportWrites, r.allReportBytes = int(reportWrites.Load()), reportWritten.Load()
	logf("xds run %d: the mesh's defaults changed: watch %s, %d sidecars ACKed in %s–%s (p50 %s); the leader rewrote its stream report %d times, %.1f MiB in all",
		run+1, watch.Round(10*time.Microsecond), len(lat), dq(lat, 0), dq(lat, 1), dq(lat, 0.5), r.allReportWrites, mib(r.allReportBytes))

	// 4. A NACK: the first pods (all but one) of some services reject every new
	// listener version; those services' protocol changes, which changes their
	// listeners.
	M := min(xdsNACKServices, S)
	var nackSvcs, armed []int
	for i := range M {
		nackSvcs = append(nackSvcs, (i*S/M+S/(2*M))%S)
	}
	for _, j := range nackSvcs {
		armed = append(armed, fleet.ofServices(ns, j)[:min(2, P-1)]...)
	}
	r.nackSidecars = len(armed)
	visible := make([]atomic.Int64, len(fleet.sc))
	podIndex := map[string]int{}
	for _, i := range armed {
		podIndex[strings.TrimSuffix(fleet.cfgs[i].Node.GetId(), "."+ns)] = i
	}
	onMS := func(ms *meshv1alpha1.MeshService, now time.Time) {
		if ms.Namespace != ns {
			return
		}
		for _, px := range ms.Status.Proxies {
			if i, ok := podIndex[px.Pod]; ok && px.XDS != nil && px.XDS.RejectedVersion != "" && visible[i].Load() == 0 {
				visible[i].Store(now.UnixNano())
			}
		}
	}
	w.onMS.Store(&onMS)
	resendsOf := func(idx []int) int {
		n := 0
		for _, i := range idx {
			n += fleet.sc[i].State().RejectedResends
		}
		return n
	}
	resendsBefore := resendsOf(armed)
	for _, i := range armed {
		fleet.rejectAt[i].Store(0)
		fleet.armed[i].Store(true)
	}
	origProtocol := map[int]meshv1alpha1.Protocol{}
	if _, _, _, err := step("nack", func() (client.Object, string, error) {
		for _, j := range nackSvcs {
			if _, _, err := patchMS(ns, j, func(ms *meshv1alpha1.MeshService) {
				origProtocol[j] = ms.Spec.Protocol
				ms.Spec.Protocol = meshv1alpha1.ProtocolHTTP2
			}); err != nil {
				return nil, "", err
			}
		}
		return nil, "", nil
	}, func(*tracking) error {
		deadline := time.Now().Add(xdsWait)
		for {
			n := 0
			for _, i := range armed {
				if visible[i].Load() != 0 {
					n++
				}
			}
			if n == len(armed) {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d of %d rejections visible in status after %s", n, len(armed), xdsWait)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}); err != nil {
		return nil, err
	}
	w.onMS.Store(nil)
	time.Sleep(xdsNACKWindow)
	r.nackResends = resendsOf(armed) - resendsBefore
	for _, i := range armed {
		if fleet.rejectAt[i].Load() == 0 {
			return nil, fmt.Errorf("nack: status shows a rejection by %s, which rejected nothing", fleet.cfgs[i].Node.GetId())
		}
		r.nack = append(r.nack, time.Duration(visible[i].Load()-fleet.rejectAt[i].Load()))
	}
	// Once quiet, status names the version the server holds for each armed
	// sidecar, the one it rejected last.
	for _, i := range armed {
		j := fleet.svc[i]
		ms := &meshv1alpha1.MeshService{}
		if err := w.cache.Get(ctx, types.NamespacedName{Namespace: ns, Name: svcName(j)}, ms); err != nil {
			return nil, err
		}
		pod, want := strings.TrimSuffix(fleet.cfgs[i].Node.GetId(), "."+ns), prev[fleet.key[i]].versions[xds.ListenerType]
		var got string
		for _, px := range ms.Status.Proxies {
			if px.Pod == pod && px.XDS != nil {
				got = px.XDS.RejectedVersion
			}
		}
		if got != want {
			return nil, fmt.Errorf("nack: status names version %q rejected by %s, whose service's listeners are at %s", got, pod, want)
		}
	}
	logf("xds run %d: %d rejections visible in status %s–%s (p50 %s) after the rejecting sidecar got the version; %d resends", run+1, len(r.nack), dq(r.nack, 0), dq(r.nack, 1), dq(r.nack, 0.5), r.nackResends)
	// Back to the original protocol, accepted.
	for _, i := range armed {
		fleet.armed[i].Store(false)
	}
	if _, _, _, err := step("restore", func() (client.Object, string, error) {
		for _, j := range nackSvcs {
			if _, _, err := patchMS(ns, j, func(ms *meshv1alpha1.MeshService) { ms.Spec.Protocol = origProtocol[j] }); err != nil {
				return nil, "", err
			}
		}
		return nil, "", nil
	}, func(t *tracking) error {
		var idx []int
		for _, i := range fleet.ofServices(ns, nackSvcs...) {
			if !slices.Contains(armed, i) {
				idx = append(idx, i)
			}
		}
		return waitAll(ctx, t.lcDone, idx, "the restored version ACKed")
	}); err != nil {
		return nil, err
	}

	// 5. The same changes through ConfigMaps: until the ConfigMaps are written.
	if r.cmOne, r.cmAll, err = xdsConfigMaps(ctx, w, S, K, callee, timeout, patchMS, patchMesh); err != nil {
		return nil, err
	}

	// 6. Every sidecar moves to a second replica, a follower, at once. It
	// reports its streams in a ConfigMap, which the leader merges into status:
	// timed until that report shows every sidecar in sync.
	health, err := freePort()
	if err != nil {
		return nil, err
	}
	followerName := label + "-follower"
	follower, err := launchManager(o, p, followerName,
		[]string{"--leader-elect=true", fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", health)}, profRate,
		func(*managerProc) (bool, error) {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", health))
			if err != nil {
				return false, err
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
	if err != nil {
		return nil, err
	}
	defer follower.stop()
	// The sidecars in sync: each node's ACKed versions, as captured.
	want := map[string]map[string]string{}
	for i, cfg := range fleet.cfgs {
		want[cfg.Node.GetId()] = prev[fleet.key[i]].versions
	}
	var reportSynced, reportBytes atomic.Int64
	onReport := func(cm *corev1.ConfigMap, now time.Time) {
		if cm.Namespace != managerNamespace || cm.Name != xdsReportName(followerName) {
			return
		}
		data := cm.Data[xdsReportKey]
		reportBytes.Store(int64(len(data)))
		if n, err := reportInSync(data, want); err == nil && n == len(want) {
			reportSynced.CompareAndSwap(0, now.UnixNano())
		}
	}
	w.onReport.Store(&onReport)
	responses := fleet.counters().Responses
	t := fleet.track()
	start = time.Now()
	if err := fleet.reconnectAll(follower.xdsAddr); err != nil {
		t.stop()
		return nil, err
	}
	err = waitAll(ctx, t.streamDone, fleet.all(), "streams on the follower")
	t.stop()
	if err != nil {
		return nil, err
	}
	r.reconnectStreams = slices.Max(since(start, t.stream, fleet.all()))
	for deadline := time.Now().Add(xdsWait); reportSynced.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if err := follower.alive(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("reconnect: the follower's report %s shows not every sidecar in sync after %s", xdsReportName(followerName), xdsWait)
		}
	}
	w.onReport.Store(nil)
	r.reconnectReport = time.Duration(reportSynced.Load() - start.UnixNano())
	r.reportBytes = int(reportBytes.Load())
	if err := xdsQuiet(ctx, leader, fleet); err != nil {
		return nil, err
	}
	r.reconnectPushes = fleet.counters().Responses - responses
	// The leader's status shows them, through the follower's report.
	r.reconnectStatusOK = w.awaitMS(ctx, leader, ns, S, func(ms *meshv1alpha1.MeshService) bool {
		return ms.Status.Sidecars != nil && ms.Status.Sidecars.Synced == int32(P) && ms.Status.Sidecars.Total == int32(P)
	}, "the leader's status showing every sidecar in sync on the follower") == nil
	logf("xds run %d: every stream on the follower %.2fs, its report (%d B) showing all in sync %.2fs, %d responses; the leader's status shows them: %v",
		run+1, r.reconnectStreams.Seconds(), r.reportBytes, r.reconnectReport.Seconds(), r.reconnectPushes, r.reconnectStatusOK)
	return out, nil
}

// The report of a replica's streams, as controllers/xds_reports.go writes it
// (what the leader merges into status): the bench reads it to tell when a
// replica knows its sidecars in sync.
const xdsReportKey = "streams.json"

func xdsReportName(replica string) string { return "envoymesh-xds-report-" + replica }

// reportInSync counts the nodes of want whose stream the report shows with
// exactly the versions want names.
func reportInSync(data string, want map[string]map[string]string) (int, error) {
	var rep struct {
		Nodes map[string][]struct {
			NodeID string            `json:"node"`
			Acked  map[string]string `json:"acked"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(data), &rep); err != nil {
		return 0, err
	}
	n := 0
	for _, proxies := range rep.Nodes {
		for _, px := range proxies {
			if v, ok := want[px.NodeID]; ok && maps.Equal(px.Acked, v) {
				n++
			}
		}
	}
	return n, nil
}

// xdsConfigMaps makes the one-service and mesh-wide changes in the ConfigMap
// mesh and times each until the ConfigMaps it rewrites are written (seen by
// the bench's watch with other data).
func xdsConfigMaps(ctx context.Context, w *xdsWatch, S, K int, callee func(int) int, timeout func(int) meshv1alpha1.Duration,
	patchMS func(string, int, func(*meshv1alpha1.MeshService)) (client.Object, string, error),
	patchMesh func(string, func(*meshv1alpha1.ServiceMesh)) (client.Object, string, error)) (one, all []time.Duration, err error) {
	ns := xdsCMNamespace
	var mu sync.Mutex
	pending := map[string]string{} // ConfigMap → its data's hash before
	written := map[string]time.Time{}
	onCM := func(cm *corev1.ConfigMap, now time.Time) {
		if cm.Namespace != ns {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if before, ok := pending[cm.Name]; ok && hashData(cm) != before {
			delete(pending, cm.Name)
			written[cm.Name] = now
		}
	}
	w.onCM.Store(&onCM)
	defer w.onCM.Store(nil)
	run := func(svcs []int, act func() error) ([]time.Duration, error) {
		mu.Lock()
		clear(written)
		for _, j := range svcs {
			name := svcName(j) + objects.ConfigMapSuffix
			cm := &corev1.ConfigMap{}
			if err := w.cache.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, cm); err != nil {
				mu.Unlock()
				return nil, err
			}
			pending[name] = hashData(cm)
		}
		mu.Unlock()
		start := time.Now()
		if err := act(); err != nil {
			return nil, err
		}
		for deadline := time.Now().Add(xdsWait); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			left := len(pending)
			mu.Unlock()
			if left == 0 {
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("configmaps: %d of %d not written after %s", left, len(svcs), xdsWait)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		var out []time.Duration
		for _, t := range written {
			out = append(out, t.Sub(start))
		}
		return out, nil
	}
	for s := range K {
		c := callee(s)
		lat, err := run(callersOf(c, S), func() error {
			_, _, err := patchMS(ns, c, func(ms *meshv1alpha1.MeshService) {
				ms.Spec.Traffic = &meshv1alpha1.TrafficPolicy{ConnectTimeout: ptr.To(timeout(s))}
			})
			return err
		})
		if err != nil {
			return nil, nil, err
		}
		one = append(one, lat...)
		time.Sleep(500 * time.Millisecond) // the callers' status writes, not timed
	}
	svcs := make([]int, S)
	for j := range svcs {
		svcs[j] = j
	}
	all, err = run(svcs, func() error {
		_, _, err := patchMesh(ns, func(m *meshv1alpha1.ServiceMesh) {
			m.Spec.Defaults = &meshv1alpha1.TrafficPolicy{ConnectTimeout: ptr.To(meshv1alpha1.Duration("3s"))}
		})
		return err
	})
	return one, all, err
}

// hasEndpoint reports whether the sidecar's accepted endpoints hold addr.
func hasEndpoint(st fleetsim.State, addr string) bool {
	for _, a := range st.Resources[xds.EndpointType] {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := a.UnmarshalTo(cla); err != nil {
			continue
		}
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				if e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress() == addr {
					return true
				}
			}
		}
	}
	return false
}

// awaitInSync waits until every sidecar ACKed listeners and clusters at the
// configVersion its MeshService's status names, and some endpoints version;
// a sidecar whose stream failed is reconnected (counted in retries).
func (f *xdsFleet) awaitInSync(ctx context.Context, w *xdsWatch, ns string, retries *int) error {
	deadline := time.Now().Add(xdsWait)
	for {
		versions := map[string]string{}
		var list meshv1alpha1.MeshServiceList
		if err := w.cache.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for _, ms := range list.Items {
			versions[xds.NodeKey(ms.Name, ms.Namespace)] = ms.Status.ConfigVersion
		}
		n := 0
		for i, s := range f.sc {
			st := s.State()
			v := versions[f.key[i]]
			if v != "" && st.Acked[xds.ListenerType] == v && st.Acked[xds.ClusterType] == v && st.Acked[xds.EndpointType] != "" {
				n++
				continue
			}
			if !st.Connected && st.Err != nil && !errors.Is(st.Err, context.Canceled) {
				*retries++
				if err := s.Reconnect(""); err != nil {
					return err
				}
			}
		}
		if n == len(f.sc) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d sidecars in sync after %s", n, len(f.sc), xdsWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// meshPKI reads the mesh CA the manager generated, and the roots its trust
// bundles publish (what a pod's ca.pem holds).
func meshPKI(ctx context.Context, c client.Client) (*identity.CA, *x509.CertPool, error) {
	secret := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: managerNamespace, Name: caSecretName}, secret); err != nil {
		return nil, nil, err
	}
	ca, err := identity.ParseCA(secret.Data)
	if err != nil {
		return nil, nil, err
	}
	var bundles certificatesv1.ClusterTrustBundleList
	if err := c.List(ctx, &bundles); err != nil {
		return nil, nil, err
	}
	roots := x509.NewCertPool()
	for _, b := range bundles.Items {
		if b.Spec.SignerName == identity.SignerName {
			roots.AppendCertsFromPEM([]byte(b.Spec.TrustBundle))
		}
	}
	return ca, roots, nil
}

// --- heap attribution ---

// heapDelta is after − before of the in-use heap, grouped by class.
func heapDelta(before, after *profile.Profile, class func([]string) string) map[string]int64 {
	out := map[string]int64{}
	for cls, v := range heapByClass(after, class) {
		out[cls] += v
	}
	for cls, v := range heapByClass(before, class) {
		out[cls] -= v
	}
	return out
}

// heapByClass sums a heap profile's inuse_space by the class of each sample's
// stack (function names, leaf first).
func heapByClass(p *profile.Profile, class func([]string) string) map[string]int64 {
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "inuse_space" {
			idx = i
		}
	}
	out := map[string]int64{}
	if idx < 0 {
		return out
	}
	for _, s := range p.Sample {
		var fns []string
		for _, loc := range s.Location {
			for _, l := range loc.Line {
				if l.Function != nil {
					fns = append(fns, l.Function.Name)
				}
			}
		}
		out[class(fns)] += s.Value[idx]
	}
	return out
}

// heapPackages are the groups the heap is attributed to, by the allocating
// frame nearest the leaf that is in one of them.
var heapPackages = []struct{ prefix, name string }{
	{"github.com/envoymesh/envoymesh-operator/internal/xds/fleetsim", "fleetsim"},
	{"github.com/envoymesh/envoymesh-operator/internal/xds", "internal/xds"},
	{"github.com/envoyproxy/go-control-plane/pkg/", "go-control-plane"},
	{"google.golang.org/grpc", "grpc"},
	{"golang.org/x/net/http2", "x/net/http2"},
	{"crypto/tls", "crypto/tls"},
}

func heapPackage(fns []string) string {
	for _, fn := range fns {
		for _, p := range heapPackages {
			if strings.HasPrefix(fn, p.prefix) {
				return p.name
			}
		}
	}
	return "other"
}

// heapSide tells, in the bench process, the floor's server from the
// simulated sidecars: any frame of one side's gRPC or TLS code, the fleet
// simulator, or the library's server and cache; then the bench's own
// bookkeeping (the parsed profiles); the rest is unattributed.
func heapSide(fns []string) string {
	has := func(marks ...string) bool {
		for _, fn := range fns {
			for _, m := range marks {
				if strings.Contains(fn, m) {
					return true
				}
			}
		}
		return false
	}
	switch {
	case has("internal/xds/fleetsim", "http2Client", "NewHTTP2Client", "ClientHandshake", "grpc.(*ClientConn)", "grpc.(*addrConn)",
		"grpc.newClientStream", "grpc.(*clientStream)", "grpc.NewClient", "grpc/balancer", "grpc/resolver", "grpc.(*acBalancerWrapper)",
		"grpc.(*ccBalancerWrapper)", "grpc.(*ccResolverWrapper)", "grpcsync.(*CallbackSerializer)"):
		return "sidecars"
	case has("http2Server", "NewServerTransport", "ServerHandshake", "grpc.(*Server)", "go-control-plane/pkg/server", "go-control-plane/pkg/cache"):
		return "server"
	case has("github.com/google/pprof/"):
		return "bench"
	}
	return "unattributed"
}

// --- the floor ---

// floorNodeHash keys the library's cache as ours does: xds.NodeKey of the
// node's MeshService.
type floorNodeHash struct{}

func (floorNodeHash) ID(n *corev3.Node) string {
	name, ns, err := xds.ParseNode(n)
	if err != nil {
		return ""
	}
	return xds.NodeKey(name, ns)
}

// floorServer is go-control-plane's SotW ADS server on its snapshot cache,
// with the gRPC settings of internal/xds (so the floor differs by the
// controller and our callbacks only), and a callback noting NACKs.
type floorServer struct {
	addr  string
	cache cachev3.SnapshotCache
	stop  func()
	mu    sync.Mutex
	nodes map[int64]string
	nacks map[string]time.Time // node id → first NACK since reset
}

func startFloorServer(tlsCfg *tls.Config) (*floorServer, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fs := &floorServer{addr: lis.Addr().String(), cache: cachev3.NewSnapshotCache(true, floorNodeHash{}, nil), nodes: map[int64]string{}, nacks: map[string]time.Time{}}
	ctx, cancel := context.WithCancel(context.Background())
	cb := serverv3.CallbackFuncs{
		StreamRequestFunc: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			now := time.Now()
			fs.mu.Lock()
			defer fs.mu.Unlock()
			if req.GetNode() != nil {
				fs.nodes[id] = req.GetNode().GetId()
			}
			if req.GetErrorDetail() != nil {
				if node := fs.nodes[id]; node != "" {
					if _, seen := fs.nacks[node]; !seen {
						fs.nacks[node] = now
					}
				}
			}
			return nil
		},
	}
	srv := serverv3.NewServer(ctx, fs.cache, cb, sotw.WithOrderedADS())
	g := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsCfg)),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(8<<10),
	)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, srv)
	go func() { _ = g.Serve(lis) }()
	fs.stop = func() { cancel(); g.Stop() }
	return fs, nil
}

func (fs *floorServer) nackAt(node string) (time.Time, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	t, ok := fs.nacks[node]
	return t, ok
}

func (fs *floorServer) set(ctx context.Context, snaps map[string]*cachev3.Snapshot) error {
	for key, snap := range snaps {
		if err := fs.cache.SetSnapshot(ctx, key, snap); err != nil {
			return err
		}
	}
	return nil
}

// floorTLS is the floor server's side: a leaf for the manager's SPIFFE ID from
// the mesh CA, client certificates required against roots.
func floorTLS(ca *identity.CA, roots *x509.CertPool) (*tls.Config, error) {
	cert, err := leafFor(ca, identity.SPIFFEID(trustDomain, managerNamespace, managerServiceAccount))
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, ClientCAs: roots, ClientAuth: tls.RequireAndVerifyClientCert}, nil
}

// xdsFloor replays the manager's run on go-control-plane alone: the same
// fleet (same nodes, certificates and Accept hooks), the same snapshots set in
// the same order, each step timed from its first SetSnapshot.
func xdsFloor(ctx context.Context, r *xdsResult, ours *xdsOursResult, logPrefix string) error {
	tlsCfg, err := floorTLS(ours.ca, ours.roots)
	if err != nil {
		return err
	}
	servers := make([]*floorServer, 2)
	for i := range servers {
		if servers[i], err = startFloorServer(tlsCfg); err != nil {
			return err
		}
		defer servers[i].stop()
	}
	// Every step's snapshots, made before anything is timed.
	snaps := make([]map[string]*cachev3.Snapshot, len(ours.steps))
	for s, st := range ours.steps {
		snaps[s] = map[string]*cachev3.Snapshot{}
		for key, kc := range st.configs {
			if snaps[s][key], err = kc.snapshot(); err != nil {
				return fmt.Errorf("step %d (%s), %s: %w", s, st.kind, key, err)
			}
		}
	}
	for _, srv := range servers {
		if err := srv.set(ctx, snaps[0]); err != nil {
			return err
		}
	}
	fleet := ours.fleet
	fleet.sc = nil
	for i := range fleet.armed {
		fleet.armed[i].Store(false)
		fleet.rejectAt[i].Store(0)
	}
	current := maps.Clone(ours.steps[0].configs)
	inSync := func(i int) func(*fleetsim.State) bool {
		v := current[fleet.key[i]].versions
		return func(st *fleetsim.State) bool {
			for typ, want := range v {
				if st.Acked[typ] != want {
					return false
				}
			}
			return true
		}
	}
	awaitInSync := func(idx []int) error {
		wctx, cancel := context.WithTimeout(ctx, xdsWait)
		defer cancel()
		for _, i := range idx {
			if err := fleet.sc[i].WaitFor(wctx, inSync(i)); err != nil {
				return err
			}
		}
		return nil
	}

	runtime.GC()
	var msBefore, msAfter runtime.MemStats
	runtime.ReadMemStats(&msBefore)
	profBefore, err := benchHeap(logPrefix + "-floor-heap-before.pb.gz")
	if err != nil {
		return err
	}
	start := time.Now()
	if err := fleet.start(servers[0].addr); err != nil {
		return err
	}
	defer fleet.close()
	if err := awaitInSync(fleet.all()); err != nil {
		return fmt.Errorf("initial sync: %w", err)
	}
	r.floorConnect = time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&msAfter)
	profAfter, err := benchHeap(logPrefix + "-floor-heap-after.pb.gz")
	if err != nil {
		return err
	}
	r.floorHeapInuse = int64(msAfter.HeapInuse) - int64(msBefore.HeapInuse)
	r.floorHeap = heapDelta(profBefore, profAfter, func(fns []string) string { return heapSide(fns) + "/" + heapPackage(fns) })

	for s := 1; s < len(ours.steps); s++ {
		st := ours.steps[s]
		var measured []int
		var lcKeys, edsKeys []string
		for key, kc := range st.configs {
			was := current[key].versions
			lc := was[xds.ListenerType] != kc.versions[xds.ListenerType] || was[xds.ClusterType] != kc.versions[xds.ClusterType]
			if lc {
				lcKeys = append(lcKeys, key)
			}
			if was[xds.EndpointType] != kc.versions[xds.EndpointType] {
				edsKeys = append(edsKeys, key)
			}
			current[key] = kc
		}
		armed := map[int]bool{}
		for _, i := range st.armed {
			armed[i] = true
		}
		for i := range fleet.armed {
			fleet.armed[i].Store(armed[i])
			fleet.rejectAt[i].Store(0)
		}
		for key := range st.configs {
			for _, i := range fleet.byKey[key] {
				if !armed[i] {
					measured = append(measured, i)
				}
			}
		}
		resendsBefore := 0
		for _, i := range st.armed {
			resendsBefore += fleet.sc[i].State().RejectedResends
		}
		servers[0].mu.Lock()
		clear(servers[0].nacks)
		servers[0].mu.Unlock()

		t := fleet.track()
		start := time.Now()
		if err := servers[0].set(ctx, snaps[s]); err != nil {
			t.stop()
			return err
		}
		err := awaitInSync(measured)
		t.stop()
		if err != nil {
			return fmt.Errorf("step %d (%s): %w", s, st.kind, err)
		}
		var lat []time.Duration
		for _, i := range measured {
			var at int64
			if slices.Contains(lcKeys, fleet.key[i]) {
				at = t.lc[i].Load()
			}
			if slices.Contains(edsKeys, fleet.key[i]) {
				at = max(at, t.eds[i].Load())
			}
			lat = append(lat, time.Duration(at-start.UnixNano()))
		}
		switch st.kind {
		case "one":
			r.oneFloor = append(r.oneFloor, lat...)
		case "eds":
			r.edsFloor = append(r.edsFloor, lat...)
		case "all":
			r.allFloor = lat
		case "nack":
			for _, i := range st.armed {
				node := fleet.cfgs[i].Node.GetId()
				var seen time.Time
				for deadline := time.Now().Add(xdsWait); ; time.Sleep(time.Millisecond) {
					var ok bool
					if seen, ok = servers[0].nackAt(node); ok {
						break
					}
					if time.Now().After(deadline) {
						return fmt.Errorf("nack: the floor's server saw no NACK from %s", node)
					}
				}
				r.nackFloor = append(r.nackFloor, seen.Sub(time.Unix(0, fleet.rejectAt[i].Load())))
			}
			time.Sleep(xdsNACKWindow)
			for _, i := range st.armed {
				r.nackFloorResends += fleet.sc[i].State().RejectedResends
			}
			r.nackFloorResends -= resendsBefore
		}
		if err := servers[1].set(ctx, snaps[s]); err != nil {
			return err
		}
	}

	// Every sidecar moves to the other server at once: the library sends each
	// one every type again on its new stream.
	responses := fleet.counters().Responses
	t := fleet.track()
	start = time.Now()
	if err := fleet.reconnectAll(servers[1].addr); err != nil {
		t.stop()
		return err
	}
	err = waitAll(ctx, t.resentDone, fleet.all(), "floor reconnect: every type sent again")
	t.stop()
	if err != nil {
		return err
	}
	r.reconnectFloor = slices.Max(since(start, t.resent, fleet.all()))
	if err := fleetQuiet(ctx, fleet); err != nil {
		return err
	}
	r.reconnectFloorPushes = fleet.counters().Responses - responses
	return nil
}

// fleetQuiet waits until the fleet received nothing for a second.
func fleetQuiet(ctx context.Context, f *xdsFleet) error {
	last, stable := -1, 0
	for deadline := time.Now().Add(xdsWait); time.Now().Before(deadline); {
		n := f.counters().Responses
		if n == last {
			if stable++; stable >= 4 {
				return nil
			}
		} else {
			stable = 0
		}
		last = n
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return errors.New("the floor's fleet did not go quiet")
}

// benchHeap is this process's heap profile, as of a GC just made; it is also
// saved to path.
func benchHeap(path string) (*profile.Profile, error) {
	runtime.GC()
	var buf bytes.Buffer
	if err := pprof.Lookup("heap").WriteTo(&buf, 0); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return nil, err
	}
	return profile.Parse(&buf)
}

// hashData is a ConfigMap's data, hashed.
func hashData(cm *corev1.ConfigMap) string {
	h := sha256.New()
	keys := slices.Sorted(maps.Keys(cm.Data))
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(cm.Data[k]))
		h.Write([]byte{0})
	}
	return string(h.Sum(nil))
}

// --- the report ---

// xdsRows are the xds scenario's lines of the main table: each measurement,
// its floor, their ratio and, where there is one, the same change through
// ConfigMaps.
func (r *results) xdsRows(w func(string, ...any)) {
	if len(r.xds) == 0 {
		return
	}
	x0 := r.xds[0]
	label := fmt.Sprintf("xDS, %d sidecars (%d services × %d pods, 3 callers each)", x0.sidecars, x0.services, x0.pods)
	per := func(f func(*xdsResult) float64) []float64 {
		out := make([]float64, len(r.xds))
		for i, x := range r.xds {
			out[i] = f(x)
		}
		return out
	}
	ns := func(d time.Duration) float64 { return float64(d) }
	timeRow := func(what string, v []float64, target string) {
		w("| %s: %s | %s | %s | %s |\n", label, what, duration(median(v)), durations(v), target)
	}
	ratioRow := func(what string, ours, floor []float64) {
		ratios := make([]float64, len(ours))
		for i := range ours {
			ratios[i] = ours[i] / floor[i]
		}
		ratio := median(ours) / median(floor)
		w("| %s: %s, ratio ours / floor | %.2f | %s | ≤ 1.5: %s |\n", label, what, ratio, list(ratios, "%.2f"), verdict(ratio <= 1.5))
	}
	kubelet := func(what string, v []float64) {
		w("| %s: %s | %s + 60–90 s | %s | |\n", label, what, duration(median(v)), durations(v))
	}
	steps := r.opts.xdsSteps

	one := per(func(x *xdsResult) float64 { return ns(quantile(x.one, 0.99)) })
	oneFloor := per(func(x *xdsResult) float64 { return ns(quantile(x.oneFloor, 0.99)) })
	timeRow(fmt.Sprintf("one MeshService changes (a callee's spec.traffic, %d times) → every affected sidecar ACKed, p99", steps), one, "≤ 100 ms: "+verdict(median(one) <= 100e6))
	timeRow("the same, p50", per(func(x *xdsResult) float64 { return ns(quantile(x.one, 0.5)) }), "")
	timeRow("the same, max", per(func(x *xdsResult) float64 { return ns(quantile(x.one, 1)) }), "")
	timeRow("the same, of which the API server's watch (patch → the bench's informer saw it), median", per(func(x *xdsResult) float64 { return ns(quantile(x.oneWatch, 0.5)) }), "")
	timeRow("the same, floor (go-control-plane alone, SetSnapshot of the same snapshots → ACKed), p99", oneFloor, "")
	ratioRow("one MeshService changes, p99", one, oneFloor)
	oneAfter := per(func(x *xdsResult) float64 { return ns(quantile(x.oneAfter, 0.99)) })
	timeRow("the same from the moment the bench's watch saw the patch (the operator's and the library's part), p99", oneAfter, "")
	ratioRow("one MeshService changes, from the watch, p99", oneAfter, oneFloor)
	kubelet("the same change through ConfigMaps: the callers' ConfigMaps written, p99, + the kubelet's sync", per(func(x *xdsResult) float64 { return ns(quantile(x.cmOne, 0.99)) }))

	all := per(func(x *xdsResult) float64 { return ns(quantile(x.all, 1)) })
	allFloor := per(func(x *xdsResult) float64 { return ns(quantile(x.allFloor, 1)) })
	timeRow(fmt.Sprintf("all %d configs change at once (the ServiceMesh's spec.defaults) → all ACKed", x0.services), all, "≤ 3 s: "+verdict(median(all) <= 3e9))
	timeRow("the same, p50", per(func(x *xdsResult) float64 { return ns(quantile(x.all, 0.5)) }), "")
	timeRow("the same, floor, all ACKed", allFloor, "")
	ratioRow("all configs change", all, allFloor)
	allAfter := per(func(x *xdsResult) float64 { return ns(quantile(x.allAfter, 1)) })
	timeRow("the same from the moment the bench's watch saw the patch, all ACKed", allAfter, "")
	ratioRow("all configs change, from the watch", allAfter, allFloor)
	writes := per(func(x *xdsResult) float64 { return float64(x.allReportWrites) })
	written := per(func(x *xdsResult) float64 { return mib(x.allReportBytes) })
	w("| %s: the same, the leader's report of its streams rewritten meanwhile | %.0f times, %.1f MiB | %s / %s | |\n", label, median(writes), median(written), list(writes, "%.0f"), list(written, "%.1f"))
	kubelet("the same change through ConfigMaps: all ConfigMaps written, + the kubelet's sync", per(func(x *xdsResult) float64 { return ns(quantile(x.cmAll, 1)) }))

	eds := per(func(x *xdsResult) float64 { return ns(quantile(x.eds, 0.99)) })
	edsFloor := per(func(x *xdsResult) float64 { return ns(quantile(x.edsFloor, 0.99)) })
	timeRow(fmt.Sprintf("EndpointSlice change (one more ready endpoint, %d times) → EDS ACKed by the callers, p99", steps), eds, "≤ 1 s: "+verdict(median(eds) <= 1e9))
	timeRow("the same, floor, p99", edsFloor, "")
	ratioRow("EndpointSlice change, p99", eds, edsFloor)
	edsAfter := per(func(x *xdsResult) float64 { return ns(quantile(x.edsAfter, 0.99)) })
	timeRow("the same from the moment the bench's watch saw the update, p99", edsAfter, "")
	ratioRow("EndpointSlice change, from the watch, p99", edsAfter, edsFloor)
	w("| %s: listener and cluster responses during the EndpointSlice changes | %.0f | %s | none |\n", label,
		median(per(func(x *xdsResult) float64 { return float64(x.edsResponses) })), list(per(func(x *xdsResult) float64 { return float64(x.edsResponses) }), "%.0f"))

	rec := per(func(x *xdsResult) float64 { return ns(x.reconnectReport) })
	recFloor := per(func(x *xdsResult) float64 { return ns(x.reconnectFloor) })
	timeRow("all sidecars reconnect at once to a second replica (a follower) → its report of its streams, which the leader merges into status, shows every sidecar in sync", rec, "≤ 10 s: "+verdict(median(rec) <= 10e9))
	timeRow("the same, every new stream open (sidecar side)", per(func(x *xdsResult) float64 { return ns(x.reconnectStreams) }), "")
	pushes := per(func(x *xdsResult) float64 { return float64(x.reconnectPushes) })
	w("| %s: responses sent over the reconnect | %.0f | %s | |\n", label, median(pushes), list(pushes, "%.0f"))
	statusOK := make([]string, len(r.xds))
	for i, x := range r.xds {
		statusOK[i] = map[bool]string{true: "yes", false: "no"}[x.reconnectStatusOK]
	}
	w("| %s: the leader's status then shows every sidecar in sync (checked within %s, not timed) | %s | %s | |\n", label, xdsWait, statusOK[len(statusOK)/2], strings.Join(statusOK, ", "))
	reportSize := per(func(x *xdsResult) float64 { return float64(x.reportBytes) })
	w("| %s: the follower's report (ConfigMap data) with every sidecar on it | %.0f B | %s | |\n", label, median(reportSize), list(reportSize, "%.0f"))
	timeRow("the same, floor: every sidecar sent every type again on its new stream and ACKed", recFloor, "")
	floorPushes := per(func(x *xdsResult) float64 { return float64(x.reconnectFloorPushes) })
	w("| %s: the floor's responses over its reconnect | %.0f | %s | |\n", label, median(floorPushes), list(floorPushes, "%.0f"))
	ratioRow("reconnect, the follower's report / the floor's resend", rec, recFloor)

	heap := per(func(x *xdsResult) float64 { return x.heapPerSidecar() / 1024 })
	w("| %s: manager heap per connected sidecar (HeapInuse after a GC, fleet connected − before) | %.1f KiB | %s | ≤ 100 KB: %s |\n",
		label, median(heap), list(heap, "%.1f"), verdict(median(heap)*1024 <= 100e3))
	stack := per(func(x *xdsResult) float64 { return float64(x.stackAfter-x.stackBefore) / float64(x.sidecars) / 1024 })
	w("| %s: manager goroutine stacks per connected sidecar (StackInuse, not heap) | %.1f KiB | %s | |\n", label, median(stack), list(stack, "%.1f"))
	sum := func(m map[string]int64, prefix string) int64 {
		var n int64
		for k, v := range m {
			if strings.HasPrefix(k, prefix) {
				n += v
			}
		}
		return n
	}
	profiled := per(func(x *xdsResult) float64 { return float64(sum(x.heapByPkg, "")) / float64(x.sidecars) / 1024 })
	w("| %s: the same by heap profile (live objects the profile samples; by package below) | %.1f KiB | %s | |\n", label, median(profiled), list(profiled, "%.1f"))
	floorHeap := per(func(x *xdsResult) float64 { return float64(sum(x.floorHeap, "server/")) / float64(x.sidecars) / 1024 })
	w("| %s: floor, the library's server per connected sidecar (heap profile of the bench process, the server's side) | %.1f KiB | %s | |\n", label, median(floorHeap), list(floorHeap, "%.1f"))
	ratios := make([]float64, len(profiled))
	for i := range profiled {
		ratios[i] = profiled[i] / floorHeap[i]
	}
	ratio := median(profiled) / median(floorHeap)
	w("| %s: heap per sidecar by profile, ratio ours (the whole manager) / floor (the library's server) | %.2f | %s | ≤ 1.5: %s |\n", label, ratio, list(ratios, "%.2f"), verdict(ratio <= 1.5))

	nack := per(func(x *xdsResult) float64 { return ns(quantile(x.nack, 0.99)) })
	nackFloor := per(func(x *xdsResult) float64 { return ns(quantile(x.nackFloor, 0.99)) })
	timeRow(fmt.Sprintf("NACK (%d sidecars of %d services reject a new version) → status.proxies[].xds.rejectedVersion visible, p99", x0.nackSidecars, min(xdsNACKServices, x0.services)), nack, "≤ 1 s: "+verdict(median(nack) <= 1e9))
	resends := per(func(x *xdsResult) float64 { return float64(x.nackResends) })
	w("| %s: the rejected version resent to the rejecting sidecars (within %s) | %.0f | %s | at most once each: %s |\n", label, xdsNACKWindow,
		median(resends), list(resends, "%.0f"), verdict(slices.Max(resends) <= float64(x0.nackSidecars)))
	timeRow("the same, floor: the NACK reaches the library's server (its callback), p99", nackFloor, "")
	floorResends := per(func(x *xdsResult) float64 { return float64(x.nackFloorResends) })
	w("| %s: the floor resending the rejected version (within %s) | %.0f | %s | |\n", label, xdsNACKWindow, median(floorResends), list(floorResends, "%.0f"))
	ratioRow("NACK, status visible / the NACK at the floor's server, p99", nack, nackFloor)

	timeRow("initial sync: the fleet started → every sidecar ACKed listeners, clusters and endpoints", per(func(x *xdsResult) float64 { return ns(x.connect) }), "")
	timeRow("the same, floor", per(func(x *xdsResult) float64 { return ns(x.floorConnect) }), "")
}

// xdsWork breaks the manager's heap per sidecar down by package.
func (r *results) xdsWork(w func(string, ...any)) {
	if len(r.xds) == 0 {
		return
	}
	groups := map[string]bool{}
	for _, x := range r.xds {
		for k := range x.heapByPkg {
			groups[k] = true
		}
	}
	names := slices.Sorted(maps.Keys(groups))
	w("\nThe manager's heap per connected sidecar in the xds runs, by the allocating frame nearest the leaf in each group (heap profiles after a GC, fleet connected − before; sampled every %d KiB), KiB:\n\n", xdsMemProfileRate>>10)
	w("| run | %s | HeapInuse |\n|%s---|---|\n", strings.Join(names, " | "), strings.Repeat("---|", len(names)))
	for i, x := range r.xds {
		cells := make([]string, len(names))
		for j, n := range names {
			cells[j] = fmt.Sprintf("%.1f", float64(x.heapByPkg[n])/float64(x.sidecars)/1024)
		}
		w("| %d | %s | %.1f |\n", i+1, strings.Join(cells, " | "), x.heapPerSidecar()/1024)
	}
	groups = map[string]bool{}
	for _, x := range r.xds {
		for k := range x.floorHeap {
			groups[k] = true
		}
	}
	names = slices.Sorted(maps.Keys(groups))
	retries := make([]float64, len(r.xds))
	for i, x := range r.xds {
		retries[i] = float64(x.retries)
	}
	w("\nSidecars whose first stream failed and were reconnected during the initial sync, per run: %s.\n", list(retries, "%.0f"))
	w("\nThe floor's process (library server and simulated sidecars together) per connected sidecar, by side and group, KiB:\n\n")
	w("| run | %s | HeapInuse |\n|%s---|---|\n", strings.Join(names, " | "), strings.Repeat("---|", len(names)))
	for i, x := range r.xds {
		cells := make([]string, len(names))
		for j, n := range names {
			cells[j] = fmt.Sprintf("%.1f", float64(x.floorHeap[n])/float64(x.sidecars)/1024)
		}
		w("| %d | %s | %.1f |\n", i+1, strings.Join(cells, " | "), float64(x.floorHeapInuse)/float64(x.sidecars)/1024)
	}
}
