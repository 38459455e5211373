package plugin

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// Proxy states as `status` reports them.
const (
	StateSynced      = "Synced"
	StateStale       = "Stale"
	StateRejected    = "Rejected"
	StateUnreachable = "Unreachable"
	StateUnknown     = "Unknown"
)

// ProxyRow is one proxy: a MeshService sidecar, or a whole gateway (the gateway's
// Envoys are counted, not listed per pod, in ServiceMesh status).
type ProxyRow struct {
	Namespace string `json:"namespace"`
	// Kind is MeshService or Gateway; Name is the MeshService's or the ServiceMesh's.
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Pod is empty for a gateway row and for a MeshService with no probed sidecar.
	Pod string `json:"pod,omitempty"`
	// Pods is "ready/replicas" for a gateway row.
	Pods          string `json:"pods,omitempty"`
	EnvoyVersion  string `json:"envoyVersion,omitempty"`
	ConfigVersion string `json:"configVersion,omitempty"`
	// WantVersion is the version the operator last applied.
	WantVersion string `json:"wantVersion,omitempty"`
	// State: Synced, Stale, Rejected, Unreachable, Unknown, or Envoy's own
	// server state (PRE_INITIALIZING, INITIALIZING, DRAINING) when not LIVE.
	State string `json:"state"`
	// Reason says why the proxy is not Synced, when known.
	Reason            string     `json:"reason,omitempty"`
	CertificateExpiry *time.Time `json:"certificateExpiry,omitempty"`
	Denied            int64      `json:"denied,omitempty"`
	AuditDenied       int64      `json:"auditDenied,omitempty"`
}

// StatusReport is `status -o json|yaml`.
type StatusReport struct {
	Proxies []ProxyRow `json:"proxies"`
}

