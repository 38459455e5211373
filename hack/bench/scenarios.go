package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

const (
	benchNamespace = "bench"
	// fieldOwner is the manager's field manager (controllers.FieldOwner), so the
	// floor's applies are the same requests.
	fieldOwner  = "envoymesh-operator"
	appPort     = 8080
	servicePort = 15006
	// newServicePort is what the fan-out scenario changes the called service to; the
	// string "port_value: 15999" appears in a caller's cds.yaml only once it is seen.
	newServicePort = 15999
	// createWorkers is how many creates the bench sends at once ("created at once").
	createWorkers = 32
)

var errTimeout = errors.New("timed out")

// convergenceResult is one manager run of N MeshServices.
type convergenceResult struct {
	n           int
	total       time.Duration // first create → last MeshService converged, its policy naming both callers
	byStatus    time.Duration // first create → last MeshService converged by its status alone
	create      time.Duration // first create → last create acknowledged
	peakRSS     int64
	configBytes int // the 3-upstream probe service's ConfigMap data, after convergence
	metrics     map[string]float64
}

// fanoutResult is one update of the called service with D callers.
type fanoutResult struct {
	d        int
	p50, max time.Duration
	peakRSS  int64
}

// meshService is svc-i of the workload: an HTTP app calling the given upstreams.
func meshService(name string, upstreams ...meshv1alpha1.Upstream) *meshv1alpha1.MeshService {
	return &meshv1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: name},
		Spec: meshv1alpha1.MeshServiceSpec{
			Replicas:    ptr.To[int32](1),
			Port:        appPort,
			ServicePort: servicePort,
			Upstreams:   upstreams,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name:  "app",
				Image: "example.com/" + name + ":1",
				Ports: []corev1.ContainerPort{{Name: "svc-port", ContainerPort: appPort}},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					RunAsNonRoot:             ptr.To(true),
					RunAsUser:                ptr.To[int64](1000),
					SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
			}}}},
		},
	}
}

func svcName(i int) string { return "svc-" + strconv.Itoa(i) }

// workload is N MeshServices, svc-i calling svc-(i+1) and svc-(i+2) (mod N): every
// service has 2 upstreams and 2 callers.
func workload(n int) []*meshv1alpha1.MeshService {
	out := make([]*meshv1alpha1.MeshService, n)
	for i := range n {
		out[i] = meshService(svcName(i),
			meshv1alpha1.Upstream{Name: svcName((i + 1) % n), LocalPort: 20001},
			meshv1alpha1.Upstream{Name: svcName((i + 2) % n), LocalPort: 20002})
	}
	return out
}

// sizedProbe is the 3-upstream service whose ConfigMap is weighed.
func sizedProbe() *meshv1alpha1.MeshService {
	return meshService("sized",
		meshv1alpha1.Upstream{Name: svcName(0), LocalPort: 20001},
		meshv1alpha1.Upstream{Name: svcName(1), LocalPort: 20002},
		meshv1alpha1.Upstream{Name: svcName(2), LocalPort: 20003})
}

// converged is the end state of a MeshService in envtest: the operator wrote its
// objects and status for this generation with every upstream resolved. (Ready stays
// False: envtest runs no Deployment controller.) Status is written after the four
// applies, so it implies the objects exist; the run checks that once at the end.
func converged(ms *meshv1alpha1.MeshService) bool {
	return ms.Generation > 0 && ms.Status.ObservedGeneration == ms.Generation &&
		meta.IsStatusConditionTrue(ms.Status.Conditions, meshv1alpha1.ConditionUpstreamsResolved)
}

// createAll creates objs createWorkers at a time, in a fixed shuffled order so that
// upstreams are as likely to exist before their callers as after.
func createAll(ctx context.Context, c client.Client, objs []*meshv1alpha1.MeshService) error {
	return createEach(ctx, c, objs, nil)
}

