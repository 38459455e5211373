package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// The memory scenario: the manager's memory with N MeshServices converged, in
// an otherwise empty cluster and in one that also holds U unrelated Deployments,
// Services and ConfigMaps of each kind, of realistic size, created before the
// manager starts (most in other namespaces, some in the MeshServices' own). The
// operator caches only what it writes, so the second should cost about what
// the first does (target ≤ 1.10 ×).

// memoryNamespaces is how many other namespaces the unrelated objects spread
// over; one in memoryInBench of them goes to the bench namespace instead.
const (
	memoryNamespaces = 10
	memoryInBench    = 5
)

// memoryResult is one memory run.
type memoryResult struct {
	n, unrelated int
	// unrelatedCreate is how long the unrelated objects took to create.
	unrelatedCreate time.Duration
	// sync is from the manager's start to its workers' (its caches synced).
	sync time.Duration
	// converge is from the first create of a MeshService to the last converged.
	converge time.Duration
	// peakRSS (VmHWM) and rss (VmRSS) at the end; heap is the Go heap in use
	// right after a forced garbage collection: what the manager holds.
	peakRSS, rss, heap int64
	// The manager's API requests by method over the whole run, and over a
	// reconcile of every MeshService with nothing to change (steady).
	requests, steady map[string]float64
	steadyReconciles float64
}

// unrelatedSizes are the JSON sizes of what a memory run with unrelated objects
// created: one Deployment's pod template, the ConfigMaps' data (smallest and
// largest), one Service.
type unrelatedSizes struct {
	podTemplate, deployment, service int
	configMapMin, configMapMax       int
}

func memoryRun(ctx context.Context, o options, n, unrelated, run int) (*memoryResult, error) {
	// Realistic Services have cluster IPs: envtest's default range (a /24) holds
	// 254 of them.
	o.serviceCIDR = "10.96.0.0/16"
	p, err := startPlane(o)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	r := &memoryResult{n: n, unrelated: unrelated}
	if unrelated > 0 {
		start := time.Now()
		if err := createUnrelated(ctx, p, unrelated); err != nil {
			return nil, err
		}
		r.unrelatedCreate = time.Since(start)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	m, err := startManager(o, p, fmt.Sprintf("memory-n%d-u%d-run%d", n, unrelated, run+1))
	if err != nil {
		return nil, err
	}
	defer m.stop()
	r.sync = time.Since(start)

	t := newTracker(n, workloadConverged)
	if err := watchWith(ctx, p.cfg, &meshv1alpha1.MeshService{}, t.observe); err != nil {
		return nil, err
	}
	start = time.Now()
	if err := createAll(ctx, p.client, workload(n)); err != nil {
		return nil, err
	}
	if err := await(ctx, t, m, o.timeout); err != nil {
		if errors.Is(err, errTimeout) {
			logf("memory N=%d U=%d: %d/%d converged after %s", n, unrelated, t.count(), n, o.timeout)
		}
		return nil, err
	}
	r.converge = slices.MaxFunc(t.times(), func(a, b time.Time) int { return a.Compare(b) }).Sub(start)
	if err := checkOwned(ctx, p.client, n); err != nil {
		return nil, err
	}
	before, err := quiet(ctx, m)
	if err != nil {
		return nil, err
	}
	r.requests = byMethod(before)

	// Steady state: a ServiceMesh "default" appears, every MeshService names it,
	// and each reconciles once more with every object it owns in place. Those
	// reconciles must read only the cache.
	if err := p.client.Create(ctx, &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: "default"}}); err != nil {
		return nil, err
	}
	after, err := quietAfter(ctx, m, reconciles(before)+float64(n))
	if err != nil {
		return nil, err
	}
	r.steadyReconciles = reconciles(after) - reconciles(before)
	r.steady = map[string]float64{}
	for method, v := range byMethod(after) {
		r.steady[method] = v - r.requests[method]
	}

	if r.heap, err = liveHeap(m); err != nil {
		return nil, err
	}
	if r.peakRSS, r.rss, err = m.memory(); err != nil {
		return nil, err
	}
	logf("memory N=%d U=%d run %d: peak RSS %.1f MiB, RSS %.1f MiB, live heap %.1f MiB; unrelated created in %.2fs, caches synced %.2fs after start, converged %.2fs; requests %s; steady (%.0f reconciles) %s",
		n, unrelated, run+1, mib(r.peakRSS), mib(r.rss), mib(r.heap), r.unrelatedCreate.Seconds(), r.sync.Seconds(), r.converge.Seconds(),
		fmtMetrics(r.requests), r.steadyReconciles, fmtMetrics(r.steady))
	return r, nil
}

