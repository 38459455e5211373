package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
	"github.com/envoymesh/envoymesh-operator/internal/xds"
)

// XDSOptions configure xDS delivery: the ADS server every replica runs and
// what the bootstraps of XDS meshes dial.
type XDSOptions struct {
	// BindAddress is where the ADS server listens (":18000"); "" runs none, and
	// a mesh whose delivery is XDS then reports that it cannot be served.
	BindAddress string
	// Service is the Service in front of the replicas' servers: the bootstraps
	// dial <name>.<namespace>.svc.<cluster domain>:Port.
	Service types.NamespacedName
	Port    int32
	// Host, when set, is dialled instead of the Service's DNS name: the local
	// cluster, whose sidecar doubles run on the host, sets 127.0.0.1.
	Host string
	// ServiceAccount is the manager's, in Service.Namespace: the server's
	// certificate carries its SPIFFE ID, which the sidecars verify.
	ServiceAccount string
	// Replica names this replica's report of its streams (its pod's name).
	Replica string
}

// enabled reports whether the options ask for a server.
func (o XDSOptions) enabled() bool { return o.BindAddress != "" }

// validate names the missing option.
func (o XDSOptions) validate(id IdentityOptions) error {
	switch {
	case o.Service.Name == "" || o.Service.Namespace == "":
		return errors.New("xDS: the Service in front of the replicas (name and namespace) is required")
	case o.Port <= 0 || o.Port > 65535:
		return fmt.Errorf("xDS: port %d is not a port", o.Port)
	case o.ServiceAccount == "":
		return errors.New("xDS: the manager's ServiceAccount is required: the server's certificate names it")
	case o.Replica == "":
		return errors.New("xDS: the replica's name is required: it names the report of its streams")
	case id.CASecret.Name == "":
		return errors.New("xDS: the identity CA is required: the server's certificate and the sidecars' come from it")
	}
	return nil
}

// serverSPIFFEID is the manager's identity on the ADS channel.
func (o XDSOptions) serverSPIFFEID(trustDomain string) string {
	return identity.SPIFFEID(trustDomain, o.Service.Namespace, o.ServiceAccount)
}

// delivery is the bootstrap's config source for XDS meshes.
func (o XDSOptions) delivery(trustDomain, clusterDomain string) (envoyconfig.Delivery, error) {
	host := o.Host
	if host == "" {
		host = fmt.Sprintf("%s.%s.svc.%s", o.Service.Name, o.Service.Namespace, clusterDomain)
	}
	return envoyconfig.ADSDelivery(envoyconfig.ADS{Address: host, Port: o.Port, ServerSPIFFEID: o.serverSPIFFEID(trustDomain)})
}

// xdsDelivery is what the reconcilers need of xDS: the server (its snapshots and
// the status of its streams) and the bootstrap's config source. Nil when the
// manager runs no server.
type xdsDelivery struct {
	server *xds.Server
	ads    envoyconfig.Delivery
	// events names the MeshServices whose streams changed, for the leader's
	// status; gatewayEvents the ServiceMeshes whose gateway's did.
	events, gatewayEvents <-chan event.GenericEvent
	// reports are the other replicas' streams (read on the leader).
	reports *xdsReports
}

// status is what the streams of every replica tell of the proxies of key (a
// MeshService's or a gateway's NodeKey): this replica's, and those the others
// report.
func (d *xdsDelivery) status(key string) xds.NodeStatus {
	st := d.server.Status(key)
	st.Proxies = append(st.Proxies, d.reports.proxies(key)...)
	return st
}

// meshServiceNodeKey and gatewayNodeKey are the NodeKeys of a MeshService's
// sidecars and of a mesh's gateway Envoys.
func meshServiceNodeKey(ms *meshv1alpha1.MeshService) string {
	return xds.NodeKey(ms.Name, ms.Namespace)
}

func gatewayNodeKey(mesh *meshv1alpha1.ServiceMesh) string {
	return xds.NodeKey(objects.GatewayName(mesh), mesh.Namespace)
}