// createEach is createAll calling done, when set, with each object as created.
func createEach(ctx context.Context, c client.Client, objs []*meshv1alpha1.MeshService, done func(*meshv1alpha1.MeshService)) error {
	order := rand.New(rand.NewSource(1)).Perm(len(objs))
	idx := make(chan int)
	errs := make(chan error, createWorkers)
	var wg sync.WaitGroup
	for range createWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				obj := objs[i].DeepCopy()
				if err := c.Create(ctx, obj); err != nil {
					select {
					case errs <- fmt.Errorf("creating %s: %w", objs[i].Name, err):
					default:
					}
					continue
				}
				if done != nil {
					done(obj)
				}
			}
		}()
	}
	for _, i := range order {
		idx <- i
	}
	close(idx)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// tracker records when each object first met a condition, from an informer in the
// bench process (a watch: no polling load on the API server).
type tracker struct {
	mu    sync.Mutex
	seen  map[string]time.Time
	want  int
	done  chan struct{}
	match func(client.Object) bool
}

func newTracker(want int, match func(client.Object) bool) *tracker {
	return &tracker{seen: map[string]time.Time{}, want: want, done: make(chan struct{}), match: match}
}

func (t *tracker) observe(obj any) {
	o, ok := obj.(client.Object)
	if !ok || !t.match(o) {
		return
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.seen[o.GetName()]; dup {
		return
	}
	t.seen[o.GetName()] = now
	if len(t.seen) == t.want {
		close(t.done)
	}
}

func (t *tracker) times() []time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]time.Time, 0, len(t.seen))
	for _, v := range t.seen {
		out = append(out, v)
	}
	return out
}

func (t *tracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.seen)
}

// watch starts a namespaced cache in the bench process and feeds obj's events to t.
func watch(ctx context.Context, cfg *rest.Config, obj client.Object, t *tracker) error {
	return watchWith(ctx, cfg, obj, t.observe)
}

// watchWith starts a namespaced cache in the bench process and calls observe with
// every object of obj's kind added or updated.
func watchWith(ctx context.Context, cfg *rest.Config, obj client.Object, observe func(any)) error {
	c, err := cache.New(cfg, cache.Options{Scheme: scheme, DefaultNamespaces: map[string]cache.Config{benchNamespace: {}}})
	if err != nil {
		return err
	}
	go func() { _ = c.Start(ctx) }()
	inf, err := c.GetInformer(ctx, obj)
	if err != nil {
		return err
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    observe,
		UpdateFunc: func(_, o any) { observe(o) },
	})
	if err != nil {
		return err
	}
	if !c.WaitForCacheSync(ctx) {
		return errors.New("bench cache did not sync")
	}
	return nil
}

// await waits for t, failing early when the manager dies.
func await(ctx context.Context, t *tracker, m *managerProc, timeout time.Duration) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return nil
		case <-deadline:
			return errTimeout
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if m != nil {
				if err := m.alive(); err != nil {
					return err
				}
			}
		}
	}
}

// convergedQuantiles says when a quarter, half, 90% and all of the MeshServices
// had converged, for the log: it shows where a run lost its time.
func convergedQuantiles(t *tracker, start time.Time) string {
	times := t.times()
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	at := func(q float64) float64 { return times[int(q*float64(len(times)-1))].Sub(start).Seconds() }
	return fmt.Sprintf("converged 25%%/50%%/90%%/all at %.2f/%.2f/%.2f/%.2fs", at(0.25), at(0.5), at(0.9), at(1))
}

// workloadConverged is converged for svc-i of the workload in the default mesh
// (mTLS Strict, authorization Enforce): its status also counts both its callers,
// svc-(i-1) and svc-(i-2), as authorized, which the manager writes once the
// ConfigMap whose inbound policy names them is applied. A MeshService reconciled
// before its callers existed is converged by observedGeneration and
// UpstreamsResolved alone before its policy is complete.
func workloadConverged(o client.Object) bool {
	ms, ok := o.(*meshv1alpha1.MeshService)
	return ok && strings.HasPrefix(ms.Name, "svc-") && converged(ms) &&
		ms.Status.AuthorizedCallers != nil && ms.Status.AuthorizedCallers.Count == 2
}