// memoryMetrics are the series the memory scenario reads.
var memoryMetrics = map[string]string{
	"rest_client_requests_total":         "method",
	"controller_runtime_reconcile_total": "controller",
	"go_memstats_heap_inuse_bytes":       "",
}

func reconciles(m map[string]float64) float64 {
	return m["controller_runtime_reconcile_total{meshservice}"]
}

func byMethod(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if method, ok := strings.CutPrefix(k, "rest_client_requests_total{"); ok {
			out[strings.TrimSuffix(method, "}")] = v
		}
	}
	return out
}

// quiet waits until the manager has reconciled nothing for two seconds, and
// returns its metrics then.
func quiet(ctx context.Context, m *managerProc) (map[string]float64, error) {
	return quietAfter(ctx, m, 0)
}

// quietAfter waits until the manager's MeshService reconciles have reached
// atLeast and then stayed put for two seconds.
func quietAfter(ctx context.Context, m *managerProc, atLeast float64) (map[string]float64, error) {
	deadline := time.Now().Add(3 * time.Minute)
	var last map[string]float64
	stable := 0
	for time.Now().Before(deadline) {
		if err := m.alive(); err != nil {
			return nil, err
		}
		cur, err := m.metrics(memoryMetrics)
		if err != nil {
			return nil, err
		}
		if last != nil && reconciles(cur) >= atLeast && reconciles(cur) == reconciles(last) && byMethod(cur)["PATCH"] == byMethod(last)["PATCH"] {
			if stable++; stable >= 4 {
				return cur, nil
			}
		} else {
			stable = 0
		}
		last = cur
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("the manager did not go quiet (MeshService reconciles %.0f, want at least %.0f)", reconciles(last), atLeast)
}

// liveHeap forces a garbage collection in the manager (its pprof heap endpoint
// with gc=1) and reads the heap in use right after.
func liveHeap(m *managerProc) (int64, error) {
	resp, err := http.Get("http://" + m.pprofAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("pprof heap: %s", resp.Status)
	}
	cur, err := m.metrics(memoryMetrics)
	if err != nil {
		return 0, err
	}
	return int64(cur["go_memstats_heap_inuse_bytes"]), nil
}

// createUnrelated creates u Deployments, u Services and u ConfigMaps that the
// operator has nothing to do with, spread over memoryNamespaces namespaces and
// the bench namespace, createWorkers at a time.
func createUnrelated(ctx context.Context, p *plane, u int) error {
	for i := range memoryNamespaces {
		if err := p.namespace(ctx, teamNamespace(i)); err != nil {
			return err
		}
	}
	objs := make(chan client.Object)
	errs := make(chan error, createWorkers)
	var wg sync.WaitGroup
	for range createWorkers {
		wg.Go(func() {
			for obj := range objs {
				if err := p.client.Create(ctx, obj); err != nil {
					select {
					case errs <- fmt.Errorf("creating %T %s/%s: %w", obj, obj.GetNamespace(), obj.GetName(), err):
					default:
					}
				}
			}
		})
	}
	for i := range u {
		ns, name := unrelatedPlace(i)
		objs <- unrelatedDeployment(ns, name, i)
		objs <- unrelatedService(ns, name)
		objs <- unrelatedConfigMap(ns, name, i)
	}
	close(objs)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func teamNamespace(i int) string { return "team-" + strconv.Itoa(i) }

// unrelatedPlace is where the i-th unrelated object of each kind goes: every
// memoryInBench-th beside the MeshServices (named so as never to collide with
// them), the others round the team namespaces.
func unrelatedPlace(i int) (ns, name string) {
	name = "app-" + strconv.Itoa(i)
	if i%memoryInBench == 0 {
		return benchNamespace, name
	}
	return teamNamespace(i % memoryNamespaces), name
}

// unrelatedLabels are what a Helm chart puts on its objects: among them
// app.kubernetes.io/managed-by, the label the operator selects on, with a value
// that is not ours.
func unrelatedLabels(name string) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":       name,
		"app.kubernetes.io/instance":   name + "-prod",
		"app.kubernetes.io/version":    "2.14.3",
		"app.kubernetes.io/component":  "backend",
		"app.kubernetes.io/part-of":    "storefront",
		"app.kubernetes.io/managed-by": "Helm",
		"helm.sh/chart":                name + "-2.14.3",
	}
}