// errNoXDSServer is the build failure of an XDS mesh's member when the
// manager serves no ADS.
var errNoXDSServer = errors.New("spec.delivery of the ServiceMesh is XDS, but this operator runs no xDS server (--xds-bind-address is empty): the sidecars would get no listeners or clusters")

// setupXDS adds the ADS server, its credentials, the report of its streams
// and the snapshot controllers to mgr. They run on every replica, as a sidecar
// may connect to any of them; only the reports' reader runs on the leader.
func setupXDS(mgr ctrl.Manager, o ManagerOptions, ms *MeshServiceReconciler, meshes *ServiceMeshReconciler) (*xdsDelivery, error) {
	if err := o.XDS.validate(o.Identity); err != nil {
		return nil, err
	}
	ads, err := o.XDS.delivery(o.Identity.TrustDomain, o.ClusterDomain)
	if err != nil {
		return nil, err
	}
	creds := &xdsCredentials{Reader: mgr.GetClient(), CASecret: o.Identity.CASecret, SPIFFEID: o.XDS.serverSPIFFEID(o.Identity.TrustDomain), Now: time.Now}
	if err := setupXDSCredentials(mgr, creds); err != nil {
		return nil, err
	}
	services, gateways := newKeyNotifier(meshServiceOf), newKeyNotifier(gatewayMeshOf)
	notify := func(key string) {
		services.notify(key)
		// A MeshService may be named like a gateway (in another mesh): both look.
		if name, _ := splitKey(key); strings.HasSuffix(name, objects.GatewaySuffix) {
			gateways.notify(key)
		}
	}
	var reporter *xdsReporter
	server, err := xds.New(xds.Options{
		Address:   o.XDS.BindAddress,
		TLS:       creds.TLSConfig(),
		Authorize: nodeAuthorizer(mgr.GetClient(), o.Identity.TrustDomain),
		OnChange: func(key string) {
			notify(key)
			reporter.changed()
		},
		Log: ctrl.Log.WithName("xds"),
	})
	if err != nil {
		return nil, err
	}
	reporter, reports, err := setupXDSReports(mgr, server, o.XDS.Replica, o.XDS.Service.Namespace, notify)
	if err != nil {
		return nil, err
	}
	for _, r := range []interface{ Start(context.Context) error }{server, services, gateways} {
		if err := mgr.Add(nonLeader{r}); err != nil {
			return nil, err
		}
	}
	snapshots := &xdsSnapshotReconciler{Client: mgr.GetClient(), Builder: ms, Server: server}
	if err := snapshots.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	gatewaySnapshots := &xdsGatewaySnapshotReconciler{Client: mgr.GetClient(), Builder: meshes, Server: server}
	if err := gatewaySnapshots.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	if err := mgr.Add(nonLeader{&initialSnapshots{cache: mgr.GetCache(), snapshots: snapshots, gateways: gatewaySnapshots}}); err != nil {
		return nil, err
	}
	ready := func(req *http.Request) error {
		if !creds.Ready() {
			return errNoCredentials
		}
		return server.ReadyCheck(req)
	}
	if err := mgr.AddReadyzCheck("xds", ready); err != nil {
		return nil, err
	}
	return &xdsDelivery{server: server, ads: ads, events: services.events, gatewayEvents: gateways.events, reports: reports}, nil
}

// initialSnapshots makes a replica ready only once it can serve what it is
// asked: after the cache synced, it builds every XDS member's snapshot itself
// (the snapshot controller may not have got to them yet) and then marks the
// server synced, which its readiness check waits for.
type initialSnapshots struct {
	cache interface {
		WaitForCacheSync(context.Context) bool
	}
	snapshots *xdsSnapshotReconciler
	gateways  *xdsGatewaySnapshotReconciler
}