func isMeshService(prefix string) func(client.Object) bool {
	return func(o client.Object) bool {
		ms, ok := o.(*meshv1alpha1.MeshService)
		return ok && strings.HasPrefix(ms.Name, prefix) && converged(ms)
	}
}

// managerMetrics are the series scraped from the manager after a run, to explain it.
var managerMetrics = map[string]string{
	"rest_client_requests_total":                    "method",
	"controller_runtime_reconcile_total":            "controller,result",
	"controller_runtime_reconcile_time_seconds_sum": "controller",
	"workqueue_queue_duration_seconds_sum":          "name",
	"process_cpu_seconds_total":                     "",
}

// convergenceRun creates N MeshServices at once against a fresh control plane with
// the manager running and times until all have converged; then it weighs a
// 3-upstream service's ConfigMap in that mesh and reads the manager's peak RSS.
func convergenceRun(ctx context.Context, o options, n, run int) (*convergenceResult, error) {
	if n < 3 {
		return nil, fmt.Errorf("N must be at least 3, not %d", n)
	}
	p, err := startPlane(o)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m, err := startManager(o, p, fmt.Sprintf("convergence-n%d-run%d", n, run+1))
	if err != nil {
		return nil, err
	}
	defer m.stop()
	t := newTracker(n, workloadConverged)
	// By status alone, as before authorization: for the log and the report.
	byStatus := newTracker(n, isMeshService("svc-"))
	if err := watchWith(ctx, p.cfg, &meshv1alpha1.MeshService{}, func(o any) { t.observe(o); byStatus.observe(o) }); err != nil {
		return nil, err
	}

	objs := workload(n)
	if o.cpuProfile > 0 {
		hc, err := rest.HTTPClientFor(p.cfg)
		if err != nil {
			return nil, err
		}
		prefix := strings.TrimSuffix(m.logPath, "-manager.log")
		managerDone := profileCPU(http.DefaultClient, "http://"+m.pprofAddr, o.cpuProfile, prefix+"-manager-cpu.pprof")
		apiserverDone := profileCPU(hc, p.cfg.Host, o.cpuProfile, prefix+"-apiserver-cpu.pprof")
		defer func() {
			<-managerDone
			<-apiserverDone
			download(hc, strings.TrimSuffix(p.cfg.Host, "/")+"/metrics", prefix+"-apiserver-metrics.txt")
		}()
	}
	start := time.Now()
	if err := createAll(ctx, p.client, objs); err != nil {
		return nil, err
	}
	r := &convergenceResult{n: n, create: time.Since(start)}
	if err := await(ctx, t, m, o.timeout); err != nil {
		if errors.Is(err, errTimeout) {
			logf("N=%d: %d/%d converged after %s", n, t.count(), n, o.timeout)
		}
		return nil, err
	}
	r.total = slices.MaxFunc(t.times(), func(a, b time.Time) int { return a.Compare(b) }).Sub(start)
	r.byStatus = slices.MaxFunc(byStatus.times(), func(a, b time.Time) int { return a.Compare(b) }).Sub(start)
	if err := checkOwned(ctx, p.client, n); err != nil {
		return nil, err
	}
	if err := checkFloorConfig(ctx, p.client, objs); err != nil {
		return nil, err
	}
	if r.metrics, err = m.metrics(managerMetrics); err != nil {
		return nil, err
	}

	if r.configBytes, err = weighProbe(ctx, p.client, m); err != nil {
		return nil, err
	}
	if r.peakRSS, _, err = m.memory(); err != nil {
		return nil, err
	}
	logf("convergence N=%d run %d: %.2fs (creates %.2fs; %s; by status alone %.2fs), peak RSS %.1f MiB, probe ConfigMap %d B, %s",
		n, run+1, r.total.Seconds(), r.create.Seconds(), convergedQuantiles(t, start), r.byStatus.Seconds(), mib(r.peakRSS), r.configBytes, fmtMetrics(r.metrics))
	return r, nil
}

