package envoyadmin

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// StatsFilter is the RE2 regex Client sends as /stats?filter=. It matches exactly the stats
// ParseStats reads (the LDS/CDS update stats, deniedStats and auditDeniedStats): an unfiltered
// /stats walks every stat in the proxy, which takes seconds on big proxies and holds up the admin
// thread that also answers /ready.
const StatsFilter = `^((listener_manager\.lds|cluster_manager\.cds)\.(version_text|update_rejected)` +
	`|(http\.)?inbound\.rbac\.(shadow_)?denied` +
	`|listener\.inbound\.ssl\.(connection_error|fail_verify_(no_cert|error|san|cert_hash)))$`

const (
	ldsPrefix = "listener_manager.lds."
	cdsPrefix = "cluster_manager.cds."
)

// deniedStats are the counters Stats.Denied sums: what the inbound side refused. Their names
// assume the stat prefix "inbound" on the inbound listener (Listener.stat_prefix: its stats are
// rooted at listener.<stat_prefix>.), on its HTTP connection manager (HTTP filters' stats are
// rooted at http.<stat_prefix>.) and on the network RBAC filter (rooted at <stat_prefix>.), and
// no rules_stat_prefix on either RBAC filter: Envoy's RBAC stats are
// <root>.rbac.<rules_stat_prefix>denied (filters/common/rbac/utility.cc, generateStats).
var deniedStats = []string{
	// The HTTP RBAC filter's 403s and the network RBAC filter's closed connections (Enforce).
	"http.inbound.rbac.denied",
	"inbound.rbac.denied",
	// Failed TLS handshakes on the inbound listener (source/common/tls/stats.h, ALL_SSL_STATS):
	// no client certificate, one that does not chain to the mesh's CA, a SAN or certificate hash
	// that is not allowed, and every other TLS error (a plaintext client included).
	"listener.inbound.ssl.fail_verify_no_cert",
	"listener.inbound.ssl.fail_verify_error",
	"listener.inbound.ssl.fail_verify_san",
	"listener.inbound.ssl.fail_verify_cert_hash",
	"listener.inbound.ssl.connection_error",
}

// auditDeniedStats are the counters Stats.AuditDenied sums: what the shadow rules of Audit mode
// would have refused (<root>.rbac.<shadow_rules_stat_prefix>shadow_denied, with no
// shadow_rules_stat_prefix).
var auditDeniedStats = []string{
	"http.inbound.rbac.shadow_denied",
	"inbound.rbac.shadow_denied",
}

// XDSStats is what one xDS subscription (LDS or CDS) reports about the updates it received.
type XDSStats struct {
	// VersionText is the version_info of the last accepted update; empty until one is accepted.
	VersionText string
	// UpdateRejected counts updates Envoy refused (NACKs), e.g. an invalid lds.yaml.
	UpdateRejected uint64
}

// Stats holds the filtered stats. A stat Envoy did not report is left zero: a proxy without LDS
// has no listener_manager.lds.* stats, one without mTLS no listener.inbound.ssl.* stats, and that
// is not an error. The server state comes from /server_info, not from the server.state gauge.
type Stats struct {
	LDS XDSStats
	CDS XDSStats
	// Denied sums deniedStats: inbound requests and connections refused by authorization (Enforce)
	// or at the TLS handshake, since the proxy started.
	Denied uint64
	// AuditDenied sums auditDeniedStats: what Enforce would have refused, in Audit mode.
	AuditDenied uint64
}

type statsJSON struct {
	Stats *[]statJSON `json:"stats"`
}

// statJSON is one element of the "stats" array. The histograms element has no name and is skipped.
type statJSON struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
}

// ParseStats parses the body of GET /stats?format=json, reading the stats StatsFilter selects and
// ignoring any others.
func ParseStats(r io.Reader) (Stats, error) {
	var in statsJSON
	if err := decodeJSON(r, &in); err != nil {
		return Stats{}, fmt.Errorf("envoyadmin: parse stats: %w", err)
	}
	if in.Stats == nil {
		return Stats{}, fmt.Errorf(`envoyadmin: parse stats: no "stats" array`)
	}
	var s Stats
	for _, st := range *in.Stats {
		if err := s.set(st); err != nil {
			return Stats{}, fmt.Errorf("envoyadmin: parse stats: %s: %w", st.Name, err)
		}
	}
	return s, nil
}

func (s *Stats) set(st statJSON) error {
	switch {
	case strings.HasPrefix(st.Name, ldsPrefix):
		return s.LDS.set(strings.TrimPrefix(st.Name, ldsPrefix), st.Value)
	case strings.HasPrefix(st.Name, cdsPrefix):
		return s.CDS.set(strings.TrimPrefix(st.Name, cdsPrefix), st.Value)
	}
	var sum *uint64
	switch {
	case slices.Contains(deniedStats, st.Name):
		sum = &s.Denied
	case slices.Contains(auditDeniedStats, st.Name):
		sum = &s.AuditDenied
	default:
		return nil
	}
	n, err := counterValue(st.Value)
	if err != nil {
		return err
	}
	// Saturate rather than wrap: a sum that wrapped would read as denials going down.
	if *sum > math.MaxUint64-n {
		*sum = math.MaxUint64
	} else {
		*sum += n
	}
	return nil
}

func (x *XDSStats) set(field string, v json.RawMessage) error {
	var err error
	switch field {
	case "version_text":
		x.VersionText, err = textValue(v)
	case "update_rejected":
		x.UpdateRejected, err = counterValue(v)
	}
	return err
}

// textValue decodes a text readout, which Envoy writes as a JSON string.
func textValue(v json.RawMessage) (string, error) {
	var s string
	if len(v) == 0 {
		return "", fmt.Errorf("no value")
	}
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("text readout is not a string: %.32s", v)
	}
	return s, nil
}

// counterValue decodes a counter or gauge. Envoy writes a JSON number; a quoted number (as
// proto-JSON writes uint64) is accepted too.
func counterValue(v json.RawMessage) (uint64, error) {
	if len(v) == 0 {
		return 0, fmt.Errorf("no value")
	}
	raw := string(v)
	if v[0] == '"' {
		if err := json.Unmarshal(v, &raw); err != nil {
			return 0, err
		}
	}
	n, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a non-negative integer: %.32s", v)
	}
	return n, nil
}
