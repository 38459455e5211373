package prober

import (
	"testing"

	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// sample reads the series of metric name whose labels are exactly labels from the
// controller-runtime registry, as a scrape would: a counter's or gauge's value, a
// histogram's sample count; 0 when there is no such series.
func sample(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !sameLabels(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
			t.Fatalf("unexpected metric %v", m)
		}
	}
	return 0
}

func sameLabels(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
			return false
		}
	}
	return true
}

const (
	sweepDurationName = "envoymesh_prober_sweep_duration_seconds"
	sidecarsName      = "envoymesh_prober_sidecars"
	probeErrorsName   = "envoymesh_prober_probe_errors_total"
)

func kindLabel(kind string) map[string]string { return map[string]string{"kind": kind} }

func TestSweepUpdatesMetrics(t *testing.T) {
	port := statusPort(t)
	sidecar(t, "127.0.0.2", port)
	// Nothing listens at 127.0.0.3.
	p, _ := newProber(t, port, Options{}, pod(ns, "live", "cart", "127.0.0.2"), pod(ns, "refused", "cart", "127.0.0.3"))
	// A second Prober must not register the metrics again (that would panic).
	newProber(t, port, Options{})

	errorsBefore := sample(t, probeErrorsName, kindLabel("service"))
	sweepsBefore := sample(t, sweepDurationName, kindLabel("service"))
	sweep(p)

	if got := sample(t, probeErrorsName, kindLabel("service")) - errorsBefore; got != 1 {
		t.Errorf(`probe errors{kind="service"} grew by %v, want 1`, got)
	}
	if got := sample(t, sweepDurationName, kindLabel("service")) - sweepsBefore; got != 1 {
		t.Errorf(`sweep durations{kind="service"} observed %v times, want 1`, got)
	}
	for state, want := range map[string]float64{"live": 1, "unreachable": 1, "draining": 0, "initializing": 0, "pre_initializing": 0} {
		if got := sample(t, sidecarsName, map[string]string{"kind": "service", "state": state}); got != want {
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
	for _, name := range []string{sweepDurationName, sidecarsName, probeErrorsName} {
		if !registered[name] {
			t.Errorf("%s is not in the controller-runtime registry", name)
		}
	}
}

// TestMetricsHaveKind checks that a gateway prober's sweeps and errors are counted under
// kind="gateway" and leave the service series alone, so the two probers can be told apart.
func TestMetricsHaveKind(t *testing.T) {
	port := statusPort(t)
	// Nothing listens at 127.0.0.50: the gateway is unreachable.
	gw := pod(ns, "default-gateway-x", "-", "127.0.0.50")
	gw.Labels = map[string]string{objects.GatewayLabel: "default"}
	gateways, _ := newProber(t, port, Options{OwnerLabel: objects.GatewayLabel}, []client.Object{gw}...)

	before := map[string]map[string]float64{}
	for _, kind := range []string{"service", "gateway"} {
		before[kind] = map[string]float64{
			probeErrorsName:   sample(t, probeErrorsName, kindLabel(kind)),
			sweepDurationName: sample(t, sweepDurationName, kindLabel(kind)),
		}
	}
	sweep(gateways)

	for _, c := range []struct {
		kind, name string
		want       float64
	}{
		{"gateway", probeErrorsName, 1},
		{"gateway", sweepDurationName, 1},
		{"service", probeErrorsName, 0},
		{"service", sweepDurationName, 0},
	} {
		if got := sample(t, c.name, kindLabel(c.kind)) - before[c.kind][c.name]; got != c.want {
			t.Errorf("%s{kind=%q} grew by %v, want %v", c.name, c.kind, got, c.want)
		}
	}
	if got := sample(t, sidecarsName, map[string]string{"kind": "gateway", "state": "unreachable"}); got != 1 {
		t.Errorf(`sidecars{kind="gateway",state="unreachable"} = %v, want 1`, got)
	}
}