func unrelatedSelector(name string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name + "-prod"}
}

// unrelatedDeployment is a Deployment as a Helm chart writes one: an app
// container with env, probes, resources and mounts, a log-shipping sidecar,
// volumes, affinity, tolerations and spread constraints; its pod template is
// about 4 KB of JSON.
func unrelatedDeployment(ns, name string, i int) *appsv1.Deployment {
	env := []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "DATABASE_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name + "-db"}, Key: "password"}}},
		{Name: "DATABASE_URL", Value: "postgres://" + name + "@postgres.databases.svc.cluster.local:5432/" + name + "?sslmode=require"},
		{Name: "REDIS_URL", Value: "redis://redis-master.cache.svc.cluster.local:6379/0"},
		{Name: "LOG_LEVEL", Value: "info"},
		{Name: "LOG_FORMAT", Value: "json"},
		{Name: "HTTP_PORT", Value: "8080"},
		{Name: "METRICS_PORT", Value: "9090"},
		{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Value: "http://otel-collector.observability.svc.cluster.local:4317"},
		{Name: "OTEL_SERVICE_NAME", Value: name},
		{Name: "FEATURE_FLAGS", Value: "checkout-v2,fast-search,new-pricing"},
		{Name: "JAVA_OPTS", Value: "-XX:MaxRAMPercentage=75 -XX:+UseG1GC -Dfile.encoding=UTF-8"},
	}
	probe := func(path string, delay int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http")}},
			InitialDelaySeconds: delay, PeriodSeconds: 10, TimeoutSeconds: 2, FailureThreshold: 3, SuccessThreshold: 1,
		}
	}
	resources := func(cpu, mem string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(mem)},
		}
	}
	restricted := &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true), RunAsNonRoot: ptr.To(true),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
	labels, selector := unrelatedLabels(name), unrelatedSelector(name)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, Labels: labels,
			Annotations: map[string]string{"meta.helm.sh/release-name": name + "-prod", "meta.helm.sh/release-namespace": ns},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas:             ptr.To[int32](2),
			RevisionHistoryLimit: ptr.To[int32](5),
			Selector:             &metav1.LabelSelector{MatchLabels: selector},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxUnavailable: ptr.To(intstr.FromInt32(0)), MaxSurge: ptr.To(intstr.FromString("25%")),
			}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels: labels,
					Annotations: map[string]string{
						"checksum/config":      fmt.Sprintf("%064x", i),
						"prometheus.io/scrape": "true", "prometheus.io/port": "9090", "prometheus.io/path": "/metrics",
					},
				},
				Spec: corev1.PodSpec{
					ServiceAccountName:            name,
					TerminationGracePeriodSeconds: ptr.To[int64](45),
					SecurityContext:               &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](10001), FSGroup: ptr.To[int64](10001), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					Containers: []corev1.Container{
						{
							Name: "app", Image: "registry.example.com/storefront/" + name + ":2.14.3",
							Args:  []string{"--config=/etc/app/application.properties", "--port=8080"},
							Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "metrics", ContainerPort: 9090}},
							Env:   env, Resources: resources("250m", "512Mi"),
							LivenessProbe: probe("/healthz", 30), ReadinessProbe: probe("/ready", 5), StartupProbe: probe("/healthz", 0),
							VolumeMounts: []corev1.VolumeMount{
								{Name: "config", MountPath: "/etc/app", ReadOnly: true},
								{Name: "tls", MountPath: "/etc/tls", ReadOnly: true},
								{Name: "tmp", MountPath: "/tmp"},
								{Name: "logs", MountPath: "/var/log/app"},
							},
							SecurityContext: restricted,
						},
						{
							Name: "log-shipper", Image: "registry.example.com/platform/fluent-bit:3.1.4",
							Args:            []string{"-c", "/fluent-bit/etc/fluent-bit.conf"},
							Env:             []corev1.EnvVar{{Name: "SERVICE", Value: name}, {Name: "LOKI_URL", Value: "http://loki-gateway.observability.svc.cluster.local/loki/api/v1/push"}},
							Resources:       resources("20m", "64Mi"),
							VolumeMounts:    []corev1.VolumeMount{{Name: "logs", MountPath: "/var/log/app", ReadOnly: true}},
							SecurityContext: restricted,
						},
					},
					Volumes: []corev1.Volume{
						{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}},
						{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: name + "-tls"}}},
						{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("256Mi"))}}},
						{Name: "logs", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{
							LabelSelector: &metav1.LabelSelector{MatchLabels: selector}, TopologyKey: "kubernetes.io/hostname",
						}}},
					}},
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{
						MaxSkew: 1, TopologyKey: "topology.kubernetes.io/zone", WhenUnsatisfiable: corev1.ScheduleAnyway,
						LabelSelector: &metav1.LabelSelector{MatchLabels: selector},
					}},
					Tolerations: []corev1.Toleration{
						{Key: "workload", Operator: corev1.TolerationOpEqual, Value: "storefront", Effect: corev1.TaintEffectNoSchedule},
						{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
					},
				},
			},
		},
	}
}

