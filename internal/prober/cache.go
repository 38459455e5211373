package prober

import (
	"maps"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// snapshot holds one sweep's observations: owning MeshService, then pod name. A pod's owner is in
// the pod's namespace, so owner plus pod name is the pod's namespace/name.
type snapshot map[types.NamespacedName]map[string]PodObservation

func (s snapshot) add(owner types.NamespacedName, obs PodObservation) {
	pods := s[owner]
	if pods == nil {
		pods = make(map[string]PodObservation)
		s[owner] = pods
	}
	pods[obs.Pod] = obs
}

// cache is the latest complete snapshot. Each sweep replaces it whole, so pods that are gone are
// forgotten without bookkeeping.
type cache struct {
	mu   sync.RWMutex
	pods snapshot
	// baselines holds, per owner and pod, the rejected total when the pod's current
	// versions were first seen; it is rebuilt with each snapshot.
	baselines map[types.NamespacedName]map[string]uint64
}

// replace installs next and returns the owners whose pods changed: a pod appeared, disappeared, or
// reports something new.
func (c *cache) replace(next snapshot) map[types.NamespacedName]struct{} {
	c.mu.Lock()
	prev := c.pods
	baselines := make(map[types.NamespacedName]map[string]uint64, len(next))
	for owner, pods := range next {
		baselines[owner] = make(map[string]uint64, len(pods))
		for name, obs := range pods {
			pods[name], baselines[owner][name] = trackRejections(prev[owner][name], c.baselines[owner][name], obs)
		}
	}
	c.pods, c.baselines = next, baselines
	c.mu.Unlock()

	changed := make(map[types.NamespacedName]struct{})
	for owner, pods := range next {
		if !samePods(prev[owner], pods) {
			changed[owner] = struct{}{}
		}
	}
	for owner := range prev {
		if _, ok := next[owner]; !ok {
			changed[owner] = struct{}{}
		}
	}
	return changed
}

// trackRejections sets obs.Rejecting: whether the update_rejected counters rose
// while the loaded versions stayed the same. The counters count every NACK since
// Envoy started, so "> 0" alone would flag each later rollout of a pod that once
// rejected something; the baseline resets whenever the loaded versions change.
// A pod first seen (or back from unreachable) starts from its current counters.
func trackRejections(prev PodObservation, baseline uint64, obs PodObservation) (PodObservation, uint64) {
	total := obs.LDSRejected + obs.CDSRejected
	sameVersions := prev.State != StateUnreachable && prev.State != "" && obs.State != StateUnreachable &&
		prev.LDSVersion == obs.LDSVersion && prev.CDSVersion == obs.CDSVersion
	if !sameVersions {
		baseline = total
	}
	obs.Rejecting = total > baseline
	return obs, baseline
}

func samePods(a, b map[string]PodObservation) bool {
	return maps.EqualFunc(a, b, sameObservation)
}

// sameObservation compares everything but LastProbeTime, which changes on every probe and would
// otherwise reconcile every MeshService on every sweep.
//
// Denied and AuditDenied count too, so a pod under a steady stream of refused callers changes on
// every sweep and its owner is reconciled once per Interval (events coalesce per owner), which is
// what keeps the status counters and the controller's Warning on rising denials current. The
// interval bounds that load; a quiet mesh still causes none.
func sameObservation(a, b PodObservation) bool {
	return a.Pod == b.Pod &&
		a.State == b.State &&
		a.EnvoyVersion == b.EnvoyVersion &&
		a.LDSVersion == b.LDSVersion &&
		a.CDSVersion == b.CDSVersion &&
		a.LDSRejected == b.LDSRejected &&
		a.CDSRejected == b.CDSRejected &&
		a.Rejecting == b.Rejecting &&
		slices.Equal(a.Clusters, b.Clusters) &&
		a.CertificateExpiry.Equal(b.CertificateExpiry) &&
		a.Denied == b.Denied &&
		a.AuditDenied == b.AuditDenied &&
		a.Error == b.Error
}

func (c *cache) observations(owner types.NamespacedName) []PodObservation {
	c.mu.RLock()
	defer c.mu.RUnlock()
	pods := c.pods[owner]
	if len(pods) == 0 {
		return nil
	}
	out := make([]PodObservation, 0, len(pods))
	for _, obs := range pods {
		// Clusters is cloned so callers cannot write into the cache.
		obs.Clusters = slices.Clone(obs.Clusters)
		out = append(out, obs)
	}
	slices.SortFunc(out, func(a, b PodObservation) int { return strings.Compare(a.Pod, b.Pod) })
	return out
}

// countStates counts the pods by state, for the sidecars gauge.
func (s snapshot) countStates() map[string]int {
	counts := make(map[string]int)
	for _, pods := range s {
		for _, obs := range pods {
			counts[obs.State]++
		}
	}
	return counts
}
