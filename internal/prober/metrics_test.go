package prober

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	switch {
	case out.Counter != nil:
		return out.Counter.GetValue()
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	case out.Histogram != nil:
		return float64(out.Histogram.GetSampleCount())
	}
	t.Fatalf("unexpected metric %v", &out)
	return 0
}

func TestSweepUpdatesMetrics(t *testing.T) {
	port := statusPort(t)
	sidecar(t, "127.0.0.2", port)
	// Nothing listens at 127.0.0.3.
	p, _ := newProber(t, port, Options{}, pod(ns, "live", "cart", "127.0.0.2"), pod(ns, "refused", "cart", "127.0.0.3"))
	// A second Prober must not register the metrics again (that would panic).
	newProber(t, port, Options{})

	errorsBefore, sweepsBefore := value(t, probeErrors), value(t, sweepDuration)
	sweep(p)

	if got := value(t, probeErrors) - errorsBefore; got != 1 {
		t.Errorf("probe errors grew by %v, want 1", got)
	}
	if got := value(t, sweepDuration) - sweepsBefore; got != 1 {
		t.Errorf("sweep durations observed %v times, want 1", got)
	}
	for state, want := range map[string]float64{"live": 1, "unreachable": 1, "draining": 0, "initializing": 0, "pre_initializing": 0} {
		if got := value(t, sidecars.WithLabelValues("service", state)); got != want {
			t.Errorf("sidecars{state=%q} = %v, want %v", state, got, want)
		}
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	for _, f := range families {
		registered[f.GetName()] = true
	}
	for _, name := range []string{"envoymesh_prober_sweep_duration_seconds", "envoymesh_prober_sidecars", "envoymesh_prober_probe_errors_total"} {
		if !registered[name] {
			t.Errorf("%s is not in the controller-runtime registry", name)
		}
	}
}