// checkOwned verifies that every converged MeshService has its ConfigMap,
// Service, Deployment and (the default mesh is Strict) NetworkPolicy.
func checkOwned(ctx context.Context, c client.Client, n int) error {
	for _, l := range []struct {
		gv, kind string
		suffix   string
	}{{"v1", "ConfigMapList", objects.ConfigMapSuffix}, {"v1", "ServiceList", ""}, {"apps/v1", "DeploymentList", ""},
		{"networking.k8s.io/v1", "NetworkPolicyList", ""}} {
		list := &metav1.PartialObjectMetadataList{}
		gv := l.gv
		list.SetGroupVersionKind(schemaGVK(gv, l.kind))
		if err := c.List(ctx, list, client.InNamespace(benchNamespace)); err != nil {
			return err
		}
		names := map[string]bool{}
		for _, it := range list.Items {
			names[it.Name] = true
		}
		for i := range n {
			if !names[svcName(i)+l.suffix] {
				return fmt.Errorf("%s has no %s%s although its status says converged", svcName(i), svcName(i), l.suffix)
			}
		}
	}
	return nil
}

// checkFloorConfig holds the floor to the manager's work: the ConfigMap data the
// floor writes for the first MeshService of objs (mTLS, its two callers, its two
// upstreams' identities) is what the manager wrote. Run it before weighProbe,
// whose probe becomes one more caller.
func checkFloorConfig(ctx context.Context, c client.Client, objs []*meshv1alpha1.MeshService) error {
	configs, err := floorConfigs(objs)
	if err != nil {
		return err
	}
	ms := objs[0]
	want := objects.ConfigMap(ms, configs[ms.Name].Output)
	got := &corev1.ConfigMap{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ms.Namespace, Name: want.Name}, got); err != nil {
		return err
	}
	for k, v := range want.Data {
		if got.Data[k] != v {
			return fmt.Errorf("the floor would write a %s of %d B for %s where the manager wrote %d B: the floor no longer does the manager's work", k, len(v), ms.Name, len(got.Data[k]))
		}
	}
	if len(got.Data) != len(want.Data) {
		return fmt.Errorf("the manager wrote %d files for %s, the floor would write %d", len(got.Data), ms.Name, len(want.Data))
	}
	return nil
}

// weighProbe creates the 3-upstream service, waits for its ConfigMap and returns
// the bytes of its data (envoy.yaml, lds.yaml, cds.yaml and the SDS files).
func weighProbe(ctx context.Context, c client.Client, m *managerProc) (int, error) {
	ms := sizedProbe()
	if err := c.Create(ctx, ms); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if err := m.alive(); err != nil {
			return 0, err
		}
		cur := &meshv1alpha1.MeshService{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(ms), cur); err != nil {
			return 0, err
		}
		if converged(cur) {
			cm := &corev1.ConfigMap{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: benchNamespace, Name: objects.ConfigMapName(cur)}, cm); err != nil {
				return 0, err
			}
			size := 0
			for _, v := range cm.Data {
				size += len(v)
			}
			return size, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, errors.New("the 3-upstream probe service did not converge in 2 minutes")
}

// configRun weighs the probe service in a mesh of m services (a convergence run
// whose timing is not reported).
func configRun(ctx context.Context, o options, m int) (*convergenceResult, error) {
	return convergenceRun(ctx, o, m, 0)
}

// floorResult is one floor run: the same writes as the manager's with nothing else.
type floorResult struct {
	// stream: the MeshServices are created at once as in the manager run, and each
	// gets its writes as soon as its create returns; timed from the first create,
	// like the manager.
	// writes: the MeshServices were created beforehand (not timed); timed from the
	// first write to the last.
	stream, writes time.Duration
}

