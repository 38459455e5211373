package controllers

import (
	"fmt"

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

// sidecars folds the prober's observations into status (counts, the capped
// proxies list, upstream endpoint health) and returns them for the conditions.
// streams, in XDS meshes, is each pod's ADS stream for status.proxies[].xds.
// The Deployment's readyReplicas must already be in status.
func (b *statusBuilder) sidecars(obs []prober.PodObservation, streams map[string]*meshv1alpha1.XDSProxyStatus) sidecarView {
	want := b.status.ConfigVersion
	var v sidecarView
	b.status.Proxies = nil
	for _, o := range obs {
		synced := syncedTo(o, want)
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
			p := proxyStatus(o, synced, rejected)
			p.XDS = streams[o.Pod]
			b.status.Proxies = append(b.status.Proxies, p)
		}
	}
	// Every ready replica must have been probed: until then the sidecars are unknown.
	v.allSynced = v.counts.Synced == v.counts.Total && v.counts.Total >= b.status.ReadyReplicas
	b.status.Sidecars = &v.counts
	b.status.Synced = fmt.Sprintf("%d/%d", v.counts.Synced, v.counts.Total)
	b.upstreamHealth(obs, want)
	return v
}

// configSyncedCondition is ConfigSynced: whether every sidecar runs version,
// and if not, the worst of why (a rejection, then an unreachable sidecar).
func configSyncedCondition(v sidecarView, version string) metav1.Condition {
	switch c := v.counts; {
	case c.Total == 0:
		return metav1.Condition{Type: meshv1alpha1.ConditionConfigSynced, Status: metav1.ConditionUnknown,
			Reason: ReasonNoSidecars, Message: "no running sidecar has been probed yet"}
	case c.Rejected > 0:
		return newCondition(meshv1alpha1.ConditionConfigSynced, false, ReasonRejected,
			fmt.Sprintf("%d of %d sidecars rejected config version %s; they keep serving their last accepted config", c.Rejected, c.Total, version))
	case c.Unreachable > 0:
		return newCondition(meshv1alpha1.ConditionConfigSynced, false, ReasonUnreachable,
			fmt.Sprintf("%d of %d sidecars did not answer on their status port", c.Unreachable, c.Total))
	case !v.allSynced:
		return newCondition(meshv1alpha1.ConditionConfigSynced, false, ReasonStale,
			fmt.Sprintf("%d of %d sidecars run config version %s", c.Synced, c.Total, version))
	default:
		return newCondition(meshv1alpha1.ConditionConfigSynced, true, ReasonSynced,
			fmt.Sprintf("all %d sidecars run config version %s", c.Total, version))
	}
}

// newlyRejected reports whether next is the first status to report a rejection
// of its config version, so the Warning event is raised once per version. It
// reads structured fields only: a rejection (ConfigSynced's reason) is always
// about the configVersion stored with it, because both are computed in the same
// reconcile and a failed reconcile changes neither.
func newlyRejected(prev, next meshv1alpha1.MeshServiceStatus) bool {
	if !hasReason(next.Conditions, meshv1alpha1.ConditionConfigSynced, ReasonRejected) {
		return false
	}
	return !hasReason(prev.Conditions, meshv1alpha1.ConditionConfigSynced, ReasonRejected) || prev.ConfigVersion != next.ConfigVersion
}

func hasReason(conds []metav1.Condition, t, reason string) bool {
	c := meta.FindStatusCondition(conds, t)
	return c != nil && c.Reason == reason
}

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
	var expiry *metav1.Time
	if !o.CertificateExpiry.IsZero() {
		t := metav1.NewTime(o.CertificateExpiry.Truncate(1e9))
		expiry = &t
	}
	return meshv1alpha1.ProxyStatus{
		Pod: o.Pod, State: o.State, EnvoyVersion: o.EnvoyVersion, ConfigVersion: version,
		Synced: synced, Rejected: rejected, LastProbeTime: probed, Error: o.Error,
		CertificateExpiry: expiry, Denied: clampInt64(o.Denied), AuditDenied: clampInt64(o.AuditDenied),
	}
}

func clampInt64(v uint64) int64 { return int64(min(v, 1<<63-1)) }

// denialRise is how many more inbound requests the sidecars refused (denied) and
// would have refused in Audit mode (audit) since the previous status, per pod
// listed in both. A pod that became unreachable or restarted reports less than
// before and counts nothing: only a rise is news.
type denialRise struct {
	denied, audit int64
	pods          []string
}

func newlyDenied(prev, next []meshv1alpha1.ProxyStatus) denialRise {
	before := make(map[string]meshv1alpha1.ProxyStatus, len(prev))
	for _, p := range prev {
		before[p.Pod] = p
	}
	var r denialRise
	for _, n := range next {
		p, ok := before[n.Pod]
		if !ok || n.State == prober.StateUnreachable {
			continue
		}
		d, a := max(n.Denied-p.Denied, 0), max(n.AuditDenied-p.AuditDenied, 0)
		if d+a > 0 {
			r.denied, r.audit = r.denied+d, r.audit+a
			r.pods = append(r.pods, n.Pod)
		}
	}
	return r
}

// message says what rose, for the Warning event.
func (r denialRise) message() string {
	return fmt.Sprintf("sidecars %v refused %d more inbound requests or connections (authorization denials and failed TLS handshakes) and would have refused %d more in Audit mode; status.proxies[] has the totals",
		r.pods, r.denied, r.audit)
}
