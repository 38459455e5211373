package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// routeIndex indexes ServiceMeshes by the "namespace/name" of every MeshService
// their gateway routes to.
const routeIndex = "spec.gateway.routes.key"

// ServiceMeshReconciler runs each ServiceMesh's gateway and reports its members.
// Mesh-wide defaults reach the members through MeshServiceReconciler.
type ServiceMeshReconciler struct {
	client.Client
	Recorder      recorder.EventRecorder
	ClusterDomain string
	// TrustDomain of the workload identities, for the SPIFFE IDs the gateway requires of its targets.
	TrustDomain    string
	DefaultSidecar objects.Sidecar
	// Namespaces are the namespaces the manager's cache holds (none: all).
	// A route to a MeshService elsewhere cannot be resolved, and is reported as such.
	Namespaces []string
	// Gateways, when set, supplies what the prober observed of the gateway Envoys,
	// and GatewayEvents names the meshes whose observations changed.
	Gateways      ObservationSource
	GatewayEvents <-chan event.GenericEvent
	// ConflictRetry is how often a mesh whose gateway a foreign object blocks
	// looks again (0: DefaultConflictRetry); see retryBlocked.
	ConflictRetry time.Duration
	// XDS is the xDS delivery, nil when the manager serves no ADS.
	XDS *xdsDelivery

	applied appliedVersions
	// podMonitors remembers briefly that the PodMonitor CRD is missing.
	podMonitors podMonitorCRD
}

// +kubebuilder:rbac:groups=mesh.envoymesh.io,resources=servicemeshes,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.envoymesh.io,resources=servicemeshes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=delete
// +kubebuilder:rbac:groups="",resources=services;configmaps,verbs=delete
// +kubebuilder:rbac:groups=monitoring.coreos.com,resources=podmonitors,verbs=get;list;watch;create;patch;delete

