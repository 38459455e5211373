package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/envoymesh/envoymesh-operator/internal/objects"
	"github.com/envoymesh/envoymesh-operator/internal/xds"
)

// A proxy may hold its ADS stream on any replica, but only the leader writes
// status. So every replica reports its streams in a ConfigMap of the manager's
// namespace, and the leader merges the other replicas' reports with its own
// streams (Istio's istiod reports its distribution status the same way).
const (
	// xdsReportLabel marks the replicas' report ConfigMaps.
	xdsReportLabel = "mesh.envoymesh.io/xds-report"
	// xdsReportKey is the report's key in the ConfigMap.
	xdsReportKey = "streams.json"
	// xdsReportPeriod is the shortest time between two writes of a report.
	xdsReportPeriod = 250 * time.Millisecond
	// xdsReportRenew is how often an unchanged report is rewritten, so a
	// replica that is gone can be told from one with nothing new: the leader
	// ignores a report not renewed for xdsReportExpiry.
	xdsReportRenew  = 10 * time.Second
	xdsReportExpiry = 3 * xdsReportRenew
)

// xdsReport is one replica's streams.
type xdsReport struct {
	Replica string    `json:"replica"`
	Renewed time.Time `json:"renewed"`
	// Nodes maps each NodeKey to the proxies holding a stream for it.
	Nodes map[string][]proxyReport `json:"nodes,omitempty"`
}

// proxyReport is what the leader needs of one stream for status.
type proxyReport struct {
	NodeID string            `json:"node"`
	Since  time.Time         `json:"since"`
	Acked  map[string]string `json:"acked,omitempty"`
	NACK   *nackReport       `json:"nack,omitempty"`
}

type nackReport struct {
	TypeURL string `json:"type"`
	Version string `json:"version"`
	Message string `json:"message"`
}

// reportOf is what server's streams tell, for the report.
func reportOf(server *xds.Server) map[string][]proxyReport {
	nodes := map[string][]proxyReport{}
	for _, key := range server.Keys() {
		for _, p := range server.Status(key).Proxies {
			r := proxyReport{NodeID: p.NodeID, Since: p.Since.UTC().Truncate(time.Millisecond), Acked: p.Acked}
			if p.NACK != nil {
				r.NACK = &nackReport{TypeURL: p.NACK.TypeURL, Version: p.NACK.Version, Message: truncate(p.NACK.Message, maxRejectReason)}
			}
			nodes[key] = append(nodes[key], r)
		}
	}
	return nodes
}

// proxies turns a reported node back into the server's form.
func (r proxyReport) status() xds.ProxyStatus {
	p := xds.ProxyStatus{NodeID: r.NodeID, Since: r.Since, Acked: r.Acked}
	if r.NACK != nil {
		p.NACK = &xds.NACK{TypeURL: r.NACK.TypeURL, Version: r.NACK.Version, Message: r.NACK.Message}
	}
	return p
}

// xdsReporter writes this replica's report when its streams change, at most
// every xdsReportPeriod, and at least every xdsReportRenew while it holds any.
// It runs on every replica; the report names it. A replica that never held a
// stream writes none.
type xdsReporter struct {
	Client  client.Client
	Server  *xds.Server
	Replica string
	// Namespace is the manager's.
	Namespace string

	dirty chan struct{}
}

func newXDSReporter(c client.Client, server *xds.Server, replica, namespace string) *xdsReporter {
	return &xdsReporter{Client: c, Server: server, Replica: replica, Namespace: namespace, dirty: make(chan struct{}, 1)}
}

// changed is called on every change of a stream; it never blocks.
func (r *xdsReporter) changed() {
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

func (r *xdsReporter) Start(ctx context.Context) error {
	var last map[string][]proxyReport
	written := time.Time{}
	renew := time.NewTicker(xdsReportRenew)
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.dirty:
		case <-renew.C:
		}
		nodes := reportOf(r.Server)
		switch {
		case len(nodes) == 0 && len(last) == 0:
			// Nothing held and nothing reported (no XDS mesh, or a quiet
			// replica): no report to write or renew.
			continue
		case reflect.DeepEqual(nodes, last) && time.Since(written) < xdsReportRenew:
			continue
		}
		if err := r.write(ctx, nodes); err != nil {
			log.FromContext(ctx).Error(err, "writing this replica's xDS report")
			r.changed() // try again after the period
		} else {
			last, written = nodes, time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(xdsReportPeriod):
		}
	}
}