// floorRun measures what the API server allows for the manager's work, twice on
// fresh control planes: once with the creates at once and the writes streaming
// behind them (the same start line as the manager run), once with the MeshServices
// created beforehand (the writes alone). The writer is a cache-less
// controller-runtime client with the manager's QPS, burst and concurrency; per
// MeshService it sends the manager's four server-side applies (same bodies, same
// field owner) and one status update.
func floorRun(ctx context.Context, o options, n, run int) (*floorResult, error) {
	r := &floorResult{}
	var err error
	if r.stream, err = floorOnce(ctx, o, n, run, true); err != nil {
		return nil, err
	}
	if r.writes, err = floorOnce(ctx, o, n, run, false); err != nil {
		return nil, err
	}
	logf("floor N=%d: created at once + streamed writes %.2fs; writes alone %.2fs", n, r.stream.Seconds(), r.writes.Seconds())
	return r, nil
}

func floorOnce(ctx context.Context, o options, n, run int, stream bool) (time.Duration, error) {
	p, err := startPlane(o)
	if err != nil {
		return 0, err
	}
	defer p.stop()
	objs := workload(n)
	// The configs depend only on the specs, known before anything is created.
	configs, err := floorConfigs(objs)
	if err != nil {
		return 0, err
	}
	sidecar := objects.ResolveSidecar(objects.DefaultSidecar(o.envoyImage), nil)

	// The writer: the same rest.Config settings as the manager's client, and the
	// same client type, so rate limiting (a token bucket per resource) is the same.
	wcfg := rest.CopyConfig(p.cfg)
	wcfg.QPS, wcfg.Burst = float32(o.qps), o.burst
	wcfg.DisableCompression = true // as the manager's default --kube-api-compression=false
	wc, err := client.New(wcfg, client.Options{Scheme: scheme})
	if err != nil {
		return 0, err
	}

	// The floor is timed like the manager: until the bench's own watch has seen
	// every status, so both pay for that watch and its latency alike.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := newTracker(n, workloadConverged)
	if err := watch(ctx, p.cfg, &meshv1alpha1.MeshService{}, t); err != nil {
		return 0, err
	}

	created := make(chan *meshv1alpha1.MeshService, n)
	create := func() error {
		return createEach(ctx, p.client, objs, func(ms *meshv1alpha1.MeshService) { created <- ms })
	}
	var start time.Time
	var createErr error
	createDone := make(chan struct{})
	if stream {
		if o.cpuProfile > 0 {
			hc, err := rest.HTTPClientFor(p.cfg)
			if err != nil {
				return 0, err
			}
			prefix := filepath.Join(o.logDir, fmt.Sprintf("floor-n%d-run%d-apiserver", n, run+1))
			done := profileCPU(hc, p.cfg.Host, o.cpuProfile, prefix+"-cpu.pprof")
			defer func() { <-done; download(hc, strings.TrimSuffix(p.cfg.Host, "/")+"/metrics", prefix+"-metrics.txt") }()
		}
		start = time.Now()
		go func() {
			defer close(createDone)
			createErr = create()
			close(created)
		}()
	} else {
		if err := create(); err != nil {
			return 0, err
		}
		close(created)
		close(createDone)
		start = time.Now()
	}

	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ms := range created {
				if err := floorWrite(ctx, wc, ms, configs[ms.Name], sidecar); err != nil {
					errOnce.Do(func() { firstErr = err })
				}
			}
		}()
	}
	wg.Wait()
	<-createDone
	if createErr != nil {
		return 0, createErr
	}
	if firstErr != nil {
		return 0, firstErr
	}
	if err := await(ctx, t, nil, o.timeout); err != nil {
		return 0, err
	}
	if stream {
		logf("floor N=%d run %d: %s", n, run+1, convergedQuantiles(t, start))
	}
	return slices.MaxFunc(t.times(), func(a, b time.Time) int { return a.Compare(b) }).Sub(start), nil
}

