package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// The authz-newcaller scenario: a service ("hub") with 100 converged callers in
// its namespace gets one more, and the bench times until both the new caller's
// ConfigMap (its egress cluster for hub) and hub's (the new caller's SPIFFE ID in
// its inbound RBAC policy) carry it, and lists every other ConfigMap written
// meanwhile. The mesh is the default one (no ServiceMesh): mTLS Strict,
// authorization Enforce.

const (
	// trustDomain is the manager's default --trust-domain.
	trustDomain = "cluster.local"
	authzCallee = "hub"
	// authzStepTimeout bounds one new caller: both ConfigMaps carry it, then quiet.
	authzStepTimeout = 2 * time.Minute
)

// authzStep is one new caller.
type authzStep struct {
	caller string
	// Create → the caller's ConfigMap has hub's cluster; → hub's ConfigMap names
	// the caller; both is the later of the two.
	callerCM, calleeCM, both time.Duration
	// others are the ConfigMaps, besides the caller's and hub's, that the API
	// server recorded a write of (a new resourceVersion) from just before the
	// create until the manager was quiet again.
	others []string
	// calleeWrites and callerWrites count the writes of hub's and the caller's
	// ConfigMaps in that time (1 each when nothing is written twice).
	calleeWrites, callerWrites int
	// requests are the manager's API requests in that time, by method, and
	// reconciles its reconciles, by controller and result.
	requests, reconciles map[string]float64
}

// cmWeight is the size of hub's ConfigMap.
type cmWeight struct{ lds, data int }

// authzResult is one run of the scenario.
type authzResult struct {
	callers int
	weights map[int]cmWeight // hub's ConfigMap by its number of callers
	steps   []authzStep      // new callers of hub, in the mesh of hub and its callers
	// With -authz-mesh, in the first run: unrelated MeshServices join until the
	// mesh has that many, then more new callers.
	grown *authzGrowth
}

// authzGrowth is what unrelated MeshServices joining did to hub and its callers.
type authzGrowth struct {
	meshBefore, meshAfter int
	before, after         cmWeight
	calleeWrites          int      // writes of hub's ConfigMap while they joined
	rewritten             []string // ConfigMaps of hub and its callers written meanwhile
	steps                 []authzStep
}

// cmLog follows every ConfigMap of the bench namespace through a watch: its
// latest state and how many writes (resourceVersions) of it were seen, and
// releases waiters whose condition a ConfigMap meets.
type cmLog struct {
	mu      sync.Mutex
	current map[string]*corev1.ConfigMap
	writes  map[string]int
	waiters []*cmWaiter
}

type cmWaiter struct {
	match func(*corev1.ConfigMap) bool
	at    time.Time
	done  chan struct{}
}

func newCMLog() *cmLog {
	return &cmLog{current: map[string]*corev1.ConfigMap{}, writes: map[string]int{}}
}

func (l *cmLog) observe(obj any) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if old := l.current[cm.Name]; old == nil || old.ResourceVersion != cm.ResourceVersion {
		l.writes[cm.Name]++
	}
	l.current[cm.Name] = cm
	l.waiters = slices.DeleteFunc(l.waiters, func(w *cmWaiter) bool {
		if !w.match(cm) {
			return false
		}
		w.at = now
		close(w.done)
		return true
	})
}

// when returns a waiter released (with the time) by the first ConfigMap seen
// from now on that matches, or at once by one that already does.
func (l *cmLog) when(match func(*corev1.ConfigMap) bool) *cmWaiter {
	w := &cmWaiter{match: match, done: make(chan struct{})}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, cm := range l.current {
		if match(cm) {
			w.at = time.Now()
			close(w.done)
			return w
		}
	}
	l.waiters = append(l.waiters, w)
	return w
}

func (l *cmLog) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.writes)
}

func (l *cmLog) get(name string) *corev1.ConfigMap {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.current[name]
}