func (r *xdsReporter) write(ctx context.Context, nodes map[string][]proxyReport) error {
	data, err := json.Marshal(xdsReport{Replica: r.Replica, Renewed: time.Now().UTC(), Nodes: nodes})
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: r.Namespace, Name: xdsReportName(r.Replica),
			Labels: map[string]string{objects.ManagedByLabel: objects.ManagedBy, xdsReportLabel: "true"},
		},
		Data: map[string]string{xdsReportKey: string(data)},
	}
	body, err := json.Marshal(cm)
	if err != nil {
		return err
	}
	// Each replica owns its own report, under its own field manager.
	return r.Client.Patch(ctx, cm, client.RawPatch(types.ApplyPatchType, body), client.FieldOwner(FieldOwner+"-xds-report"), client.ForceOwnership)
}

// xdsReportName is the report ConfigMap of a replica.
func xdsReportName(replica string) string { return "envoymesh-xds-report-" + replica }

// xdsReports is the leader's view of the other replicas' streams. Reports are
// read live (the cache holds ConfigMaps as metadata only), each time the
// report's metadata moves.
type xdsReports struct {
	Reader  client.Reader // live: the API server, not the cache
	Self    string
	Notify  func(key string)
	Expiry  time.Duration
	Now     func() time.Time
	mu      sync.Mutex
	reports map[string]xdsReport // by ConfigMap name
}

// Reconcile reads one report and enqueues the MeshServices whose proxies it
// changed.
func (r *xdsReports) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cm := &corev1.ConfigMap{}
	var next xdsReport
	err := r.Reader.Get(ctx, req.NamespacedName, cm)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return ctrl.Result{}, err
	default:
		if err := json.Unmarshal([]byte(cm.Data[xdsReportKey]), &next); err != nil {
			return ctrl.Result{}, fmt.Errorf("report %s: %w", req, err)
		}
	}
	r.mu.Lock()
	prev := r.reports[req.Name]
	if next.Replica == "" {
		delete(r.reports, req.Name)
	} else {
		r.reports[req.Name] = next
	}
	r.mu.Unlock()
	for key := range changedKeys(prev.Nodes, next.Nodes) {
		r.Notify(key)
	}
	// Look again once it would expire, so a replica that is gone stops counting.
	return ctrl.Result{RequeueAfter: r.Expiry}, nil
}

// changedKeys are the keys whose proxies differ between two reports.
func changedKeys(a, b map[string][]proxyReport) map[string]bool {
	out := map[string]bool{}
	for key := range maps.Keys(a) {
		if !reflect.DeepEqual(a[key], b[key]) {
			out[key] = true
		}
	}
	for key := range maps.Keys(b) {
		if !reflect.DeepEqual(a[key], b[key]) {
			out[key] = true
		}
	}
	return out
}

// proxies are the other replicas' live proxies of key.
func (r *xdsReports) proxies(key string) []xds.ProxyStatus {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []xds.ProxyStatus
	for _, rep := range r.reports {
		if rep.Replica == r.Self || r.Now().Sub(rep.Renewed) > r.Expiry {
			continue
		}
		for _, p := range rep.Nodes[key] {
			out = append(out, p.status())
		}
	}
	return out
}

// setupXDSReports runs the reporter on every replica and the reader on the
// leader, for the reports of the manager's namespace.
func setupXDSReports(mgr ctrl.Manager, server *xds.Server, replica, namespace string, notify func(string)) (*xdsReporter, *xdsReports, error) {
	reporter := newXDSReporter(mgr.GetClient(), server, replica, namespace)
	if err := mgr.Add(nonLeader{reporter}); err != nil {
		return nil, nil, err
	}
	reports := &xdsReports{Reader: mgr.GetAPIReader(), Self: replica, Notify: notify, Expiry: xdsReportExpiry, Now: time.Now, reports: map[string]xdsReport{}}
	isReport := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == namespace && o.GetLabels()[xdsReportLabel] == "true"
	})
	err := ctrl.NewControllerManagedBy(mgr).Named("xds-reports").
		For(&corev1.ConfigMap{}, builder.OnlyMetadata, builder.WithPredicates(isReport)).
		Complete(reports)
	return reporter, reports, err
}
