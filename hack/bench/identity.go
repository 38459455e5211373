package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

const (
	// benchNode is the node every pod of the identity scenario is bound to: envtest
	// runs no scheduler, so the bench sets spec.nodeName itself.
	benchNode = "bench-node"
	// podsPerService is how many pods each MeshService of the identity scenario runs.
	podsPerService = 10
	// signerWorkers is controllers.signerConcurrency, the signer's parallel
	// requests, which the floor writer matches.
	signerWorkers = 8
	// maxExpirationSeconds is what the API server defaults a podCertificate
	// projection's maxExpirationSeconds to, and so what the kubelet asks for.
	maxExpirationSeconds = 86400
)

// identityResult is one run of N pods requesting certificates at once, of the
// manager's signer or of the floor writer.
type identityResult struct {
	n      int
	total  time.Duration // first request filed → last Issued seen
	create time.Duration // first request filed → last create returned
	// latencies, sorted: each request's create returning → its Issued seen.
	latencies []time.Duration
	issued    int
	denied    int // Denied or Failed
	rss, peak int64
	metrics   map[string]float64
}

func (r *identityResult) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[int(q*float64(len(r.latencies)-1)+0.5)]
}

// identityFloorResult is one floor run of the identity scenario.
type identityFloorResult struct {
	// stream: the requests are filed at once as in the manager run, and the bare
	// writer writes each one's Issued status as soon as its create returns;
	// timed from the first create, like the manager.
	stream *identityResult
	// writes: the requests were filed beforehand (not timed); timed from the
	// first status write to the last Issued seen.
	writes time.Duration
}

// identityWorkload is ⌈n/10⌉ MeshServices without upstreams, each running
// podsPerService pods (the last the remainder), and the pod count of each.
func identityWorkload(n int) ([]*meshv1alpha1.MeshService, []int) {
	var out []*meshv1alpha1.MeshService
	var counts []int
	for i := 0; i*podsPerService < n; i++ {
		c := min(podsPerService, n-i*podsPerService)
		ms := meshService(svcName(i))
		ms.Spec.Replicas = ptr.To(int32(c))
		out = append(out, ms)
		counts = append(counts, c)
	}
	return out, counts
}

// podsOf are count pods of tmpl, as a ReplicaSet would make them and the
// scheduler bind them: the template's labels, annotations and spec, on benchNode.
func podsOf(ms *meshv1alpha1.MeshService, tmpl *corev1.PodTemplateSpec, count int) []*corev1.Pod {
	pods := make([]*corev1.Pod, count)
	for j := range count {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: ms.Namespace, Name: ms.Name + "-" + strconv.Itoa(j),
				Labels: tmpl.Labels, Annotations: tmpl.Annotations,
			},
			Spec: *tmpl.Spec.DeepCopy(),
		}
		p.Spec.NodeName = benchNode
		pods[j] = p
	}
	return pods
}

// createPods creates pods createWorkers at a time and returns them as created
// (with their UIDs).
func createPods(ctx context.Context, c client.Client, pods []*corev1.Pod) ([]*corev1.Pod, error) {
	out := make([]*corev1.Pod, len(pods))
	err := parallel(ctx, createWorkers, len(pods), func(i int) error {
		p := pods[i].DeepCopy()
		if err := c.Create(ctx, p); err != nil {
			return fmt.Errorf("creating pod %s: %w", p.Name, err)
		}
		out[i] = p
		return nil
	})
	return out, err
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, workers, n int, f func(int) error) error {
	idx := make(chan int)
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				if err := f(i); err != nil {
					once.Do(func() { firstErr = err })
				}
			}
		}()
	}
	for i := range n {
		select {
		case idx <- i:
		case <-ctx.Done():
		}
	}
	close(idx)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

// createNode registers benchNode and returns its UID, which requests name.
func createNode(ctx context.Context, c client.Client) (types.UID, error) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: benchNode}}
	if err := c.Create(ctx, node); err != nil {
		return "", err
	}
	return node.UID, nil
}

// certRequest is one PodCertificateRequest ready to file, and its key.
type certRequest struct {
	pcr *certificatesv1.PodCertificateRequest
	key *ecdsa.PrivateKey
}