// Reconcile converges one ServiceMesh.
func (r *ServiceMeshReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if !watches(r.Namespaces, req.Namespace) {
		return ctrl.Result{}, nil
	}
	mesh := &meshv1alpha1.ServiceMesh{}
	if err := r.Get(ctx, req.NamespacedName, mesh); err != nil {
		if apierrors.IsNotFound(err) {
			r.applied.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mesh.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	status := *mesh.Status.DeepCopy()

	var members meshv1alpha1.MeshServiceList
	if err := r.List(ctx, &members, client.InNamespace(mesh.Namespace), client.MatchingFields{meshIndex: mesh.Name}); err != nil {
		return ctrl.Result{}, err
	}
	status.Services, status.ReadyServices = int32(len(members.Items)), 0
	for i := range members.Items {
		if meta.IsStatusConditionTrue(members.Items[i].Status.Conditions, meshv1alpha1.ConditionReady) {
			status.ReadyServices++
		}
	}
	ready := meshReadyInputs{services: status.Services, readyServices: status.ReadyServices}

	if mesh.Spec.Gateway == nil || !mesh.Spec.Gateway.Enabled {
		status.Gateway = nil
		meta.RemoveStatusCondition(&status.Conditions, ConditionRoutesResolved)
		if err := r.deleteGateway(ctx, mesh); err != nil {
			return ctrl.Result{}, err
		}
	} else {
		var err error
		ready.gateway, ready.failure, err = r.reconcileGateway(ctx, mesh, &status)
		if err != nil {
			return ctrl.Result{}, err
		}
	}

	retryMetrics, err := r.reconcilePodMonitor(ctx, mesh, &status)
	if err != nil {
		return ctrl.Result{}, err
	}

	setConditions(&status.Conditions, mesh.Generation, meshReadyCondition(ready))
	if ready.failure == nil {
		status.ObservedGeneration = mesh.Generation
	}
	if err := r.writeMeshStatus(ctx, mesh, status); err != nil {
		return ctrl.Result{}, err
	}
	if retryMetrics {
		// Nothing is watched that would tell us the CRD was installed or the
		// foreign PodMonitor deleted: look again later.
		return ctrl.Result{RequeueAfter: podMonitorRetry}, nil
	}
	return ctrl.Result{}, nil
}

// podMonitorRetry is how soon a mesh whose PodMonitor could not be written
// looks again; podMonitorCRDRecheck is how long a missing CRD is believed.
const (
	podMonitorRetry      = time.Minute
	podMonitorCRDRecheck = 30 * time.Second
)

// podMonitorGVK is the Prometheus Operator's PodMonitor.
var podMonitorGVK = schema.GroupVersionKind{Group: objects.PodMonitorGroup, Version: objects.PodMonitorVersion, Kind: objects.PodMonitorKind}

// podMonitorCRD answers whether the PodMonitor CRD is installed, by the REST
// mapper (which caches what it found and asks discovery again on a miss). A
// miss is remembered for podMonitorCRDRecheck, so that meshes asking for a
// PodMonitor on a cluster without the CRD do not each cost a discovery call
// per reconcile. The zero value is ready; it is safe for concurrent use.
type podMonitorCRD struct {
	mu          sync.Mutex
	missingTill time.Time
}

func (p *podMonitorCRD) installed(mapper meta.RESTMapper, now time.Time) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Before(p.missingTill) {
		return false, nil
	}
	_, err := mapper.RESTMapping(podMonitorGVK.GroupKind(), podMonitorGVK.Version)
	switch {
	case meta.IsNoMatchError(err):
		p.missingTill = now.Add(podMonitorCRDRecheck)
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// forget drops a remembered miss: the API server answered as if the CRD were
// gone, or it is back.
func (p *podMonitorCRD) forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.missingTill = time.Time{}
}

// reconcilePodMonitor writes the mesh's PodMonitor when spec.metrics.podMonitor
// asks for one and the CRD is installed, and reports it as MetricsScraped; it
// deletes the PodMonitor the mesh controls when it no longer asks (found by the
// condition, so a mesh that never asked costs no API call). retry is true when
// the PodMonitor could not be written for a reason no watch would report.
func (r *ServiceMeshReconciler) reconcilePodMonitor(ctx context.Context, mesh *meshv1alpha1.ServiceMesh,
	status *meshv1alpha1.ServiceMeshStatus) (retry bool, err error) {
	if mesh.Spec.Metrics == nil || !mesh.Spec.Metrics.PodMonitor {
		if meta.FindStatusCondition(status.Conditions, ConditionMetricsScraped) == nil {
			return false, nil
		}
		if err := r.deletePodMonitor(ctx, mesh); err != nil {
			return false, err
		}
		meta.RemoveStatusCondition(&status.Conditions, ConditionMetricsScraped)
		return false, nil
	}

	installed, err := r.podMonitors.installed(r.RESTMapper(), time.Now())
	if err != nil {
		return false, err
	}
	if !installed {
		setConditions(&status.Conditions, mesh.Generation, podMonitorCRDMissingCondition())
		return true, nil
	}
	pm := objects.PodMonitor(mesh)
	existing := &unstructured.Unstructured{}
	existing.SetGroupVersionKind(podMonitorGVK)
	err = applyAllOwned(ctx, r.Client, &r.applied, mesh, []ownedObject{owned(pm, existing)})
	var notOwned *errNotOwned
	switch {
	case errors.As(err, &notOwned):
		r.Recorder.Eventf(mesh, nil, corev1.EventTypeWarning, ReasonConflict, "Apply", "%v", err)
		setConditions(&status.Conditions, mesh.Generation, podMonitorConflictCondition(err))
		return true, nil
	case meta.IsNoMatchError(err) || apierrors.IsNotFound(err):
		// The CRD went away after the mapper saw it.
		r.podMonitors.forget()
		setConditions(&status.Conditions, mesh.Generation, podMonitorCRDMissingCondition())
		return true, nil
	case err != nil:
		r.Recorder.Eventf(mesh, nil, corev1.EventTypeWarning, "ApplyFailed", "Apply", "%v", err)
		return false, err
	}
	setConditions(&status.Conditions, mesh.Generation, podMonitorAppliedCondition(client.ObjectKeyFromObject(pm).String()))
	return false, nil
}

// deletePodMonitor removes the mesh's PodMonitor if the mesh controls it; a
// foreign one of that name, or none at all (nor the CRD), is left as it is.
func (r *ServiceMeshReconciler) deletePodMonitor(ctx context.Context, mesh *meshv1alpha1.ServiceMesh) error {
	pm := &unstructured.Unstructured{}
	pm.SetGroupVersionKind(podMonitorGVK)
	pm.SetNamespace(mesh.Namespace)
	pm.SetName(objects.PodMonitorName(mesh))
	if err := deleteControlled(ctx, r.Client, mesh, pm); !meta.IsNoMatchError(err) {
		return err
	}
	return nil
}

// reconcileGateway applies the gateway and reports it in status. It returns
// the gateway's state, or the failure that kept every gateway object from being
// applied (a build error or a foreign object holding one of their names); an
// error is worth a retry.
func (r *ServiceMeshReconciler) reconcileGateway(ctx context.Context, mesh *meshv1alpha1.ServiceMesh,
	status *meshv1alpha1.ServiceMeshStatus) (*gatewayState, *failure, error) {
	routes, err := r.gatewayRoutes(ctx, mesh)
	if err != nil {
		return nil, nil, err
	}
	setConditions(&status.Conditions, mesh.Generation, routesResolvedCondition(routes.missing, routes.notAllowed, routes.outside, len(mesh.Spec.Gateway.Routes)))

	cfg, err := r.gatewayConfig(ctx, mesh, routes, withoutEndpoints)
	var readErr apiError
	switch {
	case errors.As(err, &readErr):
		return nil, nil, err
	case err != nil:
		reason := ReasonInvalidConfig
		if errors.Is(err, errNoXDSServer) {
			reason = ReasonNoXDSServer
		}
		r.Recorder.Eventf(mesh, nil, corev1.EventTypeWarning, reason, "Build", "%v", err)
		return nil, &failure{reason: reason, message: err.Error()}, nil
	}
	sidecar := objects.ResolveSidecar(r.DefaultSidecar, mesh.Spec.Sidecar)
	sidecar.XDS = meshv1alpha1.DeliveryModeOf(mesh) == meshv1alpha1.DeliveryXDS
	objs := []ownedObject{
		// First: the gateway's pods run as it. Disabling the gateway leaves it
		// (it holds nothing); deleting the mesh collects it.
		owned(objects.GatewayServiceAccount(mesh), &corev1.ServiceAccount{}),
		envoyConfigMap(mesh, objects.GatewayConfigMapName(mesh), cfg, func(files *envoyconfig.Output) *corev1.ConfigMap {
			return objects.GatewayConfigMap(mesh, files)
		}),
		owned(objects.GatewayService(mesh), &corev1.Service{}),
		// Before the pods: they are never reachable beyond the listener and status port.
		owned(objects.GatewayNetworkPolicy(mesh), &networkingv1.NetworkPolicy{}),
		owned(objects.GatewayDeployment(mesh, sidecar, cfg.BootstrapVersion), &appsv1.Deployment{}),
	}
	wantPDB := mesh.Spec.Gateway.Disruption != nil
	if wantPDB {
		objs = append(objs, owned(objects.GatewayPodDisruptionBudget(mesh), &policyv1.PodDisruptionBudget{}))
	}
	err = applyAllOwned(ctx, r.Client, &r.applied, mesh, objs)
	if err == nil && !wantPDB {
		// No budget (any more): the PodDisruptionBudget goes, if it is ours.
		err = deleteControlled(ctx, r.Client, mesh, gatewayPodDisruptionBudget(mesh))
	}
	var notOwned *errNotOwned
	switch {
	case errors.As(err, &notOwned):
		// Looked at again every ConflictRetry (retryBlocked), at once when a
		// labelled foreign object is deleted (gatewayOf).
		r.Recorder.Eventf(mesh, nil, corev1.EventTypeWarning, ReasonConflict, "Apply", "%v", err)
		return nil, &failure{reason: ReasonConflict, message: err.Error()}, nil
	case err != nil:
		r.Recorder.Eventf(mesh, nil, corev1.EventTypeWarning, "ApplyFailed", "Apply", "%v", err)
		return nil, nil, err
	}

	dep, svc := &appsv1.Deployment{}, &corev1.Service{}
	key := types.NamespacedName{Namespace: mesh.Namespace, Name: objects.GatewayName(mesh)}
	if err := r.Get(ctx, key, dep); client.IgnoreNotFound(err) != nil {
		return nil, nil, err
	}
	if err := r.Get(ctx, key, svc); client.IgnoreNotFound(err) != nil {
		return nil, nil, err
	}
	gw := &gatewayState{deployment: deploymentReadiness(dep), configVersion: cfg.Version}
	status.Gateway = &meshv1alpha1.GatewayStatus{
		Replicas: gw.deployment.replicas, ReadyReplicas: gw.deployment.readyReplicas, Address: gatewayAddress(svc),
		ConfigVersion: cfg.Version,
	}
	if r.Gateways != nil {
		obs := r.Gateways.Observations(client.ObjectKeyFromObject(mesh))
		if r.XDS != nil && meshv1alpha1.DeliveryModeOf(mesh) == meshv1alpha1.DeliveryXDS {
			obs, _ = streamObservations(obs, r.XDS.status(gatewayNodeKey(mesh)), mesh.Namespace)
		}
		synced := countSynced(obs, cfg.Version)
		gw.synced = &synced
		status.Gateway.Synced = synced
	}
	return gw, nil, nil
}

// gatewayRouting is what the gateway's routes resolved to: the targets found,
// and those missing, refusing the gateway, or outside the watched namespaces.
type gatewayRouting struct {
	found               map[types.NamespacedName]*meshv1alpha1.MeshService
	missing, notAllowed []string
	outside             notWatched
}

// gatewayRoutes resolves the gateway's routes.
func (r *ServiceMeshReconciler) gatewayRoutes(ctx context.Context, mesh *meshv1alpha1.ServiceMesh) (gatewayRouting, error) {
	routes := gatewayRouting{found: map[types.NamespacedName]*meshv1alpha1.MeshService{}, outside: notWatched{watched: r.Namespaces}}
	for _, route := range mesh.Spec.Gateway.Routes {
		key := route.Key(mesh.Namespace)
		if !watches(r.Namespaces, key.Namespace) {
			// The cache cannot read it: its routes answer 503 like a missing target's.
			routes.outside.keys = append(routes.outside.keys, key.String())
			continue
		}
		ms := &meshv1alpha1.MeshService{}
		err := r.Get(ctx, key, ms)
		switch {
		case apierrors.IsNotFound(err) || err == nil && !ms.DeletionTimestamp.IsZero():
			routes.missing = append(routes.missing, key.String())
		case err != nil:
			return routes, err
		case !consents(ms, mesh.Namespace, objects.GatewayServiceAccountName(mesh)):
			// Routing is a declaration; another namespace must consent to it.
			routes.notAllowed = append(routes.notAllowed, key.String())
		default:
			routes.found[key] = ms
		}
	}
	return routes, nil
}

// gatewayConfig builds what the gateway's Envoys run, for the ConfigMap and
// the xDS snapshot alike. A failure to read inputs comes as apiError.
func (r *ServiceMeshReconciler) gatewayConfig(ctx context.Context, mesh *meshv1alpha1.ServiceMesh, routes gatewayRouting, endpoints endpointsWanted) (*envoyconfig.Resources, error) {
	resolved, err := r.gatewayFor(ctx, mesh, routes.found, routes.notAllowed)
	if err != nil {
		return nil, apiError{err}
	}
	opts := envoyconfig.Options{ClusterDomain: r.ClusterDomain}
	if meshv1alpha1.DeliveryModeOf(mesh) == meshv1alpha1.DeliveryXDS {
		if r.XDS == nil {
			return nil, errNoXDSServer
		}
		opts.Delivery = &r.XDS.ads
		if endpoints {
			if opts.Endpoints, err = upstreamEndpoints(ctx, r.Client, routes.found); err != nil {
				return nil, apiError{err}
			}
		}
	}
	return envoyconfig.BuildGateway(resolved, opts)
}

// gatewayAddress is the LoadBalancer ingress when there is one, else the ClusterIP.
func gatewayAddress(svc *corev1.Service) string {
	for _, in := range svc.Status.LoadBalancer.Ingress {
		if in.Hostname != "" {
			return in.Hostname
		}
		if in.IP != "" {
			return in.IP
		}
	}
	return svc.Spec.ClusterIP
}

// gatewayFor resolves the gateway: routes without consent answer 403, and with an
// identity the gateway calls each target whose mesh has one over mTLS.
func (r *ServiceMeshReconciler) gatewayFor(ctx context.Context, mesh *meshv1alpha1.ServiceMesh,
	found map[types.NamespacedName]*meshv1alpha1.MeshService, notAllowed []string) (envoyconfig.Gateway, error) {
	gw := envoyconfig.GatewayFor(mesh, found)
	gw.Security = meshSecurity(mesh, nil)
	for i := range gw.Routes {
		route := &gw.Routes[i]
		key := types.NamespacedName{Namespace: route.Namespace, Name: route.Name}
		if slices.Contains(notAllowed, key.String()) {
			route.NotAllowed = fmt.Sprintf("MeshService %s does not consent to gateways of namespace %s (its spec.allowFrom does not name it)", key, mesh.Namespace)
			continue
		}
		target := found[key]
		if route.Target == nil || target == nil || gw.Security == nil {
			continue
		}
		targetMesh, err := meshOf(ctx, r.Client, target)
		if err != nil {
			return gw, err
		}
		route.Target.Peer = peerOf(target, targetMesh, r.TrustDomain, r.ClusterDomain)
	}
	return gw, nil
}

// deleteGateway removes the gateway objects this mesh controls, and nothing else.
func (r *ServiceMeshReconciler) deleteGateway(ctx context.Context, mesh *meshv1alpha1.ServiceMesh) error {
	for _, obj := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: mesh.Namespace, Name: objects.GatewayName(mesh)}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: mesh.Namespace, Name: objects.GatewayName(mesh)}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: mesh.Namespace, Name: objects.GatewayNetworkPolicyName(mesh)}},
		gatewayPodDisruptionBudget(mesh),
		&metav1.PartialObjectMetadata{TypeMeta: configMapMeta().TypeMeta,
			ObjectMeta: metav1.ObjectMeta{Namespace: mesh.Namespace, Name: objects.GatewayConfigMapName(mesh)}},
	} {
		if err := deleteControlled(ctx, r.Client, mesh, obj); err != nil {
			return err
		}
	}
	return nil
}