func (s *initialSnapshots) Start(ctx context.Context) error {
	if !s.cache.WaitForCacheSync(ctx) {
		return nil // stopping
	}
	// A failed pass (an API error) is retried: the replica stays unready meanwhile.
	for {
		n, err := s.buildAll(ctx)
		if err == nil {
			s.snapshots.Server.MarkSynced()
			log.FromContext(ctx).Info("xDS snapshots built; serving as ready", "meshServices", n)
			return nil
		}
		log.FromContext(ctx).Error(err, "xDS: building the first snapshots; retrying")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (s *initialSnapshots) buildAll(ctx context.Context) (int, error) {
	var list meshv1alpha1.MeshServiceList
	if err := s.snapshots.List(ctx, &list); err != nil {
		return 0, fmt.Errorf("listing MeshServices: %w", err)
	}
	for i := range list.Items {
		req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
		if _, err := s.snapshots.Reconcile(ctx, req); err != nil {
			return 0, fmt.Errorf("the snapshot of %s: %w", req, err)
		}
	}
	var meshes meshv1alpha1.ServiceMeshList
	if err := s.snapshots.List(ctx, &meshes); err != nil {
		return 0, fmt.Errorf("listing ServiceMeshes: %w", err)
	}
	for i := range meshes.Items {
		req := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(&meshes.Items[i])}
		if _, err := s.gateways.Reconcile(ctx, req); err != nil {
			return 0, fmt.Errorf("the gateway snapshot of %s: %w", req, err)
		}
	}
	return len(list.Items) + len(meshes.Items), nil
}

// nonLeader runs a runnable on every replica.
type nonLeader struct {
	r interface{ Start(context.Context) error }
}

func (n nonLeader) Start(ctx context.Context) error { return n.r.Start(ctx) }
func (nonLeader) NeedLeaderElection() bool          { return false }

// splitKey reads xds.NodeKey back: namespaces hold no dots, so the last one
// separates them.
func splitKey(key string) (name, namespace string) {
	dot := strings.LastIndexByte(key, '.')
	if dot < 0 {
		return key, ""
	}
	return key[:dot], key[dot+1:]
}

// nodeAuthorizer admits a stream only when the certificate's SPIFFE ID is the
// identity of the MeshService (or gateway) whose config the node asks for, in a
// mesh whose delivery is XDS. Each proxy thus sees its own service's config and
// nothing else, and a proxy of another service, namespace or mesh is refused.
func nodeAuthorizer(c client.Reader, trustDomain string) func(*corev3.Node, string) error {
	return func(node *corev3.Node, spiffeID string) error {
		name, namespace, err := xds.ParseNode(node)
		if err != nil {
			return err
		}
		// Background: the callback has no request context; the cache read is local.
		want, err := nodeIdentity(context.Background(), c, trustDomain, name, namespace)
		if err != nil {
			return err
		}
		if spiffeID != want {
			return fmt.Errorf("%s asks for the config of %s/%s, whose identity is %s", spiffeID, namespace, name, want)
		}
		return nil
	}
}

// nodeIdentity is the SPIFFE ID of MeshService namespace/name, or else of the
// gateway of that name, when its mesh delivers over xDS.
func nodeIdentity(ctx context.Context, c client.Reader, trustDomain, name, namespace string) (string, error) {
	ms := &meshv1alpha1.MeshService{}
	err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, ms)
	switch {
	case err == nil:
		mesh, err := meshOf(ctx, c, ms)
		if err != nil {
			return "", err
		}
		if meshv1alpha1.DeliveryModeOf(mesh) != meshv1alpha1.DeliveryXDS {
			return "", fmt.Errorf("MeshService %s/%s is not in a mesh whose delivery is XDS", namespace, name)
		}
		return identity.SPIFFEID(trustDomain, namespace, objects.ServiceAccountName(ms)), nil
	case !apierrors.IsNotFound(err):
		return "", err
	}
	meshName, ok := strings.CutSuffix(name, objects.GatewaySuffix)
	if !ok {
		return "", fmt.Errorf("no MeshService %s/%s", namespace, name)
	}
	mesh := &meshv1alpha1.ServiceMesh{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: meshName}, mesh); err != nil {
		return "", fmt.Errorf("no MeshService or gateway %s/%s: %w", namespace, name, err)
	}
	if !gatewayOverXDS(mesh) {
		return "", fmt.Errorf("ServiceMesh %s/%s runs no gateway whose delivery is XDS", namespace, meshName)
	}
	return identity.SPIFFEID(trustDomain, namespace, objects.GatewayServiceAccountName(mesh)), nil
}

