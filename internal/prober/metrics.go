package prober

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
)

var (
	sweepDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "envoymesh_prober_sweep_duration_seconds",
		Help: "Time one sweep took to list and probe every running meshed pod.",
		// From 10ms to about 20s: a sweep is bounded by Timeout × ceil(pods/Concurrency).
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
	})
	sidecars = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "envoymesh_prober_sidecars",
		Help: "Envoys by kind (service sidecar or gateway) and the state the last sweep observed.",
	}, []string{"kind", "state"})
	probeErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "envoymesh_prober_probe_errors_total",
		Help: "Probes of a sidecar that failed (the pod is reported Unreachable).",
	})
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

func setSidecars(kind string, counts map[string]int) {
	for _, state := range gaugeStates {
		sidecars.WithLabelValues(kind, strings.ToLower(state)).Set(float64(counts[state]))
	}
}
