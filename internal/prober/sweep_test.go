package prober

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin/admintest"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

var ignoreProbeTime = cmpopts.IgnoreFields(PodObservation{}, "LastProbeTime")

func TestSweepCachesObservations(t *testing.T) {
	port := statusPort(t)
	b := sidecar(t, "127.0.0.2", port)
	b.SetClusters(admintest.Cluster{Name: "payments", Hosts: 3, Healthy: 2})
	a := sidecar(t, "127.0.0.3", port)
	a.SetVersion("v2")
	a.SetRejected(1, 2)
	a.SetState(envoyadmin.StateDraining)
	expiry := time.Date(2026, 3, 3, 8, 13, 5, 0, time.UTC)
	a.SetCertificate(expiry, "spiffe://cluster.local/ns/shop/sa/cart")
	a.SetCounter("http.inbound.rbac.denied", 3)
	a.SetCounter("listener.inbound.ssl.fail_verify_no_cert", 2)
	a.SetCounter("http.inbound.rbac.shadow_denied", 7)
	p, _ := newProber(t, port, Options{},
		pod(ns, "cart-b", "cart", "127.0.0.2"),
		pod(ns, "cart-a", "cart", "127.0.0.3"),
	)

	before := time.Now()
	sweep(p)

	got := p.Observations(key(ns, "cart"))
	want := []PodObservation{{
		Pod: "cart-a", State: envoyadmin.StateDraining, EnvoyVersion: admintest.DefaultEnvoyVersion,
		LDSVersion: "v2", CDSVersion: "v2", LDSRejected: 1, CDSRejected: 2,
		CertificateExpiry: expiry, Denied: 5, AuditDenied: 7,
	}, {
		Pod: "cart-b", State: envoyadmin.StateLive, EnvoyVersion: admintest.DefaultEnvoyVersion,
		LDSVersion: "v1", CDSVersion: "v1",
		Clusters: []envoyadmin.ClusterHealth{{Name: "payments", Hosts: 3, Healthy: 2}},
	}}
	if diff := cmp.Diff(want, got, ignoreProbeTime); diff != "" {
		t.Errorf("Observations (-want +got):\n%s", diff)
	}
	for _, o := range got {
		if o.LastProbeTime.Before(before) {
			t.Errorf("%s: LastProbeTime %v is before the sweep started", o.Pod, o.LastProbeTime)
		}
	}
	if other := p.Observations(key("other", "cart")); other != nil {
		t.Errorf("Observations of a MeshService in another namespace = %+v, want nil", other)
	}

	got[1].Clusters[0].Healthy = 0
	if again := p.Observations(key(ns, "cart")); again[1].Clusters[0].Healthy != 2 {
		t.Error("writing into a returned observation changed the cache")
	}
}