// gatewayOverXDS reports whether mesh runs a gateway that takes its config over xDS.
func gatewayOverXDS(mesh *meshv1alpha1.ServiceMesh) bool {
	return mesh.Spec.Gateway != nil && mesh.Spec.Gateway.Enabled && meshv1alpha1.DeliveryModeOf(mesh) == meshv1alpha1.DeliveryXDS
}

// keyNotifier turns the server's OnChange calls, which must not block, into
// GenericEvents for the MeshService controller: keys are collected in a set and sent by one
// goroutine, so a burst costs one event per key and nothing is dropped.
type keyNotifier struct {
	// object is what a key enqueues.
	object  func(key string) client.Object
	mu      sync.Mutex
	pending map[string]struct{}
	wake    chan struct{}
	out     chan event.GenericEvent
	events  <-chan event.GenericEvent
}

func newKeyNotifier(object func(key string) client.Object) *keyNotifier {
	out := make(chan event.GenericEvent)
	return &keyNotifier{object: object, pending: map[string]struct{}{}, wake: make(chan struct{}, 1), out: out, events: out}
}

// gatewayMeshOf is the ServiceMesh whose gateway a NodeKey names.
func gatewayMeshOf(key string) client.Object {
	mesh := &meshv1alpha1.ServiceMesh{}
	name, namespace := splitKey(key)
	mesh.Name, mesh.Namespace = strings.TrimSuffix(name, objects.GatewaySuffix), namespace
	return mesh
}

// meshServiceOf is the MeshService a NodeKey names.
func meshServiceOf(key string) client.Object {
	ms := &meshv1alpha1.MeshService{}
	ms.Name, ms.Namespace = splitKey(key)
	return ms
}

