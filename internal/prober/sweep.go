package prober

import (
	"context"
	"net"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
)

// target is one pod to probe.
type target struct {
	owner types.NamespacedName
	pod   string
	url   string
}

// Sweep probes every running meshed pod once, replaces the cache with what they reported, and
// raises one event per owner (MeshService or, for gateways, ServiceMesh) whose pods changed. If
// listing fails or ctx ends mid-sweep the cache is left as it was: an API hiccup or a shutdown
// must not mark every sidecar unreachable.
func (p *Prober) Sweep(ctx context.Context) {
	p.sweepMu.Lock()
	defer p.sweepMu.Unlock()
	log := logf.FromContext(ctx).WithName("prober")
	start := time.Now()

	targets, err := p.targets(ctx)
	if err != nil {
		log.Error(err, "Listing meshed pods failed; keeping the last observations")
		return
	}
	results := p.probeAll(ctx, targets)
	if ctx.Err() != nil {
		return
	}

	kind := p.opts.kind()
	next := make(snapshot)
	for i, t := range targets {
		obs := results[i]
		if obs.Error != "" {
			probeErrors.WithLabelValues(kind).Inc()
			log.V(1).Info("Sidecar unreachable", "pod", types.NamespacedName{Namespace: t.owner.Namespace, Name: t.pod}, "error", obs.Error)
		}
		next.add(t.owner, obs)
	}
	p.notify.enqueue(p.cache.replace(next))
	setSidecars(kind, next.countStates())
	sweepDuration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
}

// targets lists the pods worth probing: running, with an IP, not being deleted, and naming their
// MeshService. Phase and IP are filtered here rather than with field selectors, which the cached
// client only supports for indexed fields.
func (p *Prober) targets(ctx context.Context) ([]target, error) {
	var pods corev1.PodList
	// The pods are only read, so the cache's objects are used as they are instead of deep copies.
	if err := p.reader.List(ctx, &pods, client.HasLabels{p.opts.OwnerLabel}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	port := strconv.Itoa(p.opts.Port)
	out := make([]target, 0, len(pods.Items))
	for i := range pods.Items {
		pod := &pods.Items[i]
		service := pod.Labels[p.opts.OwnerLabel]
		if service == "" || pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" || pod.DeletionTimestamp != nil {
			continue
		}
		out = append(out, target{
			owner: types.NamespacedName{Namespace: pod.Namespace, Name: service},
			pod:   pod.Name,
			url:   "http://" + net.JoinHostPort(pod.Status.PodIP, port),
		})
	}
	return out, nil
}

// probeAll probes targets with at most Concurrency workers; results[i] belongs to targets[i].
func (p *Prober) probeAll(ctx context.Context, targets []target) []PodObservation {
	results := make([]PodObservation, len(targets))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(p.opts.Concurrency, len(targets)) {
		wg.Go(func() {
			for i := range next {
				results[i] = p.probe(ctx, targets[i])
			}
		})
	}
	for i := range targets {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

// probe probes one pod under its own deadline, so a hung sidecar costs only its own Timeout.
func (p *Prober) probe(ctx context.Context, t target) PodObservation {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	obs, err := p.admin.Probe(ctx, t.url)
	now := time.Now()
	if err != nil {
		return PodObservation{Pod: t.pod, State: StateUnreachable, Error: err.Error(), LastProbeTime: now}
	}
	return observation(t.pod, obs, now)
}

func observation(pod string, obs envoyadmin.Observation, now time.Time) PodObservation {
	return PodObservation{
		Pod:               pod,
		State:             obs.State,
		EnvoyVersion:      obs.EnvoyVersion,
		LDSVersion:        obs.LDSVersion,
		CDSVersion:        obs.CDSVersion,
		LDSRejected:       obs.LDSRejected,
		CDSRejected:       obs.CDSRejected,
		Clusters:          obs.Clusters,
		CertificateExpiry: obs.CertificateExpiry,
		Denied:            obs.Denied,
		AuditDenied:       obs.AuditDenied,
		LastProbeTime:     now,
	}
}
