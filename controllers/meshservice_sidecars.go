package controllers

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
)

// maxProxies caps status.proxies; the counts in status.sidecars cover the rest.
const maxProxies = 20

// ConfigSynced reasons.
const (
	ReasonSynced      = "Synced"
	ReasonStale       = "Stale"
	ReasonRejected    = "Rejected"
	ReasonUnreachable = "Unreachable"
	ReasonNoSidecars  = "NoSidecars"
	// ReasonSidecarsNotReady is the Ready reason while the Deployment is available
	// but some sidecar is not live and synced.
	ReasonSidecarsNotReady = "SidecarsNotReady"
)

// ObservationSource is what the controller needs of the prober: the cached
// observations of a MeshService's sidecars. No network I/O happens behind it.
type ObservationSource interface {
	Observations(ms types.NamespacedName) []prober.PodObservation
}

// sidecarView is the sidecars' state as status reports it.
type sidecarView struct {
	counts    meshv1alpha1.SidecarCounts
	allSynced bool // every sidecar live and on the current version
}

// sidecars folds the prober's observations into status: counts, the capped
// proxies list, upstream endpoint health and the ConfigSynced condition.
func (b *statusBuilder) sidecars(obs []prober.PodObservation) sidecarView {
	want := b.status.ConfigVersion
	var v sidecarView
	b.status.Proxies = nil
	for _, o := range obs {
		synced := o.State == envoyadmin.StateLive && o.LDSVersion == want && o.CDSVersion == want
		rejected := !synced && o.Rejecting
		v.counts.Total++
		switch {
		case o.State == prober.StateUnreachable:
			v.counts.Unreachable++
		case o.State == envoyadmin.StateLive:
			v.counts.Live++
		}
		if synced {
			v.counts.Synced++
		}
		if rejected {
			v.counts.Rejected++
		}
		if len(b.status.Proxies) < maxProxies {
			b.status.Proxies = append(b.status.Proxies, proxyStatus(o, synced, rejected))
		}
	}
	// Every ready replica must have been probed: until then the sidecars are unknown.
	v.allSynced = v.counts.Synced == v.counts.Total && v.counts.Total >= b.status.ReadyReplicas
	b.status.Sidecars = &v.counts
	b.status.Synced = fmt.Sprintf("%d/%d", v.counts.Synced, v.counts.Total)
	b.upstreamHealth(obs, want)

	switch c := v.counts; {
	case c.Total == 0:
		b.setConditionStatus(meshv1alpha1.ConditionConfigSynced, metav1.ConditionUnknown, ReasonNoSidecars, "no running sidecar has been probed yet")
	case c.Rejected > 0:
		b.setCondition(meshv1alpha1.ConditionConfigSynced, false, ReasonRejected,
			fmt.Sprintf("%d of %d sidecars %s they keep serving their last accepted config", c.Rejected, c.Total, rejectedVersion(want)))
	case c.Unreachable > 0:
		b.setCondition(meshv1alpha1.ConditionConfigSynced, false, ReasonUnreachable,
			fmt.Sprintf("%d of %d sidecars did not answer on their status port", c.Unreachable, c.Total))
	case !v.allSynced:
		b.setCondition(meshv1alpha1.ConditionConfigSynced, false, ReasonStale,
			fmt.Sprintf("%d of %d sidecars run config version %s", c.Synced, c.Total, want))
	default:
		b.setCondition(meshv1alpha1.ConditionConfigSynced, true, ReasonSynced,
			fmt.Sprintf("all %d sidecars run config version %s", c.Total, want))
	}
	return v
}

// newlyRejected reports whether this status is the first to report a rejection
// of the current config version, so the Warning event is raised once per version.
func (b *statusBuilder) newlyRejected(prev []metav1.Condition) bool {
	cur := meta.FindStatusCondition(b.status.Conditions, meshv1alpha1.ConditionConfigSynced)
	if cur == nil || cur.Reason != ReasonRejected {
		return false
	}
	old := meta.FindStatusCondition(prev, meshv1alpha1.ConditionConfigSynced)
	return old == nil || old.Reason != ReasonRejected || !strings.Contains(old.Message, rejectedVersion(b.status.ConfigVersion))
}

func rejectedVersion(v string) string { return "rejected config version " + v + ";" }

// upstreamHealth fills each upstream's endpoint counts from the first synced
// sidecar's /clusters view (every replica resolves the same DNS names).
func (b *statusBuilder) upstreamHealth(obs []prober.PodObservation, want string) {
	var view []envoyadmin.ClusterHealth
	for _, o := range obs {
		if o.State == envoyadmin.StateLive && o.CDSVersion == want {
			view = o.Clusters
			break
		}
	}
	for i := range b.status.Upstreams {
		u := &b.status.Upstreams[i]
		u.HealthyEndpoints, u.Endpoints = 0, 0
		name := envoyconfig.UpstreamClusterName(u.Name, u.Namespace)
		for _, c := range view {
			if c.Name == name {
				u.HealthyEndpoints, u.Endpoints = int32(c.Healthy), int32(c.Hosts)
			}
		}
	}
}

func proxyStatus(o prober.PodObservation, synced, rejected bool) meshv1alpha1.ProxyStatus {
	version := o.LDSVersion
	if o.CDSVersion != o.LDSVersion {
		version = fmt.Sprintf("lds=%s,cds=%s", o.LDSVersion, o.CDSVersion)
	}
	var probed *metav1.Time
	if !o.LastProbeTime.IsZero() {
		t := metav1.NewTime(o.LastProbeTime.Truncate(1e9))
		probed = &t
	}
	return meshv1alpha1.ProxyStatus{
		Pod: o.Pod, State: o.State, EnvoyVersion: o.EnvoyVersion, ConfigVersion: version,
		Synced: synced, Rejected: rejected, LastProbeTime: probed, Error: o.Error,
	}
}