// kubeletRequests prepares, for each pod, the request its kubelet would file
// (pkg/kubelet/podcertificate createPodCertificateRequest): a fresh P-256 key,
// the stub PKCS#10 request with an empty template, generateName "req-", the pod
// as owner, the pod's and its ServiceAccount's names and UIDs, the node's name
// and UID, and the projection's maxExpirationSeconds. The keys are made here,
// before the timing starts: on a real cluster each node makes its own.
func kubeletRequests(pods []*corev1.Pod, saUIDs map[string]types.UID, nodeUID types.UID) ([]*certRequest, error) {
	out := make([]*certRequest, len(pods))
	for i, pod := range pods {
		var source *corev1.PodCertificateProjection
		for _, v := range pod.Spec.Volumes {
			if v.Projected == nil {
				continue
			}
			for _, s := range v.Projected.Sources {
				if s.PodCertificate != nil && s.PodCertificate.SignerName == identity.SignerName {
					source = s.PodCertificate
				}
			}
		}
		if source == nil {
			return nil, fmt.Errorf("pod %s has no podCertificate projection for %s", pod.Name, identity.SignerName)
		}
		saUID, ok := saUIDs[pod.Spec.ServiceAccountName]
		if !ok {
			return nil, fmt.Errorf("pod %s runs as ServiceAccount %q, which does not exist", pod.Name, pod.Spec.ServiceAccountName)
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		if err != nil {
			return nil, err
		}
		maxExp := source.MaxExpirationSeconds
		if maxExp == nil {
			maxExp = ptr.To[int32](maxExpirationSeconds)
		}
		out[i] = &certRequest{key: key, pcr: &certificatesv1.PodCertificateRequest{
			ObjectMeta: metav1.ObjectMeta{
				Namespace:       pod.Namespace,
				GenerateName:    "req-",
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}},
			},
			Spec: certificatesv1.PodCertificateRequestSpec{
				SignerName:           source.SignerName,
				PodName:              pod.Name,
				PodUID:               pod.UID,
				ServiceAccountName:   pod.Spec.ServiceAccountName,
				ServiceAccountUID:    saUID,
				NodeName:             types.NodeName(pod.Spec.NodeName),
				NodeUID:              nodeUID,
				MaxExpirationSeconds: maxExp,
				StubPKCS10Request:    csr,
			},
		}}
	}
	return out, nil
}

// fileRequests files every request at once (createWorkers creates in flight,
// from the bench's unthrottled client) and calls filed with each as its create
// returns, and when.
//
// This is the kubelet's part. internal/kubeletdouble files the same requests
// from its own pod watch (Kubelet.Run); a bench on it would start the double
// before the pods exist and take a request's appearance in the bench's watch as
// its filing time, leaving the rest of the scenario as it is.
func fileRequests(ctx context.Context, c client.Client, reqs []*certRequest, filed func(*certificatesv1.PodCertificateRequest, time.Time)) error {
	return parallel(ctx, createWorkers, len(reqs), func(i int) error {
		pcr := reqs[i].pcr.DeepCopy()
		if err := c.Create(ctx, pcr); err != nil {
			return fmt.Errorf("filing the request of pod %s: %w", pcr.Spec.PodName, err)
		}
		filed(pcr, time.Now())
		return nil
	})
}

// pcrTracker records, from a watch in the bench process, when each request
// first showed a final condition and which.
type pcrTracker struct {
	mu       sync.Mutex
	want     int
	done     chan struct{}
	filedAt  map[string]time.Time
	final    map[string]string
	finalAt  map[string]time.Time
	lastSeen time.Time
}

func newPCRTracker(want int) *pcrTracker {
	t := &pcrTracker{want: want, done: make(chan struct{}), filedAt: map[string]time.Time{}, final: map[string]string{}, finalAt: map[string]time.Time{}}
	return t
}

func (t *pcrTracker) filed(pcr *certificatesv1.PodCertificateRequest, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.filedAt[pcr.Name] = at
}

func (t *pcrTracker) observe(obj any) {
	pcr, ok := obj.(*certificatesv1.PodCertificateRequest)
	if !ok {
		return
	}
	var final string
	for _, c := range []string{
		certificatesv1.PodCertificateRequestConditionTypeIssued,
		certificatesv1.PodCertificateRequestConditionTypeDenied,
		certificatesv1.PodCertificateRequestConditionTypeFailed,
	} {
		if meta.IsStatusConditionTrue(pcr.Status.Conditions, c) {
			final = c
		}
	}
	if final == "" {
		return
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.final[pcr.Name]; dup {
		return
	}
	t.final[pcr.Name], t.finalAt[pcr.Name], t.lastSeen = final, now, now
	if len(t.final) == t.want {
		close(t.done)
	}
}

func (t *pcrTracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.final)
}