// gatewayPodDisruptionBudget is an empty PodDisruptionBudget named as the
// gateway's, for deleteControlled.
func gatewayPodDisruptionBudget(mesh *meshv1alpha1.ServiceMesh) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: mesh.Namespace, Name: objects.GatewayPodDisruptionBudgetName(mesh)}}
}

// meshesOf enqueues the mesh a MeshService names and every mesh routing to it.
func (r *ServiceMeshReconciler) meshesOf(ctx context.Context, obj client.Object) []reconcile.Request {
	ms := obj.(*meshv1alpha1.MeshService)
	reqs := []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ms.Namespace, Name: ms.Spec.Mesh}}}
	return append(reqs, r.routingTo(ctx, client.ObjectKeyFromObject(ms))...)
}

// routingTo lists the meshes whose gateway routes to the MeshService key.
func (r *ServiceMeshReconciler) routingTo(ctx context.Context, key types.NamespacedName) []reconcile.Request {
	var routing meshv1alpha1.ServiceMeshList
	if err := r.List(ctx, &routing, client.MatchingFields{routeIndex: key.String()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing ServiceMeshes routing to a MeshService")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(routing.Items))
	for i := range routing.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&routing.Items[i])})
	}
	return reqs
}

// gatewayOf turns a mapping from an object to the MeshService whose name it
// would carry (sameName, configMapOf) into one to the ServiceMesh whose gateway
// would carry it: "<mesh>-gateway" maps to <mesh>.
func gatewayOf(names handler.MapFunc) handler.MapFunc {
	return func(ctx context.Context, obj client.Object) []reconcile.Request {
		var reqs []reconcile.Request
		for _, req := range names(ctx, obj) {
			if mesh, ok := strings.CutSuffix(req.Name, objects.GatewaySuffix); ok && mesh != "" {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: req.Namespace, Name: mesh}})
			}
		}
		return reqs
	}
}