func newStatusCommand(o *options) *cobra.Command {
	o = o.perCommand()
	cmd := &cobra.Command{
		Use:   "status",
		Short: "One row per Envoy proxy: config version, synced/stale/rejected (and why), certificate expiry, denials",
		Long: `One row per Envoy proxy of the namespace's MeshServices (from status.proxies: the first 20 pods
of each), and one row per gateway (ServiceMesh status counts the gateway's Envoys but does not list them per pod).`,
		Example: `  kubectl envoymesh status -n shop
  kubectl envoymesh status -A -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o, "table", "json", "yaml"); err != nil {
				return err
			}
			ctx, cancel := o.ctx(cmd)
			defer cancel()
			c, err := o.client()
			if err != nil {
				return err
			}
			ns, err := o.namespace()
			if err != nil {
				return err
			}
			report, err := collectStatus(ctx, c, ns)
			if err != nil {
				return err
			}
			if o.output != "table" {
				return printStructured(o.out(), o.output, report)
			}
			if len(report.Proxies) == 0 {
				where := "namespace " + ns
				if ns == "" {
					where = "any namespace"
				}
				_, err := fmt.Fprintf(o.out(), "No MeshServices or gateways found in %s.\n", where)
				return err
			}
			return printStatusTable(o, report)
		},
	}
	addOutputFlag(cmd, o, "table", "json", "yaml")
	addAllNamespacesFlag(cmd, o)
	return cmd
}

func collectStatus(ctx context.Context, c client.Client, ns string) (*StatusReport, error) {
	var services meshv1alpha1.MeshServiceList
	if err := c.List(ctx, &services, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing MeshServices: %w", err)
	}
	var meshes meshv1alpha1.ServiceMeshList
	if err := c.List(ctx, &meshes, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing ServiceMeshes: %w", err)
	}
	report := &StatusReport{Proxies: []ProxyRow{}}
	for i := range meshes.Items {
		if row, ok := gatewayRow(&meshes.Items[i]); ok {
			report.Proxies = append(report.Proxies, row)
		}
	}
	for i := range services.Items {
		report.Proxies = append(report.Proxies, serviceRows(&services.Items[i])...)
	}
	sort.SliceStable(report.Proxies, func(i, j int) bool {
		a, b := report.Proxies[i], report.Proxies[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Kind != b.Kind {
			return a.Kind == "Gateway"
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Pod < b.Pod
	})
	return report, nil
}

// serviceRows is a MeshService's proxies; one Unknown row when none was probed.
func serviceRows(ms *meshv1alpha1.MeshService) []ProxyRow {
	want := ms.Status.ConfigVersion
	base := ProxyRow{Namespace: ms.Namespace, Kind: "MeshService", Name: ms.Name, WantVersion: want}
	if len(ms.Status.Proxies) == 0 {
		row := base
		row.State = StateUnknown
		row.Reason = "no sidecar probed yet"
		if c := meta.FindStatusCondition(ms.Status.Conditions, meshv1alpha1.ConditionReady); c != nil && c.Status != "True" {
			row.Reason += fmt.Sprintf(" (Ready=%s %s: %s)", c.Status, c.Reason, c.Message)
		}
		return []ProxyRow{row}
	}
	var rows []ProxyRow
	for _, p := range ms.Status.Proxies {
		row := base
		row.Pod = p.Pod
		row.EnvoyVersion = p.EnvoyVersion
		row.ConfigVersion = p.ConfigVersion
		row.Denied, row.AuditDenied = p.Denied, p.AuditDenied
		if p.CertificateExpiry != nil {
			t := p.CertificateExpiry.Time
			row.CertificateExpiry = &t
		}
		row.State, row.Reason = proxyState(p, want)
		rows = append(rows, row)
	}
	if s := ms.Status.Sidecars; s != nil && int(s.Total) > len(ms.Status.Proxies) {
		rows = append(rows, ProxyRow{Namespace: ms.Namespace, Kind: "MeshService", Name: ms.Name, WantVersion: want,
			State:  fmt.Sprintf("%d/%d synced", s.Synced, s.Total),
			Reason: fmt.Sprintf("%d more pods not listed (status lists the first %d); %d rejected, %d unreachable in all", int(s.Total)-len(ms.Status.Proxies), len(ms.Status.Proxies), s.Rejected, s.Unreachable)})
	}
	return rows
}

// proxyState is what a sidecar's status entry means, and why when not synced.
func proxyState(p meshv1alpha1.ProxyStatus, want string) (string, string) {
	if x := p.XDS; x != nil && !p.Synced {
		// Pushed over xDS: the stream says it all.
		switch {
		case x.RejectedVersion != "":
			return StateRejected, fmt.Sprintf("Envoy NACKed config %s over xDS and keeps serving %s: %s", x.RejectedVersion, x.AckedVersion, x.RejectReason)
		case !x.Connected:
			return StateStale, "no ADS stream to the operator (Envoy retries; check the envoymesh-xds Service and the pod's certificate)"
		case x.AckedVersion != want:
			return StateStale, fmt.Sprintf("ACKed %s over xDS, current is %s (the push is under way)", x.AckedVersion, want)
		}
	}
	switch {
	case p.Synced:
		return StateSynced, ""
	case p.Rejected:
		why := fmt.Sprintf("Envoy refused config %s and keeps serving %s", want, p.ConfigVersion)
		if p.Error != "" {
			why += ": " + p.Error
		}
		return StateRejected, why
	case p.State == StateUnreachable:
		why := "the status port did not answer"
		if p.Error != "" {
			why = p.Error
		}
		return StateUnreachable, why
	case p.State != "" && p.State != "LIVE":
		why := "Envoy is not LIVE"
		if p.Error != "" {
			why += ": " + p.Error
		}
		return p.State, why
	}
	why := fmt.Sprintf("runs %s, current is %s (ConfigMap propagation to the pod takes up to a minute)", p.ConfigVersion, want)
	if want == "" {
		why = "the operator has not applied a config yet"
	}
	if p.Error != "" {
		why += ": " + p.Error
	}
	return StateStale, why
}

// gatewayRow is a ServiceMesh's gateway as one row; false when it has none.
func gatewayRow(mesh *meshv1alpha1.ServiceMesh) (ProxyRow, bool) {
	if mesh.Spec.Gateway == nil || !mesh.Spec.Gateway.Enabled {
		return ProxyRow{}, false
	}
	row := ProxyRow{Namespace: mesh.Namespace, Kind: "Gateway", Name: mesh.Name}
	g := mesh.Status.Gateway
	if g == nil {
		row.State = StateUnknown
		row.Reason = "the operator has not reported the gateway yet"
		return row, true
	}
	row.Pods = fmt.Sprintf("%d/%d", g.ReadyReplicas, g.Replicas)
	row.ConfigVersion = g.ConfigVersion
	row.WantVersion = g.ConfigVersion
	note := "gateway Envoys are counted, not listed per pod"
	switch {
	case g.Replicas > 0 && g.Synced >= g.Replicas:
		row.State = StateSynced
		row.Reason = fmt.Sprintf("%d/%d Envoys synced; %s", g.Synced, g.Replicas, note)
	case g.Replicas == 0:
		row.State = StateUnknown
		row.Reason = "no gateway replicas"
	default:
		row.State = StateStale
		row.Reason = fmt.Sprintf("%d/%d Envoys synced to %s (not synced: stale, rejected or unreachable); %s", g.Synced, g.Replicas, g.ConfigVersion, note)
	}
	if c := meta.FindStatusCondition(mesh.Status.Conditions, meshv1alpha1.ConditionReady); c != nil && c.Status != "True" {
		row.Reason += fmt.Sprintf("; Ready=%s %s: %s", c.Status, c.Reason, c.Message)
	}
	return row, true
}

func printStatusTable(o *options, r *StatusReport) error {
	headers := []string{"RESOURCE", "POD", "ENVOY", "CONFIG", "STATE", "CERT EXPIRES", "DENIED", "REASON"}
	if o.allNamespaces {
		headers = append([]string{"NAMESPACE"}, headers...)
	}
	now := o.now()
	var rows [][]string
	for _, p := range r.Proxies {
		resource := "ms/" + p.Name
		pod := p.Pod
		if p.Kind == "Gateway" {
			resource = "gateway/" + p.Name
			pod = "(" + p.Pods + " pods)"
			if p.Pods == "" {
				pod = ""
			}
		}
		cert := ""
		if p.CertificateExpiry != nil {
			if left := p.CertificateExpiry.Sub(now); left > 0 {
				cert = "in " + human(left)
			} else {
				cert = "EXPIRED " + human(left) + " ago"
			}
		}
		denied := ""
		if p.Kind == "MeshService" && p.Pod != "" {
			denied = fmt.Sprint(p.Denied)
			if p.AuditDenied > 0 {
				denied += fmt.Sprintf(" (audit %d)", p.AuditDenied)
			}
		}
		row := []string{resource, pod, p.EnvoyVersion, p.ConfigVersion, p.State, cert, denied, p.Reason}
		if o.allNamespaces {
			row = append([]string{p.Namespace}, row...)
		}
		rows = append(rows, row)
	}
	return table(o.out(), headers, rows)
}