func TestSweepRaisesEventsOnlyOnChange(t *testing.T) {
	port := statusPort(t)
	cart0 := sidecar(t, "127.0.0.2", port)
	sidecar(t, "127.0.0.3", port)
	web := sidecar(t, "127.0.0.4", port)
	sidecar(t, "127.0.0.5", port)
	p, _ := newProber(t, port, Options{},
		pod(ns, "cart-0", "cart", "127.0.0.2"),
		pod(ns, "cart-1", "cart", "127.0.0.3"),
		pod(ns, "web-0", "web", "127.0.0.4"),
		pod("other", "cart-0", "cart", "127.0.0.5"),
	)
	byName := cmpopts.SortSlices(func(a, b types.NamespacedName) bool { return a.String() < b.String() })
	expiry := time.Date(2026, 3, 3, 8, 13, 5, 0, time.UTC)

	steps := []struct {
		name   string
		change func()
		want   []types.NamespacedName
	}{
		{"new pods, one event per MeshService", func() {}, []types.NamespacedName{key(ns, "cart"), key(ns, "web"), key("other", "cart")}},
		{"nothing changed", func() {}, nil},
		{"config version", func() { cart0.SetVersion("v2") }, []types.NamespacedName{key(ns, "cart")}},
		{"rejected update", func() { web.SetRejected(1, 0) }, []types.NamespacedName{key(ns, "web")}},
		{"host health", func() { web.SetClusters(admintest.Cluster{Name: "db", Hosts: 1, Healthy: 1}) }, []types.NamespacedName{key(ns, "web")}},
		{"certificate loaded", func() { cart0.SetCertificate(expiry, "spiffe://cluster.local/ns/shop/sa/cart") }, []types.NamespacedName{key(ns, "cart")}},
		{"same certificate", func() { cart0.SetCertificate(expiry, "spiffe://cluster.local/ns/shop/sa/cart") }, nil},
		{"certificate rotated", func() { cart0.SetCertificate(expiry.Add(12*time.Hour), "spiffe://cluster.local/ns/shop/sa/cart") }, []types.NamespacedName{key(ns, "cart")}},
		{"authorization denial", func() { web.SetCounter("http.inbound.rbac.denied", 1) }, []types.NamespacedName{key(ns, "web")}},
		{"denials keep rising", func() { web.SetCounter("http.inbound.rbac.denied", 2) }, []types.NamespacedName{key(ns, "web")}},
		{"failed handshake", func() { web.SetCounter("listener.inbound.ssl.fail_verify_san", 1) }, []types.NamespacedName{key(ns, "web")}},
		{"denials stop", func() {}, nil},
		{"audit denial", func() { cart0.SetCounter("http.inbound.rbac.shadow_denied", 4) }, []types.NamespacedName{key(ns, "cart")}},
		{"an allowed request is no change", func() { web.SetCounter("http.inbound.rbac.allowed", 9) }, nil},
		{"certificate gone", func() { cart0.SetCertificate(time.Time{}) }, []types.NamespacedName{key(ns, "cart")}},
		{"nothing changed again", func() {}, nil},
	}
	for _, step := range steps {
		step.change()
		sweep(p)
		if diff := cmp.Diff(step.want, drain(t, p), byName, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: events (-want +got):\n%s", step.name, diff)
		}
	}
	if got := only(t, p, key(ns, "web")); got.LDSRejected != 1 || len(got.Clusters) != 1 || got.Denied != 3 {
		t.Errorf("web-0 = %+v, want the rejection, the db cluster and 3 denials", got)
	}
	for _, o := range p.Observations(key(ns, "cart")) {
		if o.Pod == "cart-0" && (o.AuditDenied != 4 || !o.CertificateExpiry.IsZero()) {
			t.Errorf("cart-0 = %+v, want 4 audit denials and no certificate", o)
		}
	}
}

// TestSweepToleratesSidecarsWithoutCerts: a sidecar whose status listener has no /certs route
// (404) is probed as usual, with no certificate; one whose /certs fails otherwise is unreachable,
// like any other endpoint.
func TestSweepToleratesSidecarsWithoutCerts(t *testing.T) {
	port := statusPort(t)
	sidecar(t, "127.0.0.2", port) // the stub answers 404 without a certificate
	serve(t, "127.0.0.3", port, withCerts(http.StatusInternalServerError, "oops"))
	serve(t, "127.0.0.4", port, withCerts(http.StatusOK, `{"certificates":[{"cert_chain":[{"expiration_time":"soon"}]}]}`))
	p, _ := newProber(t, port, Options{},
		pod(ns, "old-0", "old", "127.0.0.2"),
		pod(ns, "broken-0", "broken", "127.0.0.3"),
		pod(ns, "garbled-0", "garbled", "127.0.0.4"),
	)
	sweep(p)
	if got := only(t, p, key(ns, "old")); got.State != envoyadmin.StateLive || got.Error != "" || !got.CertificateExpiry.IsZero() {
		t.Errorf("sidecar without /certs: %+v, want LIVE without certificate or error", got)
	}
	for _, tc := range []struct{ service, errContains string }{
		{"broken", "/certs: unexpected status 500"},
		{"garbled", "parse certs"},
	} {
		if got := only(t, p, key(ns, tc.service)); got.State != StateUnreachable || !strings.Contains(got.Error, tc.errContains) {
			t.Errorf("%s: %+v, want Unreachable with an error containing %q", tc.service, got, tc.errContains)
		}
	}
}