// result fills r from what the tracker saw, timed from start; a request that
// ended other than Issued is an error.
func (t *pcrTracker) result(r *identityResult, start time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	reasons := map[string]int{}
	var lastFiled time.Time
	for name, at := range t.filedAt {
		lastFiled = later(lastFiled, at)
		switch t.final[name] {
		case certificatesv1.PodCertificateRequestConditionTypeIssued:
			r.issued++
			r.latencies = append(r.latencies, t.finalAt[name].Sub(at))
		case "":
			return fmt.Errorf("request %s was filed but never concluded", name)
		default:
			r.denied++
			reasons[t.final[name]]++
		}
	}
	slices.Sort(r.latencies)
	r.total = t.lastSeen.Sub(start)
	r.create = lastFiled.Sub(start)
	if r.issued != r.n || r.denied != 0 {
		return fmt.Errorf("%d of %d requests issued, %d not (%v)", r.issued, r.n, r.denied, reasons)
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// watchPCRs feeds the requests of the bench namespace to t.
func watchPCRs(ctx context.Context, cfg *rest.Config, t *pcrTracker) error {
	return watchWith(ctx, cfg, &certificatesv1.PodCertificateRequest{}, t.observe)
}

// identityMetrics are the series scraped from the manager after an identity run.
var identityMetrics = map[string]string{
	"rest_client_requests_total":                    "method",
	"controller_runtime_reconcile_total":            "controller,result",
	"controller_runtime_reconcile_time_seconds_sum": "controller",
	"envoymesh_identity_certificate_requests_total": "result",
	"process_cpu_seconds_total":                     "",
}

// identityRun is the manager's run: N member pods file their requests at once
// and the signer issues them. Setup (not timed): the MeshServices converge, their
// pods are created from the Deployments the operator wrote, and the manager has
// its CA and has gone quiet. Then the requests are filed at once, and each is
// timed from its create returning to the moment the bench's watch sees it Issued.
func identityRun(ctx context.Context, o options, n, run int) (*identityResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p, nodeUID, err := identityPlane(ctx, o)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	m, err := startManager(o, p, fmt.Sprintf("identity-n%d-run%d", n, run+1), "identity-signer", "identity-ca")
	if err != nil {
		return nil, err
	}
	defer m.stop()

	services, counts := identityWorkload(n)
	ready := newTracker(len(services), isMeshService("svc-"))
	if err := watch(ctx, p.cfg, &meshv1alpha1.MeshService{}, ready); err != nil {
		return nil, err
	}
	if err := createAll(ctx, p.client, services); err != nil {
		return nil, err
	}
	if err := await(ctx, ready, m, o.timeout); err != nil {
		return nil, fmt.Errorf("MeshServices converging: %w", err)
	}
	var pods []*corev1.Pod
	saUIDs := map[string]types.UID{}
	for i, ms := range services {
		d := &appsv1.Deployment{}
		if err := p.client.Get(ctx, client.ObjectKeyFromObject(ms), d); err != nil {
			return nil, fmt.Errorf("the Deployment of %s: %w", ms.Name, err)
		}
		pods = append(pods, podsOf(ms, &d.Spec.Template, counts[i])...)
		sa := &corev1.ServiceAccount{}
		if err := p.client.Get(ctx, types.NamespacedName{Namespace: ms.Namespace, Name: d.Spec.Template.Spec.ServiceAccountName}, sa); err != nil {
			return nil, fmt.Errorf("the ServiceAccount of %s: %w", ms.Name, err)
		}
		saUIDs[sa.Name] = sa.UID
	}
	if pods, err = createPods(ctx, p.client, pods); err != nil {
		return nil, err
	}
	if err := awaitTrustBundle(ctx, p.client, m); err != nil {
		return nil, err
	}
	if err := settle(ctx, m); err != nil {
		return nil, err
	}
	reqs, err := kubeletRequests(pods, saUIDs, nodeUID)
	if err != nil {
		return nil, err
	}

	t := newPCRTracker(n)
	if err := watchPCRs(ctx, p.cfg, t); err != nil {
		return nil, err
	}
	before, err := m.metrics(identityMetrics)
	if err != nil {
		return nil, err
	}
	r := &identityResult{n: n}
	start := time.Now()
	if err := fileRequests(ctx, p.client, reqs, t.filed); err != nil {
		return nil, err
	}
	if err := awaitPCRs(ctx, t, m, o.timeout); err != nil {
		return nil, err
	}
	if err := t.result(r, start); err != nil {
		return nil, err
	}
	// What the manager did in the timed part: the counters' growth since just
	// before the first request was filed.
	if r.metrics, err = m.metrics(identityMetrics); err != nil {
		return nil, err
	}
	for k, v := range before {
		r.metrics[k] -= v
	}
	if r.peak, r.rss, err = m.memory(); err != nil {
		return nil, err
	}
	logf("identity N=%d run %d: total %.2fs (filing %.2fs), request → Issued p50 %s p99 %s max %s; %d issued, %d denied; RSS %.1f MiB (peak %.1f); %s",
		n, run+1, r.total.Seconds(), r.create.Seconds(), r.quantile(0.5).Round(time.Millisecond), r.quantile(0.99).Round(time.Millisecond),
		r.latencies[len(r.latencies)-1].Round(time.Millisecond), r.issued, r.denied, mib(r.rss), mib(r.peak), fmtMetrics(r.metrics))
	return r, nil
}

// awaitPCRs waits until every request has concluded.
func awaitPCRs(ctx context.Context, t *pcrTracker, m *managerProc, timeout time.Duration) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return nil
		case <-deadline:
			return fmt.Errorf("%w: %d of %d requests concluded", errTimeout, t.count(), t.want)
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

// awaitTrustBundle waits for the manager to publish its CA's ClusterTrustBundle,
// which it does just before handing the CA to the signer.
func awaitTrustBundle(ctx context.Context, c client.Client, m *managerProc) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if err := m.alive(); err != nil {
			return err
		}
		var list certificatesv1.ClusterTrustBundleList
		if err := c.List(ctx, &list); err != nil {
			return err
		}
		for _, b := range list.Items {
			if strings.HasPrefix(b.Name, identity.BundleNamePrefix) {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("the manager published no trust bundle within a minute")
}

// settle waits until the manager has nothing queued and has sent no request and
// finished no reconcile for two seconds, so the timed part starts on a quiet
// manager (the pods just created reach its cache, and its MeshService status).
func settle(ctx context.Context, m *managerProc) error {
	families := map[string]string{
		"workqueue_depth":                    "",
		"controller_runtime_reconcile_total": "",
		"rest_client_requests_total":         "",
	}
	var last map[string]float64
	quiet := 0
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if err := m.alive(); err != nil {
			return err
		}
		cur, err := m.metrics(families)
		if err != nil {
			return err
		}
		if cur["workqueue_depth"] == 0 && last != nil &&
			cur["controller_runtime_reconcile_total"] == last["controller_runtime_reconcile_total"] &&
			cur["rest_client_requests_total"] == last["rest_client_requests_total"] {
			quiet++
		} else {
			quiet = 0
		}
		if quiet >= 4 {
			return nil
		}
		last = cur
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return errors.New("the manager did not go quiet within 2 minutes after the pods were created")
}

// identityFloorRun is the floor of one size: the API server's part of the same
// work, on fresh control planes without a signer, twice: the requests filed at
// once with the writer streaming behind them (the manager run's start line),
// and the requests filed beforehand (the status writes alone).
func identityFloorRun(ctx context.Context, o options, n, run int) (*identityFloorResult, error) {
	stream, err := identityFloorOnce(ctx, o, n, true)
	if err != nil {
		return nil, err
	}
	writes, err := identityFloorOnce(ctx, o, n, false)
	if err != nil {
		return nil, err
	}
	f := &identityFloorResult{stream: stream, writes: writes.total}
	logf("identity floor N=%d run %d: filed at once + streamed writes %.2fs (request → Issued p50 %s p99 %s); writes alone %.2fs",
		n, run+1, stream.total.Seconds(), stream.quantile(0.5).Round(time.Millisecond), stream.quantile(0.99).Round(time.Millisecond), writes.total.Seconds())
	return f, nil
}

// identityFloorOnce makes the same pods (the Deployment template the operator
// would write, from internal/objects) and the same requests, and writes each
// request's Issued status itself: a leaf signed beforehand by a CA of the
// bench's (identity.CA.Issue, the signer's own call), in a status like the
// signer's, through a cache-less controller-runtime client with the manager's
// QPS, burst and compression setting, from signerWorkers workers. It is timed
// like the manager run, until the bench's watch has seen every request Issued.
func identityFloorOnce(ctx context.Context, o options, n int, stream bool) (*identityResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p, nodeUID, err := identityPlane(ctx, o)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	services, counts := identityWorkload(n)
	sidecar := objects.ResolveSidecar(objects.DefaultSidecar(o.envoyImage), nil)
	var pods []*corev1.Pod
	saUIDs := map[string]types.UID{}
	for i, ms := range services {
		cfg, err := sidecarFiles(ms, nil, nil)
		if err != nil {
			return nil, err
		}
		tmpl := objects.Deployment(ms, sidecar, cfg.BootstrapHash, true).Spec.Template
		pods = append(pods, podsOf(ms, &tmpl, counts[i])...)
		sa := &corev1.ServiceAccount{
			ObjectMeta:                   metav1.ObjectMeta{Namespace: ms.Namespace, Name: objects.ServiceAccountName(ms)},
			AutomountServiceAccountToken: ptr.To(false),
		}
		if err := p.client.Create(ctx, sa); err != nil {
			return nil, err
		}
		saUIDs[sa.Name] = sa.UID
	}
	if pods, err = createPods(ctx, p.client, pods); err != nil {
		return nil, err
	}
	reqs, err := kubeletRequests(pods, saUIDs, nodeUID)
	if err != nil {
		return nil, err
	}
	statuses, err := presign(reqs)
	if err != nil {
		return nil, err
	}

	wcfg := rest.CopyConfig(p.cfg)
	wcfg.QPS, wcfg.Burst = float32(o.qps), o.burst
	wcfg.DisableCompression = true // as the manager's default --kube-api-compression=false
	wc, err := client.New(wcfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	t := newPCRTracker(n)
	if err := watchPCRs(ctx, p.cfg, t); err != nil {
		return nil, err
	}

	type filedPCR struct {
		pcr    *certificatesv1.PodCertificateRequest
		status certificatesv1.PodCertificateRequestStatus
	}
	created := make(chan filedPCR, n)
	byPod := make(map[types.UID]certificatesv1.PodCertificateRequestStatus, n)
	for i, rq := range reqs {
		byPod[rq.pcr.Spec.PodUID] = statuses[i]
	}
	var filedAt sync.Map // the writes-alone run times from the first write, not from filing
	file := func() error {
		return fileRequests(ctx, p.client, reqs, func(pcr *certificatesv1.PodCertificateRequest, at time.Time) {
			if stream {
				t.filed(pcr, at)
			} else {
				filedAt.Store(pcr.Name, at)
			}
			created <- filedPCR{pcr: pcr, status: byPod[pcr.Spec.PodUID]}
		})
	}
	var (
		start     time.Time
		fileErr   error
		filedDone = make(chan struct{})
	)
	if stream {
		start = time.Now()
		go func() {
			defer close(filedDone)
			fileErr = file()
			close(created)
		}()
	} else {
		if err := file(); err != nil {
			return nil, err
		}
		close(created)
		close(filedDone)
		start = time.Now()
		filedAt.Range(func(k, _ any) bool {
			t.filed(&certificatesv1.PodCertificateRequest{ObjectMeta: metav1.ObjectMeta{Name: k.(string)}}, start)
			return true
		})
	}
	var (
		wg       sync.WaitGroup
		once     sync.Once
		writeErr error
	)
	for range signerWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range created {
				f.pcr.Status = f.status
				setIssued(f.pcr)
				if err := wc.Status().Update(ctx, f.pcr); err != nil {
					once.Do(func() { writeErr = fmt.Errorf("status of %s: %w", f.pcr.Name, err) })
				}
			}
		}()
	}
	wg.Wait()
	<-filedDone
	if fileErr != nil {
		return nil, fileErr
	}
	if writeErr != nil {
		return nil, writeErr
	}
	if err := awaitPCRs(ctx, t, nil, o.timeout); err != nil {
		return nil, err
	}
	r := &identityResult{n: n}
	if err := t.result(r, start); err != nil {
		return nil, err
	}
	return r, nil
}

// presign issues every request's leaf with a CA of the bench's, as the signer
// would (same lifetime), and returns the status the signer would write for it,
// but for the Issued condition, which setIssued adds to the created request.
func presign(reqs []*certRequest) ([]certificatesv1.PodCertificateRequestStatus, error) {
	now := time.Now()
	ca, err := identity.GenerateCA("cluster.local", now)
	if err != nil {
		return nil, err
	}
	out := make([]certificatesv1.PodCertificateRequestStatus, len(reqs))
	for i, rq := range reqs {
		id := identity.SPIFFEID("cluster.local", rq.pcr.Namespace, rq.pcr.Spec.ServiceAccountName)
		leaf, err := ca.Issue(rq.key.Public(), id, time.Duration(*rq.pcr.Spec.MaxExpirationSeconds)*time.Second, now)
		if err != nil {
			return nil, err
		}
		out[i] = certificatesv1.PodCertificateRequestStatus{
			CertificateChain: leaf.ChainPEM,
			NotBefore:        &metav1.Time{Time: leaf.NotBefore},
			NotAfter:         &metav1.Time{Time: leaf.NotAfter},
			BeginRefreshAt:   &metav1.Time{Time: leaf.BeginRefreshAt},
			Conditions: []metav1.Condition{{
				Type: certificatesv1.PodCertificateRequestConditionTypeIssued, Status: metav1.ConditionTrue,
				Reason: "Issued", Message: id,
			}},
		}
	}
	return out, nil
}

// setIssued stamps the Issued condition as the signer's setPCRCondition does:
// the request's generation, and now as the transition time.
func setIssued(pcr *certificatesv1.PodCertificateRequest) {
	for i := range pcr.Status.Conditions {
		pcr.Status.Conditions[i].ObservedGeneration = pcr.Generation
		pcr.Status.Conditions[i].LastTransitionTime = metav1.Now()
	}
}

// identityPlane is the control plane both identity runs start from: the bench's
// node (the requests name it) and request paths already warm.
func identityPlane(ctx context.Context, o options) (*plane, types.UID, error) {
	p, err := startPlane(o)
	if err != nil {
		return nil, "", err
	}
	nodeUID, err := createNode(ctx, p.client)
	if err == nil {
		if err = identityWarmUp(ctx, p, o, nodeUID); err != nil {
			err = fmt.Errorf("warming up the request paths: %w", err)
		}
	}
	if err != nil {
		p.stop()
		return nil, "", err
	}
	return p, nodeUID, nil
}

// identityWarmUp sends one of each request kind of the identity runs (a Pod
// create, a PodCertificateRequest create and its Issued status write) in the
// warm-up namespace and deletes what it made, so no run pays their first-use
// costs on a fresh API server.
func identityWarmUp(ctx context.Context, p *plane, o options, nodeUID types.UID) error {
	const ns = "warmup"
	ms := meshService("warm-id")
	ms.Namespace = ns
	cfg, err := sidecarFiles(ms, nil, nil)
	if err != nil {
		return err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: objects.ServiceAccountName(ms)}}
	if err := p.client.Create(ctx, sa); err != nil {
		return err
	}
	tmpl := objects.Deployment(ms, objects.ResolveSidecar(objects.DefaultSidecar(o.envoyImage), nil), cfg.BootstrapHash, true).Spec.Template
	pods, err := createPods(ctx, p.client, podsOf(ms, &tmpl, 1))
	if err != nil {
		return err
	}
	reqs, err := kubeletRequests(pods, map[string]types.UID{sa.Name: sa.UID}, nodeUID)
	if err != nil {
		return err
	}
	statuses, err := presign(reqs)
	if err != nil {
		return err
	}
	pcr := reqs[0].pcr.DeepCopy()
	if err := p.client.Create(ctx, pcr); err != nil {
		return err
	}
	pcr.Status = statuses[0]
	setIssued(pcr)
	if err := p.client.Status().Update(ctx, pcr); err != nil {
		return fmt.Errorf("issuing: %w", err)
	}
	for _, obj := range []client.Object{pcr, pods[0], sa} {
		if err := p.client.Delete(ctx, obj); err != nil {
			return fmt.Errorf("deleting %T: %w", obj, err)
		}
	}
	return nil
}