// floorConfig is what the floor writes for one MeshService: its sidecar's files
// and the SPIFFE IDs of its callers.
type floorConfig struct {
	*envoyconfig.Output
	callers []string
}

// floorConfigs computes the manager's config of every MeshService of objs, each
// with its upstreams and callers taken from objs (the whole mesh).
func floorConfigs(objs []*meshv1alpha1.MeshService) (map[string]floorConfig, error) {
	byKey := map[types.NamespacedName]*meshv1alpha1.MeshService{}
	callers := map[types.NamespacedName][]*meshv1alpha1.MeshService{}
	for _, ms := range objs {
		byKey[client.ObjectKeyFromObject(ms)] = ms
		for _, u := range ms.Spec.Upstreams {
			callers[u.Key(ms.Namespace)] = append(callers[u.Key(ms.Namespace)], ms)
		}
	}
	configs := make(map[string]floorConfig, len(objs))
	for _, ms := range objs {
		found := map[types.NamespacedName]*meshv1alpha1.MeshService{}
		for _, u := range ms.Spec.Upstreams {
			if up := byKey[u.Key(ms.Namespace)]; up != nil {
				found[u.Key(ms.Namespace)] = up
			}
		}
		ids := principalsOf(callers[client.ObjectKeyFromObject(ms)])
		cfg, err := sidecarFiles(ms, found, ids)
		if err != nil {
			return nil, err
		}
		configs[ms.Name] = floorConfig{Output: cfg, callers: ids}
	}
	return configs, nil
}