// withCerts is a stub sidecar whose /certs answers code and body.
func withCerts(code int, body string) http.Handler {
	s := admintest.NewSidecar()
	s.SetVersion("v1")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/certs" {
			w.WriteHeader(code)
			_, _ = w.Write([]byte(body))
			return
		}
		s.ServeHTTP(w, r)
	})
}

func TestSweepReportsUnreachableSidecars(t *testing.T) {
	port := statusPort(t)
	sidecar(t, "127.0.0.2", port) // live
	// Nothing listens at 127.0.0.3: refused.
	hung := sidecar(t, "127.0.0.4", port)
	hung.SetHang(true)
	garbage := sidecar(t, "127.0.0.5", port)
	// What garbage reported before must not survive its becoming unreachable.
	garbage.SetCertificate(time.Now().Add(time.Hour), "spiffe://cluster.local/ns/shop/sa/garbage")
	garbage.SetCounter("http.inbound.rbac.denied", 2)
	garbage.SetCounter("http.inbound.rbac.shadow_denied", 3)
	p, _ := newProber(t, port, Options{Timeout: 500 * time.Millisecond},
		pod(ns, "live", "live", "127.0.0.2"),
		pod(ns, "refused", "refused", "127.0.0.3"),
		pod(ns, "hung", "hung", "127.0.0.4"),
		pod(ns, "garbage", "garbage", "127.0.0.5"),
	)
	sweep(p)
	if got := only(t, p, key(ns, "garbage")); got.State != envoyadmin.StateLive || got.LDSVersion != "v1" ||
		got.CertificateExpiry.IsZero() || got.Denied != 2 || got.AuditDenied != 3 {
		t.Fatalf("before garbage: %+v, want LIVE at v1 with a certificate and denials", got)
	}
	drain(t, p)

	garbage.SetGarbage(true)
	sweep(p)

	if got := only(t, p, key(ns, "live")); got.State != envoyadmin.StateLive || got.Error != "" {
		t.Errorf("live pod probed in the same sweep: %+v, want LIVE without error", got)
	}
	for _, tc := range []struct{ service, errContains string }{
		{"refused", "connection refused"},
		{"hung", "deadline exceeded"},
		{"garbage", "parse server_info"},
	} {
		got := only(t, p, key(ns, tc.service))
		want := PodObservation{Pod: tc.service, State: StateUnreachable, Error: got.Error}
		if diff := cmp.Diff(want, got, ignoreProbeTime); diff != "" {
			t.Errorf("%s: unreachable pods report nothing but the error (-want +got):\n%s", tc.service, diff)
		}
		if !strings.Contains(got.Error, tc.errContains) {
			t.Errorf("%s: Error = %q, want it to contain %q", tc.service, got.Error, tc.errContains)
		}
	}
	if diff := cmp.Diff([]types.NamespacedName{key(ns, "garbage")}, drain(t, p)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestSweepForgetsPodsThatAreGone(t *testing.T) {
	port := statusPort(t)
	sidecar(t, "127.0.0.2", port)
	sidecar(t, "127.0.0.3", port)
	sidecar(t, "127.0.0.4", port)
	p, c := newProber(t, port, Options{},
		pod(ns, "cart-0", "cart", "127.0.0.2"),
		pod(ns, "cart-1", "cart", "127.0.0.3"),
		pod(ns, "web-0", "web", "127.0.0.4"),
	)
	ctx := context.Background()
	sweep(p)
	drain(t, p)

	if err := c.Delete(ctx, pod(ns, "web-0", "web", "")); err != nil {
		t.Fatal(err)
	}
	sweep(p)
	if got := drain(t, p); !slices.Equal(got, []types.NamespacedName{key(ns, "web")}) {
		t.Errorf("after deleting web-0: events %v, want [shop/web]", got)
	}
	if got := p.Observations(key(ns, "web")); got != nil {
		t.Errorf("deleted pod still cached: %+v", got)
	}

	// A pod that stops running is gone too, though the object remains.
	stopped := &corev1.Pod{}
	if err := c.Get(ctx, key(ns, "cart-1"), stopped); err != nil {
		t.Fatal(err)
	}
	stopped.Status.Phase = corev1.PodSucceeded
	if err := c.Status().Update(ctx, stopped); err != nil {
		t.Fatal(err)
	}
	sweep(p)
	if got := drain(t, p); !slices.Equal(got, []types.NamespacedName{key(ns, "cart")}) {
		t.Errorf("after cart-1 stopped: events %v, want [shop/cart]", got)
	}
	if got := only(t, p, key(ns, "cart")); got.Pod != "cart-0" {
		t.Errorf("cart observations = %+v, want cart-0 only", got)
	}
}

func TestCancelledSweepKeepsObservations(t *testing.T) {
	port := statusPort(t)
	sidecar(t, "127.0.0.2", port)
	p, _ := newProber(t, port, Options{}, pod(ns, "cart-0", "cart", "127.0.0.2"))
	sweep(p)
	drain(t, p)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.Sweep(ctx)

	if got := only(t, p, key(ns, "cart")); got.State != envoyadmin.StateLive {
		t.Errorf("after a cancelled sweep: %+v, want the LIVE observation kept", got)
	}
	if got := drain(t, p); got != nil {
		t.Errorf("a cancelled sweep raised events %v", got)
	}
}

func TestSweepSkipsPodsNotRunning(t *testing.T) {
	port := statusPort(t)
	sidecar(t, "127.0.0.2", port)
	pending := pod(ns, "pending", "cart", "127.0.0.3")
	pending.Status.Phase = corev1.PodPending
	deleting := pod(ns, "deleting", "cart", "127.0.0.4")
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	deleting.Finalizers = []string{"test/keep"}
	unlabelled := pod(ns, "unlabelled", "-", "127.0.0.5")
	emptyLabel := pod(ns, "empty-label", "", "127.0.0.6")
	// Each skipped pod with an IP has a stub, so probing it would show in the stub's requests.
	skipped := map[string]*admintest.Sidecar{}
	for _, p := range []*corev1.Pod{pending, deleting, unlabelled, emptyLabel} {
		skipped[p.Name] = sidecar(t, p.Status.PodIP, port)
	}
	p, _ := newProber(t, port, Options{},
		pending, deleting, unlabelled, emptyLabel,
		pod(ns, "no-ip", "cart", ""),
		pod(ns, "cart-0", "cart", "127.0.0.2"),
	)

	sweep(p)

	if got := only(t, p, key(ns, "cart")); got.Pod != "cart-0" {
		t.Errorf("cart observations = %+v, want cart-0 only", got)
	}
	if got := p.Observations(key(ns, "")); got != nil {
		t.Errorf("pods with an empty label observed: %+v", got)
	}
	for name, s := range skipped {
		if reqs := s.Requests(); len(reqs) != 0 {
			t.Errorf("%s was probed: %v", name, reqs)
		}
	}
	if got := drain(t, p); !slices.Equal(got, []types.NamespacedName{key(ns, "cart")}) {
		t.Errorf("events %v, want [shop/cart]", got)
	}
}

// inflightCounter wraps a stub and records how many requests, across all stubs, it serves at once.
// Requests wait until limit are in flight (or a fallback fires), so a sweep that probes with fewer
// workers than allowed shows up as a maximum below limit, and then linger so that a sweep with too
// many workers shows up as a maximum above it.
type inflightCounter struct {
	limit    int32
	inflight atomic.Int32
	max      atomic.Int32
	full     chan struct{}
	fullOnce sync.Once
}

func (c *inflightCounter) wrap(s *admintest.Sidecar) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := c.inflight.Add(1)
		defer c.inflight.Add(-1)
		for m := c.max.Load(); n > m && !c.max.CompareAndSwap(m, n); m = c.max.Load() {
		}
		if n >= c.limit {
			c.fullOnce.Do(func() { close(c.full) })
		}
		<-c.full
		time.Sleep(20 * time.Millisecond)
		s.ServeHTTP(w, r)
	})
}