func (n *keyNotifier) notify(key string) {
	n.mu.Lock()
	n.pending[key] = struct{}{}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Start sends the pending keys until ctx ends. On a follower nothing reads the
// events (the status controllers run on the leader): the set just stays small.
func (n *keyNotifier) Start(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.wake:
		}
		n.mu.Lock()
		keys := make([]string, 0, len(n.pending))
		for k := range n.pending {
			keys = append(keys, k)
		}
		clear(n.pending)
		n.mu.Unlock()
		for _, k := range keys {
			select {
			case n.out <- event.GenericEvent{Object: n.object(k)}:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// xdsSnapshotReconciler keeps, on every replica, the snapshot of each
// MeshService of an XDS mesh: the same build as the leader's reconcile (one
// function, sidecarConfig), with endpoints from the upstreams' EndpointSlices.
// It writes nothing to the API server.
type xdsSnapshotReconciler struct {
	client.Client
	Builder *MeshServiceReconciler
	Server  *xds.Server
}

// +kubebuilder:rbac:groups=discovery.k8s.io,resources=endpointslices,verbs=get;list;watch

func (r *xdsSnapshotReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if !watches(r.Builder.Namespaces, req.Namespace) {
		return ctrl.Result{}, nil // a callee elsewhere, queued by a declaration
	}
	key := xds.NodeKey(req.Name, req.Namespace)
	ms := &meshv1alpha1.MeshService{}
	if err := r.Get(ctx, req.NamespacedName, ms); err != nil {
		if apierrors.IsNotFound(err) {
			r.Server.ClearSnapshot(key)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	mesh, err := meshOf(ctx, r.Client, ms)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !ms.DeletionTimestamp.IsZero() || meshv1alpha1.DeliveryModeOf(mesh) != meshv1alpha1.DeliveryXDS {
		// Decided before anything else is read: most meshes deliver by ConfigMap.
		r.Server.ClearSnapshot(key)
		return ctrl.Result{}, nil
	}
	found, err := r.Builder.findUpstreams(ctx, ms)
	if err != nil {
		return ctrl.Result{}, err
	}
	cfg, err := r.Builder.sidecarConfig(ctx, ms, mesh, found, newStatusBuilder(ms), withEndpoints)
	var readErr apiError
	switch {
	case errors.As(err, &readErr):
		return ctrl.Result{}, err
	case err != nil:
		// The leader reports it in status; this replica keeps the last good snapshot.
		log.FromContext(ctx).V(1).Info("no snapshot: the config does not build", "error", err.Error())
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.Server.SetSnapshot(ctx, key, cfg)
}

// SetupWithManager watches what a sidecar's config is made of: the
// MeshService, its mesh, its upstreams and callers (the same maps as the
// leader's controller), and the upstreams' EndpointSlices.
func (r *xdsSnapshotReconciler) SetupWithManager(mgr ctrl.Manager) error {
	ms := r.Builder
	return ctrl.NewControllerManagedBy(mgr).Named("xds-snapshots").
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false), MaxConcurrentReconciles: max(ms.MaxConcurrentReconciles, 1)}).
		For(&meshv1alpha1.MeshService{}).
		Watches(&meshv1alpha1.MeshService{}, handler.EnqueueRequestsFromMapFunc(ms.callersOf)).
		Watches(&meshv1alpha1.MeshService{}, declaredHandler(upstreamKeysOf)).
		Watches(&meshv1alpha1.ServiceMesh{}, handler.EnqueueRequestsFromMapFunc(ms.membersOf)).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(ms.callersOfSlice)).
		Complete(r)
}

// xdsGatewaySnapshotReconciler keeps, on every replica, the snapshot of each
// gateway of an XDS mesh, built as the leader builds its ConfigMap
// (gatewayConfig), with the route targets' endpoints.
type xdsGatewaySnapshotReconciler struct {
	client.Client
	Builder *ServiceMeshReconciler
	Server  *xds.Server
}

func (r *xdsGatewaySnapshotReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if !watches(r.Builder.Namespaces, req.Namespace) {
		return ctrl.Result{}, nil
	}
	key := xds.NodeKey(req.Name+objects.GatewaySuffix, req.Namespace)
	mesh := &meshv1alpha1.ServiceMesh{}
	if err := r.Get(ctx, req.NamespacedName, mesh); err != nil {
		if apierrors.IsNotFound(err) {
			r.Server.ClearSnapshot(key)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mesh.DeletionTimestamp.IsZero() || !gatewayOverXDS(mesh) {
		r.Server.ClearSnapshot(key)
		return ctrl.Result{}, nil
	}
	routes, err := r.Builder.gatewayRoutes(ctx, mesh)
	if err != nil {
		return ctrl.Result{}, err
	}
	cfg, err := r.Builder.gatewayConfig(ctx, mesh, routes, withEndpoints)
	var readErr apiError
	switch {
	case errors.As(err, &readErr):
		return ctrl.Result{}, err
	case err != nil:
		log.FromContext(ctx).V(1).Info("no gateway snapshot: the config does not build", "error", err.Error())
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.Server.SetSnapshot(ctx, key, cfg)
}

// SetupWithManager watches the mesh, its route targets and their EndpointSlices.
func (r *xdsGatewaySnapshotReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("xds-gateway-snapshots").
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false)}).
		For(&meshv1alpha1.ServiceMesh{}).
		Watches(&meshv1alpha1.MeshService{}, handler.EnqueueRequestsFromMapFunc(r.Builder.meshesOf)).
		Watches(&discoveryv1.EndpointSlice{}, handler.EnqueueRequestsFromMapFunc(r.routingToSlice)).
		Complete(r)
}

// routingToSlice enqueues the meshes whose gateway routes to the MeshService
// whose headless Service the EndpointSlice belongs to.
func (r *xdsGatewaySnapshotReconciler) routingToSlice(ctx context.Context, obj client.Object) []reconcile.Request {
	name := obj.GetLabels()[discoveryv1.LabelServiceName]
	if name == "" {
		return nil
	}
	return r.Builder.routingTo(ctx, types.NamespacedName{Namespace: obj.GetNamespace(), Name: name})
}

// callersOfSlice enqueues the callers of the MeshService whose headless
// Service the EndpointSlice belongs to.
func (r *MeshServiceReconciler) callersOfSlice(ctx context.Context, obj client.Object) []reconcile.Request {
	name := obj.GetLabels()[discoveryv1.LabelServiceName]
	if name == "" {
		return nil
	}
	key := types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}.String()
	return r.enqueueMatching(ctx, client.MatchingFields{upstreamIndex: key})
}

// sidecarConfig builds what a MeshService's Envoy runs, for the ConfigMap and
// for the xDS snapshot alike: its Service with the authorized callers and peers
// (recorded in st), delivered over files or, in XDS meshes, over ADS with the
// upstreams' endpoints. Any error but the build's comes wrapped as apiError.
func (r *MeshServiceReconciler) sidecarConfig(ctx context.Context, ms *meshv1alpha1.MeshService, mesh *meshv1alpha1.ServiceMesh,
	found map[types.NamespacedName]*meshv1alpha1.MeshService, st *statusBuilder, endpoints endpointsWanted) (*envoyconfig.Resources, error) {
	svc := envoyconfig.ServiceFor(ms, found, mesh)
	if err := r.authorize(ctx, ms, mesh, found, st, &svc); err != nil {
		return nil, apiError{err}
	}
	opts := envoyconfig.Options{ClusterDomain: r.ClusterDomain}
	if meshv1alpha1.DeliveryModeOf(mesh) == meshv1alpha1.DeliveryXDS {
		if r.XDS == nil {
			return nil, errNoXDSServer
		}
		opts.Delivery = &r.XDS.ads
		if endpoints {
			var err error
			if opts.Endpoints, err = upstreamEndpoints(ctx, r.Client, found); err != nil {
				return nil, apiError{err}
			}
		}
	}
	return envoyconfig.BuildSidecar(svc, opts)
}

// endpointsWanted says whether a build lists the upstreams' EndpointSlices.
// Only a snapshot needs them: the versions the leader writes to the ConfigMap
// and to status do not cover endpoints (Resources.EndpointsVersion does), so
// its reconcile skips the lists.
type endpointsWanted bool

const (
	withEndpoints    endpointsWanted = true
	withoutEndpoints endpointsWanted = false
)

// apiError marks a failure to read inputs (retried), as opposed to a config
// that does not build (reported).
type apiError struct{ error }

func (e apiError) Unwrap() error { return e.error }

// upstreamEndpoints is the load assignment of every found upstream (or route
// target), from the EndpointSlices of its headless Service.
func upstreamEndpoints(ctx context.Context, c client.Reader, found map[types.NamespacedName]*meshv1alpha1.MeshService) (map[string]*endpointv3.ClusterLoadAssignment, error) {
	out := make(map[string]*endpointv3.ClusterLoadAssignment, len(found))
	for key, up := range found {
		var slices discoveryv1.EndpointSliceList
		if err := c.List(ctx, &slices, client.InNamespace(key.Namespace), client.MatchingLabels{discoveryv1.LabelServiceName: key.Name}); err != nil {
			return nil, err
		}
		name := envoyconfig.UpstreamClusterName(key.Name, key.Namespace)
		out[name] = envoyconfig.ClusterLoadAssignment(name, up.Spec.ServicePort, slices.Items)
	}
	return out, nil
}