// principalsOf are the callers' SPIFFE IDs, sorted and deduplicated, as the
// manager's authorizedPrincipals gives them for callers of the callee's namespace.
func principalsOf(callers []*meshv1alpha1.MeshService) []string {
	ids := make([]string, 0, len(callers))
	for _, c := range callers {
		ids = append(ids, identity.SPIFFEID(trustDomain, c.Namespace, objects.ServiceAccountName(c)))
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// floorWrite sends for ms (as returned by its create) what one successful
// reconcile of the manager sends in the default mesh (mTLS Strict): five applies
// (ServiceAccount, ConfigMap, Service, Deployment, NetworkPolicy) and one status
// update.
func floorWrite(ctx context.Context, c client.Client, ms *meshv1alpha1.MeshService, cfg floorConfig, sidecar objects.Sidecar) error {
	for _, obj := range []client.Object{objects.ServiceAccount(ms), objects.ConfigMap(ms, cfg.Output), objects.Service(ms),
		objects.Deployment(ms, sidecar, cfg.BootstrapHash, true), objects.NetworkPolicy(ms)} {
		u, err := objects.ApplyBody(obj)
		if err != nil {
			return err
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	next := ms.DeepCopy()
	next.Status = floorStatus(ms, cfg.ConfigVersion, cfg.callers)
	if err := c.Status().Update(ctx, next); err != nil {
		return fmt.Errorf("status of %s: %w", ms.Name, err)
	}
	return nil
}

// floorStatus is a status of the size and shape the manager writes once converged
// in the default mesh: identity, authorized callers and upstreams.
func floorStatus(ms *meshv1alpha1.MeshService, version string, callers []string) meshv1alpha1.MeshServiceStatus {
	now := metav1.Now()
	sa := objects.ServiceAccountName(ms)
	id := identity.SPIFFEID(trustDomain, ms.Namespace, sa)
	st := meshv1alpha1.MeshServiceStatus{
		ObservedGeneration: ms.Generation,
		Ready:              "0/1",
		Synced:             "0/0",
		ConfigVersion:      version,
		Sidecars:           &meshv1alpha1.SidecarCounts{},
		Identity:           &meshv1alpha1.IdentityStatus{ServiceAccount: sa, SPIFFEID: id},
		AuthorizedCallers:  &meshv1alpha1.AuthorizedCallers{Count: int32(len(callers)), SPIFFEIDs: callers[:min(len(callers), 20)]},
		Conditions: []metav1.Condition{
			{Type: meshv1alpha1.ConditionUpstreamsResolved, Status: metav1.ConditionTrue, Reason: "Resolved",
				Message: fmt.Sprintf("all %d upstreams exist", len(ms.Spec.Upstreams)), ObservedGeneration: ms.Generation, LastTransitionTime: now},
			{Type: meshv1alpha1.ConditionUpstreamsAuthorized, Status: metav1.ConditionTrue, Reason: "Authorized",
				Message: fmt.Sprintf("all %d resolved upstreams accept this service", len(ms.Spec.Upstreams)), ObservedGeneration: ms.Generation, LastTransitionTime: now},
			{Type: meshv1alpha1.ConditionIdentity, Status: metav1.ConditionTrue, Reason: "Assigned",
				Message: id, ObservedGeneration: ms.Generation, LastTransitionTime: now},
			{Type: meshv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: "Progressing",
				Message: `0/1 replicas ready; ServiceMesh "default" not found, built-in defaults apply`, ObservedGeneration: ms.Generation, LastTransitionTime: now},
			{Type: meshv1alpha1.ConditionConfigSynced, Status: metav1.ConditionUnknown, Reason: "NoSidecars",
				Message: "no sidecar is running", ObservedGeneration: ms.Generation, LastTransitionTime: now},
		},
	}
	for _, u := range ms.Spec.Upstreams {
		k := u.Key(ms.Namespace)
		st.Upstreams = append(st.Upstreams, meshv1alpha1.UpstreamStatus{Name: k.Name, Namespace: k.Namespace, Resolved: true, Authorized: true})
	}
	return st
}

// fanoutRun converges one called service and D callers, then changes the called
// service's servicePort and times until each caller's ConfigMap carries it.
func fanoutRun(ctx context.Context, o options, d, run int) (*fanoutResult, error) {
	p, err := startPlane(o)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m, err := startManager(o, p, fmt.Sprintf("fanout-d%d-run%d", d, run+1))
	if err != nil {
		return nil, err
	}
	defer m.stop()

	objs := []*meshv1alpha1.MeshService{meshService("hub")}
	for i := range d {
		objs = append(objs, meshService("caller-"+strconv.Itoa(i), meshv1alpha1.Upstream{Name: "hub", LocalPort: 20001}))
	}
	ready := newTracker(d+1, func(o client.Object) bool {
		ms, ok := o.(*meshv1alpha1.MeshService)
		return ok && converged(ms)
	})
	if err := watch(ctx, p.cfg, &meshv1alpha1.MeshService{}, ready); err != nil {
		return nil, err
	}
	if err := createAll(ctx, p.client, objs); err != nil {
		return nil, err
	}
	if err := await(ctx, ready, m, o.timeout); err != nil {
		return nil, fmt.Errorf("initial convergence: %w", err)
	}

	marker := "port_value: " + strconv.Itoa(newServicePort)
	seen := newTracker(d, func(o client.Object) bool {
		cm, ok := o.(*corev1.ConfigMap)
		return ok && strings.HasPrefix(cm.Name, "caller-") && strings.Contains(cm.Data[envoyconfig.ClustersFile], marker)
	})
	if err := watch(ctx, p.cfg, &corev1.ConfigMap{}, seen); err != nil {
		return nil, err
	}
	if n := seen.count(); n != 0 {
		return nil, fmt.Errorf("%d ConfigMaps carry %q before the change", n, marker)
	}
	hub := &meshv1alpha1.MeshService{}
	if err := p.client.Get(ctx, types.NamespacedName{Namespace: benchNamespace, Name: "hub"}, hub); err != nil {
		return nil, err
	}
	// A merge patch of the spec alone: the manager may be writing hub's status.
	before := hub.DeepCopy()
	hub.Spec.ServicePort = newServicePort
	start := time.Now()
	if err := p.client.Patch(ctx, hub, client.MergeFrom(before)); err != nil {
		return nil, err
	}
	if err := await(ctx, seen, m, o.timeout); err != nil {
		return nil, fmt.Errorf("fan-out: %w (%d/%d ConfigMaps updated)", err, seen.count(), d)
	}
	lat := make([]time.Duration, 0, d)
	for _, t := range seen.times() {
		lat = append(lat, t.Sub(start))
	}
	slices.Sort(lat)
	r := &fanoutResult{d: d, p50: lat[(len(lat)-1)/2], max: lat[len(lat)-1]}
	if r.peakRSS, _, err = m.memory(); err != nil {
		return nil, err
	}
	logf("fan-out D=%d run %d: p50 %s, max %s", d, run+1, r.p50.Round(time.Millisecond), r.max.Round(time.Millisecond))
	return r, nil
}

func schemaGVK(apiVersion, kind string) schema.GroupVersionKind {
	return schema.FromAPIVersionAndKind(apiVersion, kind)
}

// warmUp sends one of each request kind of the runs (a MeshService create, the five
// applies, a status update) in a namespace of its own and deletes what it made, so
// no run pays the first-use costs of a fresh API server (the custom resource
// handler, its CEL programs, the apply paths).
func warmUp(ctx context.Context, p *plane, o options) error {
	const ns = "warmup"
	if err := p.namespace(ctx, ns); err != nil {
		return err
	}
	ms := meshService("warm", meshv1alpha1.Upstream{Name: "other", LocalPort: 20001})
	ms.Namespace = ns
	if err := p.client.Create(ctx, ms); err != nil {
		return err
	}
	cfg, err := sidecarFiles(ms, nil, nil)
	if err != nil {
		return err
	}
	if err := floorWrite(ctx, p.client, ms, floorConfig{Output: cfg}, objects.ResolveSidecar(objects.DefaultSidecar(o.envoyImage), nil)); err != nil {
		return err
	}
	for _, obj := range []client.Object{
		ms,
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: objects.ConfigMapName(ms)}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ms.Name}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ms.Name}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ms.Name}},
	} {
		if err := p.client.Delete(ctx, obj); err != nil {
			return fmt.Errorf("warm-up: deleting %T: %w", obj, err)
		}
	}
	return nil
}