// SetupWithManager registers the route index and the watches.
func (r *ServiceMeshReconciler) SetupWithManager(mgr ctrl.Manager) error {
	err := mgr.GetFieldIndexer().IndexField(context.Background(), &meshv1alpha1.ServiceMesh{}, routeIndex, indexKeys(routeKeysOf))
	if err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).
		For(&meshv1alpha1.ServiceMesh{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&corev1.ConfigMap{}, builder.OnlyMetadata).
		// A foreign object blocking one of the gateway's names may go away at any
		// time; its deletion is what lets the blocked mesh converge. Only labelled
		// ones are cached and seen here; an unlabelled one is looked for again
		// every ConflictRetry (retryBlocked).
		Watches(&appsv1.Deployment{}, handler.EnqueueRequestsFromMapFunc(gatewayOf(sameName)), builder.WithPredicates(deletedOnly)).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(gatewayOf(sameName)), builder.WithPredicates(deletedOnly)).
		Watches(&corev1.ServiceAccount{}, handler.EnqueueRequestsFromMapFunc(gatewayOf(sameName)), builder.WithPredicates(deletedOnly)).
		Watches(&networkingv1.NetworkPolicy{}, handler.EnqueueRequestsFromMapFunc(gatewayOf(sameName)), builder.WithPredicates(deletedOnly)).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(gatewayOf(configMapOf)), builder.OnlyMetadata, builder.WithPredicates(deletedOnly)).
		// Members' readiness and routed services' ports feed the mesh's status and gateway.
		Watches(&meshv1alpha1.MeshService{}, handler.EnqueueRequestsFromMapFunc(r.meshesOf))
	if r.GatewayEvents != nil {
		b = b.WatchesRawSource(source.Channel(r.GatewayEvents, &handler.EnqueueRequestForObject{}))
	}
	if r.XDS != nil {
		// The gateway Envoys' ADS streams, for status.gateway.synced.
		b = b.WatchesRawSource(source.Channel(r.XDS.gatewayEvents, &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(withConflictRetry(mgr, r, &r.applied, r.ConflictRetry))
}