func TestSweepBoundsConcurrency(t *testing.T) {
	const concurrency, pods = 3, 12
	port := statusPort(t)
	counter := &inflightCounter{limit: concurrency, full: make(chan struct{})}
	// The fallback only keeps a broken prober (fewer workers) from hanging the test.
	fallback := time.AfterFunc(10*time.Second, func() { counter.fullOnce.Do(func() { close(counter.full) }) })
	defer fallback.Stop()
	var objs []client.Object
	for i := range pods {
		ip := "127.0.0." + strconv.Itoa(10+i)
		s := admintest.NewSidecar()
		serve(t, ip, port, counter.wrap(s))
		objs = append(objs, pod(ns, "cart-"+strconv.Itoa(i), "cart", ip))
	}
	p, _ := newProber(t, port, Options{Concurrency: concurrency, Timeout: 60 * time.Second}, objs...)

	sweep(p)

	if got := counter.max.Load(); got != concurrency {
		t.Errorf("at most %d requests in flight, want exactly Concurrency=%d", got, concurrency)
	}
	obs := p.Observations(key(ns, "cart"))
	if len(obs) != pods {
		t.Fatalf("%d pods observed, want %d", len(obs), pods)
	}
	for _, o := range obs {
		if o.State != envoyadmin.StateLive {
			t.Errorf("%s: %s %s, want LIVE", o.Pod, o.State, o.Error)
		}
	}
}