// unrelatedService is a ClusterIP Service with an HTTP and a metrics port.
func unrelatedService(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name, Labels: unrelatedLabels(name),
			Annotations: map[string]string{"meta.helm.sh/release-name": name + "-prod", "meta.helm.sh/release-namespace": ns},
		},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: unrelatedSelector(name),
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
				{Name: "metrics", Port: 9090, TargetPort: intstr.FromString("metrics"), Protocol: corev1.ProtocolTCP},
			},
		},
	}
}

// unrelatedConfigMap is an application's configuration: 2 to 10 KiB of
// properties, depending on i.
func unrelatedConfigMap(ns, name string, i int) *corev1.ConfigMap {
	size := (2 + i%9) * 1024
	var b strings.Builder
	for k := 0; b.Len() < size; k++ {
		fmt.Fprintf(&b, "storefront.%s.setting-%03d=value-%d-%x\n", name, k, k, k*7919+i)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: unrelatedLabels(name)},
		Data:       map[string]string{"application.properties": b.String()[:size]},
	}
}

// measureUnrelated weighs the unrelated objects as JSON.
func measureUnrelated(u int) unrelatedSizes {
	size := func(v any) int {
		b, err := json.Marshal(v)
		if err != nil {
			return 0
		}
		return len(b)
	}
	dep := unrelatedDeployment("team-1", "app-1", 1)
	s := unrelatedSizes{
		podTemplate: size(dep.Spec.Template),
		deployment:  size(dep),
		service:     size(unrelatedService("team-1", "app-1")),
	}
	for i := range min(u, 9) {
		n := len(unrelatedConfigMap("team-1", "app-1", i).Data["application.properties"])
		if s.configMapMin == 0 || n < s.configMapMin {
			s.configMapMin = n
		}
		s.configMapMax = max(s.configMapMax, n)
	}
	return s
}

