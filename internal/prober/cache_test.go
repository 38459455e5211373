package prober

import (
	"testing"
	"time"

	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
)

func TestSameObservationIgnoresOnlyProbeTime(t *testing.T) {
	base := PodObservation{
		Pod: "cart-0", State: envoyadmin.StateLive, EnvoyVersion: "1.36.2",
		LDSVersion: "v1", CDSVersion: "v1", LDSRejected: 1, CDSRejected: 1,
		Clusters:          []envoyadmin.ClusterHealth{{Name: "db", Hosts: 2, Healthy: 2}},
		CertificateExpiry: time.Unix(86400, 0).UTC(),
		Denied:            3,
		AuditDenied:       4,
		LastProbeTime:     time.Unix(100, 0),
	}
	for _, tc := range []struct {
		name   string
		change func(*PodObservation)
		same   bool
	}{
		{"probe time", func(o *PodObservation) { o.LastProbeTime = o.LastProbeTime.Add(time.Minute) }, true},
		{"pod", func(o *PodObservation) { o.Pod = "cart-1" }, false},
		{"state", func(o *PodObservation) { o.State = envoyadmin.StateDraining }, false},
		{"envoy version", func(o *PodObservation) { o.EnvoyVersion = "1.37.0" }, false},
		{"lds version", func(o *PodObservation) { o.LDSVersion = "v2" }, false},
		{"cds version", func(o *PodObservation) { o.CDSVersion = "v2" }, false},
		{"lds rejected", func(o *PodObservation) { o.LDSRejected++ }, false},
		{"cds rejected", func(o *PodObservation) { o.CDSRejected++ }, false},
		{"host health", func(o *PodObservation) { o.Clusters = []envoyadmin.ClusterHealth{{Name: "db", Hosts: 2, Healthy: 1}} }, false},
		{"clusters gone", func(o *PodObservation) { o.Clusters = nil }, false},
		{"error", func(o *PodObservation) { o.Error = "refused" }, false},
		{"certificate expiry in another zone", func(o *PodObservation) { o.CertificateExpiry = o.CertificateExpiry.In(time.FixedZone("x", 3600)) }, true},
		{"certificate rotated", func(o *PodObservation) { o.CertificateExpiry = o.CertificateExpiry.Add(12 * time.Hour) }, false},
		{"certificate gone", func(o *PodObservation) { o.CertificateExpiry = time.Time{} }, false},
		{"denied", func(o *PodObservation) { o.Denied++ }, false},
		{"audit denied", func(o *PodObservation) { o.AuditDenied++ }, false},
	} {
		changed := base
		changed.Clusters = append([]envoyadmin.ClusterHealth(nil), base.Clusters...)
		tc.change(&changed)
		if got := sameObservation(base, changed); got != tc.same {
			t.Errorf("%s changed: sameObservation = %v, want %v", tc.name, got, tc.same)
		}
	}
}

func TestTrackRejections(t *testing.T) {
	live := func(v string, rejected uint64) PodObservation {
		return PodObservation{Pod: "p", State: "LIVE", LDSVersion: v, CDSVersion: v, LDSRejected: rejected}
	}
	steps := []struct {
		name string
		obs  PodObservation
		want bool
	}{
		{"first seen with old rejections", live("v1", 3), false},
		{"same version, no new rejection", live("v1", 3), false},
		{"same version, the counter rises: a NACK", live("v1", 4), true},
		{"still rejecting", live("v1", 4), true},
		{"a new version loads: baseline resets", live("v2", 4), false},
		{"unreachable", PodObservation{Pod: "p", State: StateUnreachable, Error: "refused"}, false},
		{"back with a rejection count from before", live("v2", 5), false},
	}
	var prev PodObservation
	var baseline uint64
	for _, s := range steps {
		got, b := trackRejections(prev, baseline, s.obs)
		if got.Rejecting != s.want {
			t.Fatalf("%s: Rejecting = %v, want %v", s.name, got.Rejecting, s.want)
		}
		prev, baseline = got, b
	}
}