// written are the ConfigMaps written between two snapshots, sorted.
func written(before, after map[string]int) []string {
	var out []string
	for name, n := range after {
		if n != before[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// awaitWaiters waits for every waiter, failing early when the manager dies.
func awaitWaiters(ctx context.Context, m *managerProc, timeout time.Duration, ws ...*cmWaiter) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for _, w := range ws {
		for waiting := true; waiting; {
			select {
			case <-w.done:
				waiting = false
			case <-deadline:
				return errTimeout
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
				if err := m.alive(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func callerName(i int) string { return "caller-" + strconv.Itoa(i) }

func cmName(service string) string { return service + objects.ConfigMapSuffix }

// namesPrincipal reports whether an lds.yaml names id as a principal: the id as
// a whole YAML value, so caller-1 is not found in caller-10.
func namesPrincipal(lds, id string) bool {
	return strings.Contains(lds, " "+id+"\n")
}

// principalCount is how many callers' SPIFFE IDs an lds.yaml names.
func principalCount(lds string) int {
	return strings.Count(lds, identity.SPIFFEID(trustDomain, benchNamespace, "caller-"))
}

func weigh(cm *corev1.ConfigMap) cmWeight {
	w := cmWeight{lds: len(cm.Data[envoyconfig.ListenersFile])}
	for _, v := range cm.Data {
		w.data += len(v)
	}
	return w
}

// stepMetrics are the manager's series a step reports the growth of.
var stepMetrics = map[string]string{"rest_client_requests_total": "method", "controller_runtime_reconcile_total": "controller,result"}

// authzRun converges hub and its callers on a fresh control plane (weighing hub's
// ConfigMap at 10 callers on the way), then adds o.authzSteps new callers one at
// a time, each once the manager is quiet again.
func authzRun(ctx context.Context, o options, run int) (*authzResult, error) {
	p, err := startPlane(o)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m, err := startManager(o, p, fmt.Sprintf("authz-c%d-run%d", o.authzCallers, run+1))
	if err != nil {
		return nil, err
	}
	defer m.stop()
	log := newCMLog()
	if err := watchWith(ctx, p.cfg, &corev1.ConfigMap{}, log.observe); err != nil {
		return nil, err
	}

	r := &authzResult{callers: o.authzCallers, weights: map[int]cmWeight{}}
	// hub and its callers, in two batches when there are more than 10 callers:
	// hub's ConfigMap is weighed at 10 callers and at all of them.
	have := 0
	batches := []int{o.authzCallers}
	if o.authzCallers > 10 {
		batches = []int{10, o.authzCallers}
	}
	for _, upTo := range batches {
		var objs []*meshv1alpha1.MeshService
		if have == 0 {
			objs = append(objs, meshService(authzCallee))
		}
		for i := have; i < upTo; i++ {
			objs = append(objs, meshService(callerName(i), meshv1alpha1.Upstream{Name: authzCallee, LocalPort: 20001}))
		}
		w, err := convergeCallers(ctx, p, m, log, objs, upTo, o.timeout)
		if err != nil {
			return nil, fmt.Errorf("converging %s and %d callers: %w", authzCallee, upTo, err)
		}
		r.weights[upTo] = w
		have = upTo
	}

	for i := range o.authzSteps {
		s, err := newCaller(ctx, p, m, log, callerName(have+i))
		if err != nil {
			return nil, fmt.Errorf("new caller %d: %w", i+1, err)
		}
		r.steps = append(r.steps, *s)
	}
	have += o.authzSteps
	logf("authz run %d: hub ConfigMap %s; %s", run+1, fmtWeights(r.weights), fmtSteps(r.steps))

	if run == 0 && o.authzMesh > have+1 {
		if r.grown, err = growMesh(ctx, o, p, m, log, have); err != nil {
			return nil, fmt.Errorf("growing the mesh to %d: %w", o.authzMesh, err)
		}
		for i := range o.authzSteps {
			s, err := newCaller(ctx, p, m, log, callerName(have+i))
			if err != nil {
				return nil, fmt.Errorf("new caller %d in the mesh of %d: %w", i+1, r.grown.meshAfter, err)
			}
			r.grown.steps = append(r.grown.steps, *s)
		}
		g := r.grown
		logf("authz run %d: %d unrelated MeshServices joined (mesh %d → %d): hub ConfigMap %d → %d B (lds %d → %d B), written %d times; hub's and callers' ConfigMaps written: %v; then %s",
			run+1, g.meshAfter-g.meshBefore, g.meshBefore, g.meshAfter, g.before.data, g.after.data, g.before.lds, g.after.lds, g.calleeWrites, g.rewritten, fmtSteps(g.steps))
	}
	return r, nil
}

// convergeCallers creates objs at once and waits until hub and its first callers
// callers have converged, hub's ConfigMap names all of them, and the manager is
// quiet; it returns the weight of hub's ConfigMap then.
func convergeCallers(ctx context.Context, p *plane, m *managerProc, log *cmLog, objs []*meshv1alpha1.MeshService, callers int, timeout time.Duration) (cmWeight, error) {
	ready := newTracker(callers+1, func(o client.Object) bool {
		ms, ok := o.(*meshv1alpha1.MeshService)
		return ok && (ms.Name == authzCallee || strings.HasPrefix(ms.Name, "caller-")) && converged(ms)
	})
	if err := watch(ctx, p.cfg, &meshv1alpha1.MeshService{}, ready); err != nil {
		return cmWeight{}, err
	}
	named := log.when(func(cm *corev1.ConfigMap) bool {
		return cm.Name == cmName(authzCallee) && principalCount(cm.Data[envoyconfig.ListenersFile]) == callers
	})
	if err := createAll(ctx, p.client, objs); err != nil {
		return cmWeight{}, err
	}
	if err := await(ctx, ready, m, timeout); err != nil {
		return cmWeight{}, err
	}
	if err := awaitWaiters(ctx, m, timeout, named); err != nil {
		return cmWeight{}, fmt.Errorf("%s's ConfigMap naming its %d callers: %w", authzCallee, callers, err)
	}
	if err := settle(ctx, m); err != nil {
		return cmWeight{}, err
	}
	return weigh(log.get(cmName(authzCallee))), nil
}

// newCaller creates one more caller of hub on a quiet manager and times until
// both ConfigMaps carry it, then waits for quiet again and lists what was written.
func newCaller(ctx context.Context, p *plane, m *managerProc, log *cmLog, name string) (*authzStep, error) {
	id := identity.SPIFFEID(trustDomain, benchNamespace, name)
	cluster := envoyconfig.UpstreamClusterName(authzCallee, benchNamespace)
	callerCM := log.when(func(cm *corev1.ConfigMap) bool {
		return cm.Name == cmName(name) && strings.Contains(cm.Data[envoyconfig.ClustersFile], cluster)
	})
	calleeCM := log.when(func(cm *corev1.ConfigMap) bool {
		return cm.Name == cmName(authzCallee) && namesPrincipal(cm.Data[envoyconfig.ListenersFile], id)
	})
	select {
	case <-callerCM.done:
		return nil, fmt.Errorf("%s's ConfigMap exists before %s does", name, name)
	case <-calleeCM.done:
		return nil, fmt.Errorf("%s's ConfigMap names %s before it exists", authzCallee, id)
	default:
	}
	before := log.snapshot()
	reqBefore, err := m.metrics(stepMetrics)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := p.client.Create(ctx, meshService(name, meshv1alpha1.Upstream{Name: authzCallee, LocalPort: 20001})); err != nil {
		return nil, err
	}
	if err := awaitWaiters(ctx, m, authzStepTimeout, callerCM, calleeCM); err != nil {
		return nil, fmt.Errorf("both ConfigMaps carrying %s: %w", name, err)
	}
	s := &authzStep{caller: name, callerCM: callerCM.at.Sub(start), calleeCM: calleeCM.at.Sub(start)}
	s.both = max(s.callerCM, s.calleeCM)
	// Whatever the manager still does because of this caller happens before it
	// is quiet again.
	if err := settle(ctx, m); err != nil {
		return nil, err
	}
	after := log.snapshot()
	for _, cm := range written(before, after) {
		switch cm {
		case cmName(name):
			s.callerWrites = after[cm] - before[cm]
		case cmName(authzCallee):
			s.calleeWrites = after[cm] - before[cm]
		default:
			s.others = append(s.others, cm)
		}
	}
	grown, err := m.metrics(stepMetrics)
	if err != nil {
		return nil, err
	}
	s.requests, s.reconciles = map[string]float64{}, map[string]float64{}
	for k, v := range grown {
		if v -= reqBefore[k]; v == 0 {
			continue
		}
		if method, ok := strings.CutPrefix(k, "rest_client_requests_total{"); ok {
			s.requests[strings.TrimSuffix(method, "}")] = v
		} else {
			s.reconciles[strings.TrimSuffix(strings.TrimPrefix(k, "controller_runtime_reconcile_total{"), "}")] = v
		}
	}
	return s, nil
}

// growMesh adds unrelated MeshServices (other-i calling other-(i+1) and
// other-(i+2)) until the mesh has o.authzMesh, waits until they have converged
// and the manager is quiet, and reports what happened to hub's ConfigMap and its
// callers' meanwhile.
func growMesh(ctx context.Context, o options, p *plane, m *managerProc, log *cmLog, callers int) (*authzGrowth, error) {
	g := &authzGrowth{meshBefore: callers + 1, meshAfter: o.authzMesh}
	g.before = weigh(log.get(cmName(authzCallee)))
	n := o.authzMesh - g.meshBefore
	objs := make([]*meshv1alpha1.MeshService, n)
	for i := range n {
		objs[i] = meshService("other-"+strconv.Itoa(i),
			meshv1alpha1.Upstream{Name: "other-" + strconv.Itoa((i+1)%n), LocalPort: 20001},
			meshv1alpha1.Upstream{Name: "other-" + strconv.Itoa((i+2)%n), LocalPort: 20002})
	}
	ready := newTracker(n, isMeshService("other-"))
	if err := watch(ctx, p.cfg, &meshv1alpha1.MeshService{}, ready); err != nil {
		return nil, err
	}
	before := log.snapshot()
	if err := createAll(ctx, p.client, objs); err != nil {
		return nil, err
	}
	if err := await(ctx, ready, m, o.timeout); err != nil {
		return nil, err
	}
	if err := settle(ctx, m); err != nil {
		return nil, err
	}
	after := log.snapshot()
	for _, cm := range written(before, after) {
		if !strings.HasPrefix(cm, "other-") {
			g.rewritten = append(g.rewritten, cm)
		}
	}
	g.calleeWrites = after[cmName(authzCallee)] - before[cmName(authzCallee)]
	g.after = weigh(log.get(cmName(authzCallee)))
	if g.after.data == 0 {
		return nil, errors.New("hub's ConfigMap is gone")
	}
	return g, nil
}

func fmtWeights(w map[int]cmWeight) string {
	var parts []string
	for _, c := range sortedKeys(w) {
		parts = append(parts, fmt.Sprintf("%d callers: lds.yaml %d B, data %d B", c, w[c].lds, w[c].data))
	}
	return strings.Join(parts, "; ")
}

func fmtSteps(steps []authzStep) string {
	var both []time.Duration
	var others []string
	var reqs []string
	for _, s := range steps {
		both = append(both, s.both)
		others = append(others, s.others...)
		reqs = append(reqs, fmt.Sprintf("%s %d/%d %s (reconciles %s)", s.caller, s.callerWrites, s.calleeWrites, fmtRequests(s.requests), fmtRequests(s.reconciles)))
	}
	slices.Sort(both)
	if len(both) == 0 {
		return "no new callers"
	}
	return fmt.Sprintf("%d new callers: both ConfigMaps p50 %s max %s; other ConfigMaps written: %v; per caller (caller/hub ConfigMap writes, requests): %s",
		len(steps), both[(len(both)-1)/2].Round(time.Millisecond), both[len(both)-1].Round(time.Millisecond), others, strings.Join(reqs, "; "))
}

// fmtRequests lists a step's counts by key.
func fmtRequests(m map[string]float64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if v := m[k]; v != 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f", k, v))
		}
	}
	return strings.Join(parts, ", ")
}

// stepFigures are the per-run figures of a list of steps, in milliseconds.
func stepFigures(steps []authzStep) (p50, maxBoth, callerP50, calleeP50 float64) {
	ms := func(f func(authzStep) time.Duration) []float64 {
		v := make([]float64, len(steps))
		for i, s := range steps {
			v[i] = f(s).Seconds() * 1000
		}
		return v
	}
	both := ms(func(s authzStep) time.Duration { return s.both })
	return median(both), slices.Max(both), median(ms(func(s authzStep) time.Duration { return s.callerCM })),
		median(ms(func(s authzStep) time.Duration { return s.calleeCM }))
}

// stepRows are the rows of new callers, one value per run.
func stepRows(w func(string, ...any), label string, runs [][]authzStep) {
	var p50, mx, cp50, ep50 []float64
	var others, writes, requests []string
	var otherCount, allSteps int
	for _, steps := range runs {
		a, b, c, d := stepFigures(steps)
		p50, mx, cp50, ep50 = append(p50, a), append(mx, b), append(cp50, c), append(ep50, d)
		var names []string
		var callerW, calleeW []float64
		methods := map[string]bool{}
		for _, s := range steps {
			names = append(names, s.others...)
			callerW = append(callerW, float64(s.callerWrites))
			calleeW = append(calleeW, float64(s.calleeWrites))
			for k := range s.requests {
				methods[k] = true
			}
		}
		perMethod := map[string][]float64{}
		for k := range methods {
			for _, s := range steps {
				perMethod[k] = append(perMethod[k], s.requests[k])
			}
		}
		allSteps += len(steps)
		otherCount += len(names)
		slices.Sort(names)
		names = slices.Compact(names)
		cell := fmt.Sprintf("%d", len(names))
		if len(names) > 0 {
			cell += " (" + strings.Join(names[:min(len(names), 5)], " ")
			if len(names) > 5 {
				cell += " …"
			}
			cell += ")"
		}
		others = append(others, cell)
		writes = append(writes, fmt.Sprintf("%.0f / %.0f", median(callerW), median(calleeW)))
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(perMethod)) {
			if v := median(perMethod[k]); v != 0 {
				parts = append(parts, fmt.Sprintf("%s %.0f", k, v))
			}
		}
		requests = append(requests, strings.Join(parts, ", "))
	}
	w("| %s: both ConfigMaps carry it, p50 | %.0f ms | %s | |\n", label, median(p50), list(p50, "%.0f"))
	w("| %s: both ConfigMaps carry it, max | %.0f ms | %s | |\n", label, median(mx), list(mx, "%.0f"))
	w("| %s: the caller's / the callee's ConfigMap carries it, p50 | %.0f / %.0f ms | %s / %s | |\n", label, median(cp50), median(ep50), list(cp50, "%.0f"), list(ep50, "%.0f"))
	w("| %s: other ConfigMaps rewritten (%d new callers in all) | %d | %s | none: %s |\n", label, allSteps, otherCount, strings.Join(others, ", "), verdict(otherCount == 0))
	w("| %s: writes of the caller's / the callee's ConfigMap per new caller (median) | %s | %s | |\n", label, writes[len(writes)/2], strings.Join(writes, ", "))
	w("| %s: the manager's API requests per new caller (median) | %s | %s | |\n", label, requests[len(requests)/2], strings.Join(requests, "; "))
}

// authzRows are the authz-newcaller scenario's rows of the main table.
func (r *results) authzRows(w func(string, ...any)) {
	if len(r.authz) == 0 {
		return
	}
	callers := r.authz[0].callers
	var runs [][]authzStep
	for _, a := range r.authz {
		runs = append(runs, a.steps)
	}
	stepRows(w, fmt.Sprintf("Authorization, new caller of a service with %d callers", callers), runs)
	var prev float64
	for _, c := range sortedKeys(r.authz[0].weights) {
		var lds, data []float64
		for _, a := range r.authz {
			lds = append(lds, float64(a.weights[c].lds))
			data = append(data, float64(a.weights[c].data))
		}
		target := ""
		if prev > 0 {
			target = "grows with callers: " + verdict(median(data) > prev)
		}
		prev = median(data)
		w("| Callee's ConfigMap with %d callers (operator in envtest): lds.yaml / all data | %.0f B / %.0f B | %s / %s | %s |\n",
			c, median(lds), median(data), list(lds, "%.0f"), list(data, "%.0f"), target)
	}
	for _, a := range r.authz {
		g := a.grown
		if g == nil {
			continue
		}
		label := fmt.Sprintf("Authorization, %d unrelated MeshServices join (mesh of %d → %d, first run)", g.meshAfter-g.meshBefore, g.meshBefore, g.meshAfter)
		rewritten := fmt.Sprintf("%d", len(g.rewritten))
		if len(g.rewritten) > 0 {
			rewritten += " (" + strings.Join(g.rewritten[:min(len(g.rewritten), 5)], " ") + ")"
		}
		w("| %s: ConfigMaps of the callee and its callers rewritten | %d | %s | none: %s |\n", label, len(g.rewritten), rewritten, verdict(len(g.rewritten) == 0))
		w("| %s: callee's ConfigMap data before / after (lds.yaml) | %d B / %d B | %d B / %d B | flat in mesh size: %s |\n",
			label, g.before.data, g.after.data, g.before.lds, g.after.lds, verdict(g.before == g.after))
		if len(g.steps) > 0 {
			stepRows(w, fmt.Sprintf("Authorization, new caller of a service with %d callers in a mesh of %d (first run)", g.meshBefore-1, g.meshAfter), [][]authzStep{g.steps})
		}
	}
}