// memoryRows are the memory scenario's lines of the main table.
func (r *results) memoryRows(w func(string, ...any)) {
	empty, full := r.memory[0], r.memory[r.opts.memoryUnrelated]
	if len(empty) == 0 && len(full) == 0 {
		return
	}
	n, u := r.opts.memoryN, r.opts.memoryUnrelated
	figures := func(runs []*memoryResult, f func(*memoryResult) int64) []float64 {
		var v []float64
		for _, x := range runs {
			v = append(v, mib(f(x)))
		}
		return v
	}
	for _, m := range []struct {
		what   string
		f      func(*memoryResult) int64
		target bool
	}{
		{"peak RSS (VmHWM)", func(x *memoryResult) int64 { return x.peakRSS }, true},
		{"RSS (VmRSS) at the end", func(x *memoryResult) int64 { return x.rss }, false},
		{"Go heap in use after a forced GC", func(x *memoryResult) int64 { return x.heap }, false},
	} {
		e, f := figures(empty, m.f), figures(full, m.f)
		w("| Manager memory, N=%d MeshServices, empty cluster: %s | %.1f MiB | %s | |\n", n, m.what, median(e), list(e, "%.1f"))
		w("| Manager memory, N=%d MeshServices, with %d unrelated Deployments, Services and ConfigMaps each: %s | %.1f MiB | %s | |\n", n, u, m.what, median(f), list(f, "%.1f"))
		if len(e) == 0 || len(f) == 0 {
			continue
		}
		var ratios []float64
		for i := range min(len(e), len(f)) {
			ratios = append(ratios, f[i]/e[i])
		}
		ratio, target := median(f)/median(e), ""
		if m.target {
			target = "≤ 1.10: " + verdict(ratio <= 1.10)
		}
		w("| Manager memory, N=%d: %s with %d unrelated of each kind / empty cluster | %.2f | %s | %s |\n", n, m.what, u, ratio, list(ratios, "%.2f"), target)
	}
}

// memoryWork explains the memory runs: what was created, how long the caches
// took, and what the manager asked the API server.
func (r *results) memoryWork(w func(string, ...any)) {
	if len(r.memory) == 0 {
		return
	}
	n, u := r.opts.memoryN, r.opts.memoryUnrelated
	sz := measureUnrelated(u)
	w("\nThe memory runs (medians): N=%d MeshServices created after the manager started; the unrelated objects created before it, 1 in %d in the MeshServices' namespace and the others spread over %d more (a Deployment %d B of JSON, its pod template %d B; a ClusterIP Service with 2 ports %d B; ConfigMaps of %d–%d B of data). Requests are the manager's, per MeshService; steady is a reconcile of every MeshService with all it owns in place (a ServiceMesh they name appears):\n\n",
		n, memoryInBench, memoryNamespaces, sz.deployment, sz.podTemplate, sz.service, sz.configMapMin, sz.configMapMax)
	w("| unrelated of each kind | created in | caches synced after start | converged | API requests per MeshService | steady: reconciles per MeshService, requests per MeshService |\n|---|---|---|---|---|---|\n")
	for _, k := range sortedKeys(r.memory) {
		var create, sync, conv, steadyRec []float64
		req, steady := map[string][]float64{}, map[string][]float64{}
		for _, x := range r.memory[k] {
			create = append(create, x.unrelatedCreate.Seconds())
			sync = append(sync, x.sync.Seconds())
			conv = append(conv, x.converge.Seconds())
			steadyRec = append(steadyRec, x.steadyReconciles/float64(n))
			for m, v := range x.requests {
				req[m] = append(req[m], v/float64(n))
			}
			for m, v := range x.steady {
				steady[m] = append(steady[m], v/float64(n))
			}
		}
		perMethod := func(by map[string][]float64) string {
			methods := make([]string, 0, len(by))
			for m := range by {
				methods = append(methods, m)
			}
			slices.Sort(methods)
			var parts []string
			for _, m := range methods {
				parts = append(parts, fmt.Sprintf("%s %.2f", m, median(by[m])))
			}
			return strings.Join(parts, ", ")
		}
		w("| %d | %.1f s | %.1f s | %.2f s | %s | %.2f: %s |\n", k, median(create), median(sync), median(conv), perMethod(req), median(steadyRec), perMethod(steady))
	}
}
