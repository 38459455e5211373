// Package prober polls the Envoy sidecar of every running meshed pod and caches what each reports,
// so that reconcile workers turn observations into status without doing network I/O themselves.
package prober

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// StateUnreachable is the State of a pod whose last probe failed.
const StateUnreachable = "Unreachable"

// Defaults for the zero values of Options.
const (
	DefaultInterval    = 10 * time.Second
	DefaultConcurrency = 32
	DefaultTimeout     = 2 * time.Second
	DefaultPort        = 15021
)

// eventBuffer is the capacity of the Events channel. It only has to absorb bursts: owners that do
// not fit wait in a coalescing set (see notifier), so nothing is lost when it is full.
const eventBuffer = 1024

// PodObservation is the last probe of one pod's sidecar.
//
// When a probe fails, State is StateUnreachable, Error says why, and every reported field is
// cleared: an unreachable sidecar's config is unknown, and keeping the last versions would let the
// controller call a pod synced on data it can no longer see.
type PodObservation struct {
	Pod          string
	State        string
	EnvoyVersion string
	// LDSVersion and CDSVersion are the version_text of the loaded listeners and clusters.
	LDSVersion, CDSVersion string
	// LDSRejected and CDSRejected are the update_rejected counters (NACKs since the proxy started).
	LDSRejected, CDSRejected uint64
	// Rejecting is true when the sidecar rejected an update since it loaded its
	// current versions: it is serving an older config than it was given.
	Rejecting bool
	Clusters  []envoyadmin.ClusterHealth
	// CertificateExpiry is when the sidecar's identity certificate expires; zero when it has
	// none (mTLS off, the certificate not loaded yet, or a sidecar without the /certs route).
	CertificateExpiry time.Time
	// Denied counts the inbound requests and connections the sidecar refused since it started:
	// authorization denials (Enforce) and failed TLS handshakes. AuditDenied counts what Enforce
	// would have refused, in Audit mode. Both restart from 0 when Envoy restarts.
	Denied, AuditDenied uint64
	// Error is the last probe's error, "" when it succeeded.
	Error         string
	LastProbeTime time.Time
}

// Options tune a Prober; zero values take the Default* constants.
type Options struct {
	// Interval is the time between the starts of two sweeps.
	Interval time.Duration
	// Concurrency is the most pods probed at once.
	Concurrency int
	// Timeout bounds the whole probe of one pod (its four admin requests), so a hung sidecar
	// delays a sweep by at most Timeout and a sweep takes at most about
	// Timeout × ceil(pods/Concurrency).
	Timeout time.Duration
	// Port is the sidecar's status listener port.
	Port int
	// OwnerLabel selects the pods to probe, and its value names their owner in the
	// pod's namespace: objects.ServiceLabel (the default) for MeshService sidecars,
	// objects.GatewayLabel for a ServiceMesh's gateway Envoys.
	OwnerLabel string
}

// kind names the probed Envoys in metrics: "service" or "gateway".
func (o Options) kind() string {
	if o.OwnerLabel == objects.GatewayLabel {
		return "gateway"
	}
	return "service"
}

// ownerKind is the Kind of the objects OwnerLabel names: ServiceMesh for gateways, MeshService
// otherwise.
func (o Options) ownerKind() string {
	if o.OwnerLabel == objects.GatewayLabel {
		return "ServiceMesh"
	}
	return "MeshService"
}

func (o Options) withDefaults() Options {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Port <= 0 {
		o.Port = DefaultPort
	}
	if o.OwnerLabel == "" {
		o.OwnerLabel = objects.ServiceLabel
	}
	return o
}

// Prober is a manager Runnable that probes sidecars on an interval. Its methods are safe for
// concurrent use.
type Prober struct {
	reader client.Reader
	admin  *envoyadmin.Client
	opts   Options

	// sweepMu serialises sweeps, so an older sweep can never overwrite a newer one's results.
	sweepMu sync.Mutex
	cache   cache
	notify  *notifier
}

var (
	_ manager.Runnable               = (*Prober)(nil)
	_ manager.LeaderElectionRunnable = (*Prober)(nil)
)

// New builds a Prober that lists pods through c (the manager's cached client, so sweeps cost the
// API server nothing) and probes them with admin. A nil admin gets envoyadmin.NewClient with
// Options.Timeout per request.
func New(c client.Reader, admin *envoyadmin.Client, opts Options) *Prober {
	registerMetrics()
	opts = opts.withDefaults()
	initMetrics(opts.kind())
	if admin == nil {
		admin = envoyadmin.NewClient(nil, opts.Timeout)
	}
	return &Prober{
		reader: c,
		admin:  admin,
		opts:   opts,
		notify: newNotifier(eventBuffer, opts.ownerKind()),
	}
}

// Start sweeps at once and then every Interval until ctx ends. It also delivers the events that did
// not fit in the Events channel when they were raised.
func (p *Prober) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { p.notify.feed(ctx) })
	defer wg.Wait()

	ticker := time.NewTicker(p.opts.Interval)
	defer ticker.Stop()
	for {
		p.Sweep(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// NeedLeaderElection returns true: only the leader writes status, so only the leader needs
// observations, and followers would only add load on every sidecar.
func (p *Prober) NeedLeaderElection() bool { return true }

// Observations returns copies of the cached observations of the pods of owner ms (a MeshService,
// or a ServiceMesh for the gateway prober), sorted by pod name; nil when none is cached.
func (p *Prober) Observations(ms types.NamespacedName) []PodObservation {
	return p.cache.observations(ms)
}

// Events is the channel a controller watches with source.Channel. Each event's Object is a
// *metav1.PartialObjectMetadata naming an owner whose Envoys' observations changed: a
// MeshService, or a ServiceMesh when OwnerLabel is objects.GatewayLabel. Its TypeMeta says which.
func (p *Prober) Events() <-chan event.GenericEvent {
	return p.notify.events
}
