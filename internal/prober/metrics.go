package prober

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
)

var (
	// Every prober metric has a kind label, "service" (MeshService sidecars) or "gateway"
	// (a ServiceMesh's gateway Envoys): the two probers sweep independently.
	sweepDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "envoymesh_prober_sweep_duration_seconds",
		Help: "Time one sweep took to list and probe every running Envoy of its kind (service sidecar or gateway).",
		// From 10ms to about 20s: a sweep is bounded by Timeout × ceil(pods/Concurrency).
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
	}, []string{"kind"})
	sidecars = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "envoymesh_prober_sidecars",
		Help: "Envoys by kind (service sidecar or gateway) and the state the last sweep observed.",
	}, []string{"kind", "state"})
	probeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "envoymesh_prober_probe_errors_total",
		Help: "Probes of an Envoy, by kind (service sidecar or gateway), that failed (the pod is reported Unreachable).",
	}, []string{"kind"})
)

// gaugeStates are the states the sidecars gauge always reports, zero included, so a state that
// empties shows 0 rather than its last value.
var gaugeStates = []string{
	envoyadmin.StateLive,
	envoyadmin.StateDraining,
	envoyadmin.StatePreInitializing,
	envoyadmin.StateInitializing,
	StateUnreachable,
}

var registerOnce sync.Once

// registerMetrics registers with the manager's registry once per process, since tests build many
// Probers and a second registration would panic.
func registerMetrics() {
	registerOnce.Do(func() {
		metrics.Registry.MustRegister(sweepDuration, sidecars, probeErrors)
	})
}

// initMetrics creates kind's error series, so it reads 0 rather than being absent until the
// first failed probe.
func initMetrics(kind string) {
	probeErrors.WithLabelValues(kind)
}

func setSidecars(kind string, counts map[string]int) {
	for _, state := range gaugeStates {
		sidecars.WithLabelValues(kind, strings.ToLower(state)).Set(float64(counts[state]))
	}
}
