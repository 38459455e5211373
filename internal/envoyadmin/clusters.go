package envoyadmin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// ClusterHealth counts the hosts of one upstream cluster by health, as Envoy sees them.
type ClusterHealth struct {
	Name string
	// Hosts is every host Envoy knows for the cluster.
	Hosts int
	// Healthy hosts take traffic normally: no failure, degradation or removal flag is set. Degraded
	// hosts (they only take traffic when there are too few healthy ones) are not counted.
	Healthy int
}

// The structs below decode only what ParseClusters needs, with encoding/json rather than protojson:
// encoding/json ignores the fields that differ between Envoy's admin.v3.Clusters proto-JSON and the
// newer streaming shape ("port" instead of "port_value", bare numbers instead of wrapper objects),
// which protojson rejects.
type clustersJSON struct {
	ClusterStatuses []clusterStatusJSON `json:"cluster_statuses"`
}

type clusterStatusJSON struct {
	Name         string           `json:"name"`
	HostStatuses []hostStatusJSON `json:"host_statuses"`
}

type hostStatusJSON struct {
	HealthStatus hostHealthJSON `json:"health_status"`
}

// hostHealthJSON mirrors admin.v3.HostHealthStatus. The proto-JSON shape writes every flag; the
// streaming shape writes only the flags that are true. Both decode the same way.
type hostHealthJSON struct {
	FailedActiveHealthCheck        bool      `json:"failed_active_health_check"`
	FailedOutlierCheck             bool      `json:"failed_outlier_check"`
	FailedActiveDegradedCheck      bool      `json:"failed_active_degraded_check"`
	PendingDynamicRemoval          bool      `json:"pending_dynamic_removal"`
	ExcludedViaImmediateHCFail     bool      `json:"excluded_via_immediate_hc_fail"`
	ActiveHCTimeout                bool      `json:"active_hc_timeout"`
	FailedDegradedOutlierDetection bool      `json:"failed_degraded_outlier_detection"`
	EDSHealthStatus                edsHealth `json:"eds_health_status"`
}

type hostHealth int

const (
	hostHealthy hostHealth = iota
	hostDegraded
	hostUnhealthy
)

// health follows Envoy's coarse host health (Host::coarseHealth), with two differences that only
// ever make the count more cautious: excluded_via_immediate_hc_fail and active_hc_timeout, which
// Envoy sets together with failed_active_health_check, count as failures on their own; and a host
// pending dynamic removal is unhealthy here, because it is already gone from the service's endpoints
// and Envoy only keeps it while it passes health checks. pending_active_hc alone is healthy, as in
// Envoy (a host that must wait for its first check also has failed_active_health_check).
func (h hostHealthJSON) health() hostHealth {
	switch {
	case h.FailedActiveHealthCheck, h.FailedOutlierCheck, h.ExcludedViaImmediateHCFail,
		h.ActiveHCTimeout, h.PendingDynamicRemoval:
		return hostUnhealthy
	}
	switch h.EDSHealthStatus {
	case edsUnknown, edsHealthy:
	case edsDegraded:
		return hostDegraded
	default:
		return hostUnhealthy
	}
	if h.FailedActiveDegradedCheck || h.FailedDegradedOutlierDetection {
		return hostDegraded
	}
	return hostHealthy
}

// edsHealth is config.core.v3.HealthStatus; the numbers are the enum's.
type edsHealth int

const (
	edsUnknown   edsHealth = 0
	edsHealthy   edsHealth = 1
	edsUnhealthy edsHealth = 2
	edsDraining  edsHealth = 3
	edsTimeout   edsHealth = 4
	edsDegraded  edsHealth = 5
	// edsOther stands for a value this package does not know; it counts as unhealthy so that a new
	// Envoy status is never reported as capacity.
	edsOther edsHealth = -1
)

var edsHealthNames = map[string]edsHealth{
	"UNKNOWN":   edsUnknown,
	"HEALTHY":   edsHealthy,
	"UNHEALTHY": edsUnhealthy,
	"DRAINING":  edsDraining,
	"TIMEOUT":   edsTimeout,
	"DEGRADED":  edsDegraded,
}

// UnmarshalJSON accepts the enum name Envoy writes and the number proto-JSON also allows.
func (e *edsHealth) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*e = edsUnknown
		return nil
	}
	var name string
	if err := json.Unmarshal(b, &name); err == nil {
		v, ok := edsHealthNames[name]
		if !ok {
			v = edsOther
		}
		*e = v
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("eds_health_status: neither a name nor a number: %.32s", b)
	}
	*e = edsHealth(n)
	if n < int(edsUnknown) || n > int(edsDegraded) {
		*e = edsOther
	}
	return nil
}

// ParseClusters parses the body of GET /clusters?format=json. It returns one entry per cluster,
// sorted by name because Envoy's order is that of a hash map and would make status flap. A proxy
// with no clusters answers "{}", which gives nil.
func ParseClusters(r io.Reader) ([]ClusterHealth, error) {
	var in clustersJSON
	if err := decodeJSON(r, &in); err != nil {
		return nil, fmt.Errorf("envoyadmin: parse clusters: %w", err)
	}
	var out []ClusterHealth
	for i, cs := range in.ClusterStatuses {
		if cs.Name == "" {
			return nil, fmt.Errorf("envoyadmin: parse clusters: cluster_statuses[%d] has no name", i)
		}
		ch := ClusterHealth{Name: cs.Name, Hosts: len(cs.HostStatuses)}
		for _, hs := range cs.HostStatuses {
			if hs.HealthStatus.health() == hostHealthy {
				ch.Healthy++
			}
		}
		out = append(out, ch)
	}
	slices.SortFunc(out, func(a, b ClusterHealth) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