func TestStartSweepsUntilCancelled(t *testing.T) {
	port := statusPort(t)
	s := sidecar(t, "127.0.0.2", port)
	p, _ := newProber(t, port, Options{Interval: 10 * time.Millisecond}, pod(ns, "cart-0", "cart", "127.0.0.2"))
	if !p.NeedLeaderElection() {
		t.Error("NeedLeaderElection() = false, want true: only the leader writes status")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()

	if got := receive(t, p); got != key(ns, "cart") {
		t.Errorf("first event for %s, want shop/cart", got)
	}
	s.SetVersion("v2")
	if got := receive(t, p); got != key(ns, "cart") {
		t.Errorf("event after the change for %s, want shop/cart", got)
	}
	if got := only(t, p, key(ns, "cart")); got.LDSVersion != "v2" {
		t.Errorf("LDSVersion = %q after a later sweep, want v2", got.LDSVersion)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Start returned %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Start did not return within 30s of cancellation")
	}
}

func TestOwnerLabelSelectsGatewayPods(t *testing.T) {
	port := statusPort(t)
	sidecar(t, "127.0.0.40", port).SetVersion("svc-v")
	sidecar(t, "127.0.0.41", port).SetVersion("gw-v")
	gw := pod(ns, "default-gateway-x", "", "127.0.0.41")
	gw.Labels = map[string]string{objects.GatewayLabel: "default"}
	objs := []client.Object{pod(ns, "cart-a", "cart", "127.0.0.40"), gw}

	services, _ := newProber(t, port, Options{}, objs...)
	gateways, _ := newProber(t, port, Options{OwnerLabel: objects.GatewayLabel}, objs...)
	sweep(services)
	sweep(gateways)

	if got := only(t, services, key(ns, "cart")); got.LDSVersion != "svc-v" {
		t.Errorf("service prober saw %+v", got)
	}
	if got := services.Observations(key(ns, "default")); len(got) != 0 {
		t.Errorf("service prober probed the gateway pod: %+v", got)
	}
	if got := only(t, gateways, key(ns, "default")); got.Pod != "default-gateway-x" || got.LDSVersion != "gw-v" {
		t.Errorf("gateway prober saw %+v", got)
	}
	if got := gateways.Observations(key(ns, "cart")); len(got) != 0 {
		t.Errorf("gateway prober probed a service pod: %+v", got)
	}
	// A gateway's owner is its ServiceMesh, and the events say so.
	if got := drainKind(t, gateways, "ServiceMesh"); !slices.Equal(got, []types.NamespacedName{key(ns, "default")}) {
		t.Errorf("gateway prober raised events for %v, want the ServiceMesh %s", got, key(ns, "default"))
	}
	if got := drainKind(t, services, "MeshService"); !slices.Equal(got, []types.NamespacedName{key(ns, "cart")}) {
		t.Errorf("service prober raised events for %v, want the MeshService %s", got, key(ns, "cart"))
	}
}