// sidecarFiles is the ConfigMap content the manager writes for ms in the default
// mesh (no ServiceMesh: mTLS Strict, authorization Enforce): each found upstream
// reached over mTLS as its identity, and principals (its callers' SPIFFE IDs,
// sorted) the only callers its inbound policy admits.
func sidecarFiles(ms *meshv1alpha1.MeshService, found map[types.NamespacedName]*meshv1alpha1.MeshService, principals []string) (*envoyconfig.Output, error) {
	svc := envoyconfig.ServiceFor(ms, found, nil)
	svc.Security = &envoyconfig.Security{MTLS: meshv1alpha1.MTLSStrict, Authorization: meshv1alpha1.AuthorizationEnforce, Principals: principals}
	for i := range svc.Upstreams {
		u := &svc.Upstreams[i]
		if up := found[types.NamespacedName{Namespace: u.Namespace, Name: u.Name}]; u.Target != nil && up != nil {
			u.Target.Peer = &envoyconfig.Peer{
				SPIFFEID: identity.SPIFFEID(trustDomain, up.Namespace, objects.ServiceAccountName(up)),
				SNI:      fmt.Sprintf("%s.%s.svc.%s", up.Name, up.Namespace, envoyconfig.DefaultClusterDomain),
			}
		}
	}
	res, err := envoyconfig.BuildSidecar(svc, envoyconfig.Options{ClusterDomain: "cluster.local"})
	if err != nil {
		return nil, err
	}
	return envoyconfig.Render(res)
}
