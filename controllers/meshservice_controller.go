// Package controllers holds the reconcilers. They are thin: fetch inputs, call the
// pure builders in internal/, apply the results and write status once.
package controllers

import (
	"context"
	"errors"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/source"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// upstreamIndex indexes MeshServices by the "namespace/name" of every upstream they
// call, so a change to one MeshService re-reconciles exactly its callers.
const upstreamIndex = "spec.upstreams.key"

// meshIndex indexes MeshServices by spec.mesh, so a ServiceMesh change
// re-reconciles its members.
const meshIndex = "spec.mesh"

// MeshServiceReconciler writes each MeshService's ConfigMap, headless Service and
// Deployment, and reports their state in status.
type MeshServiceReconciler struct {
	client.Client
	Recorder recorder.EventRecorder

	// ClusterDomain is the cluster's DNS domain, used in upstream cluster addresses.
	ClusterDomain string
	// TrustDomain is the SPIFFE trust domain of the workload identities.
	TrustDomain string
	// DefaultSidecar applies where neither the mesh nor the MeshService set a field.
	DefaultSidecar objects.Sidecar
	// Sidecars, when set, supplies what the prober observed of each sidecar, and
	// SidecarEvents names the MeshServices whose observations changed.
	Sidecars      ObservationSource
	SidecarEvents <-chan event.GenericEvent
	// MaxConcurrentReconciles bounds parallel reconciles (0 means controller-runtime's default).
	MaxConcurrentReconciles int
	// Namespaces are the namespaces the manager's cache holds (none: all).
	// An upstream elsewhere cannot be looked up, and is reported as such.
	Namespaces []string
	// XDS is the xDS delivery, nil when the manager serves no ADS.
	XDS *xdsDelivery
	// ConflictRetry is how often a MeshService that a foreign object blocks looks
	// again (0: DefaultConflictRetry); see retryBlocked.
	ConflictRetry time.Duration

	applied appliedVersions
}

// +kubebuilder:rbac:groups=mesh.envoymesh.io,resources=meshservices,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.envoymesh.io,resources=meshservices/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=mesh.envoymesh.io,resources=servicemeshes,verbs=get;list;watch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=services;configmaps,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile converges one MeshService.
func (r *MeshServiceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if !watches(r.Namespaces, req.Namespace) {
		// A callee of another namespace, queued by a declaration (declaredHandler):
		// not ours to reconcile, and the cache cannot read it.
		return ctrl.Result{}, nil
	}
	ms := &meshv1alpha1.MeshService{}
	if err := r.Get(ctx, req.NamespacedName, ms); err != nil {
		if apierrors.IsNotFound(err) {
			r.applied.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ms.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}

	found, err := r.findUpstreams(ctx, ms)
	if err != nil {
		return ctrl.Result{}, err
	}
	mesh, err := meshOf(ctx, r.Client, ms)
	if err != nil {
		return ctrl.Result{}, err
	}

	st := newStatusBuilder(ms)
	missing, outside := st.upstreams(found, r.Namespaces)
	st.setConditions(upstreamsResolvedCondition(missing, outside, len(ms.Spec.Upstreams)))
	cfg, err := r.sidecarConfig(ctx, ms, mesh, found, st, withoutEndpoints)
	var readErr apiError
	switch {
	case errors.As(err, &readErr):
		return ctrl.Result{}, err
	case errors.Is(err, errNoXDSServer):
		return r.fail(ctx, ms, st, ReasonNoXDSServer, "Build", err)
	case err != nil:
		// The spec passed the API server, but Envoy would reject the result.
		return r.fail(ctx, ms, st, ReasonInvalidConfig, "Build", err)
	}
	if err := r.reportIdentity(ctx, ms, mesh, st); err != nil {
		return ctrl.Result{}, err
	}

	sidecar := objects.ResolveSidecar(r.DefaultSidecar, meshSidecar(mesh), ms.Spec.Sidecar)
	sidecar.XDS = meshv1alpha1.DeliveryModeOf(mesh) == meshv1alpha1.DeliveryXDS
	var objs []ownedObject
	if objects.OwnsServiceAccount(ms) {
		// First: the pods cannot be created before the ServiceAccount they run as.
		objs = append(objs, owned(objects.ServiceAccount(ms), &corev1.ServiceAccount{}))
	}
	objs = append(objs,
		envoyConfigMap(ms, objects.ConfigMapName(ms), cfg, func(files *envoyconfig.Output) *corev1.ConfigMap { return objects.ConfigMap(ms, files) }),
		owned(objects.Service(ms), &corev1.Service{}),
		owned(objects.Deployment(ms, sidecar, cfg.BootstrapVersion, meshv1alpha1.NeedsCertificate(mesh)), &appsv1.Deployment{}),
	)
	// What is no longer wanted goes once the rest is applied, if it is ours.
	var unwanted []client.Object
	if meshv1alpha1.MTLSModeOf(mesh) == meshv1alpha1.MTLSStrict {
		objs = append(objs, owned(objects.NetworkPolicy(ms), &networkingv1.NetworkPolicy{}))
	} else {
		unwanted = append(unwanted, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ms.Namespace, Name: ms.Name}})
	}
	if ms.Spec.Disruption != nil {
		objs = append(objs, owned(objects.PodDisruptionBudget(ms), &policyv1.PodDisruptionBudget{}))
	} else {
		unwanted = append(unwanted, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: ms.Namespace, Name: objects.PodDisruptionBudgetName(ms)}})
	}
	applyErr := applyAllOwned(ctx, r.Client, &r.applied, ms, objs)
	for _, obj := range unwanted {
		if applyErr != nil {
			break
		}
		applyErr = deleteControlled(ctx, r.Client, ms, obj)
	}
	var notOwned *errNotOwned
	switch {
	case errors.As(applyErr, &notOwned):
		// Nothing was applied. Looked at again every ConflictRetry (retryBlocked), at once
		// when a labelled foreign object is deleted (deletedOnly).
		return r.fail(ctx, ms, st, ReasonConflict, "Apply", applyErr)
	case applyErr != nil:
		r.Recorder.Eventf(ms, nil, corev1.EventTypeWarning, "ApplyFailed", "Apply", "%v", applyErr)
		return ctrl.Result{}, applyErr
	}
	st.configVersion(cfg.Version)

	dep := &appsv1.Deployment{}
	if err := r.Get(ctx, req.NamespacedName, dep); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, err
	}
	ready := meshServiceReadyInputs{deployment: st.deployment(dep), configVersion: cfg.Version}
	if mesh == nil {
		ready.missingMesh = ms.Spec.Mesh
	}
	if r.Sidecars != nil {
		sc := st.sidecars(r.observations(ms, mesh))
		ready.sidecars = &sc
		st.setConditions(configSyncedCondition(sc, cfg.Version))
	}
	st.setConditions(meshServiceReadyCondition(ready))
	if rise := newlyDenied(ms.Status.Proxies, st.status.Proxies); len(rise.pods) > 0 {
		r.Recorder.Eventf(ms, nil, corev1.EventTypeWarning, ReasonRequestsDenied, "Probe", "%s", rise.message())
	}
	if newlyRejected(ms.Status, st.status) {
		r.Recorder.Eventf(ms, nil, corev1.EventTypeWarning, ReasonRejected, "Probe", "%s",
			meta.FindStatusCondition(st.status.Conditions, meshv1alpha1.ConditionConfigSynced).Message)
	}
	for _, nack := range newlyNACKed(ms.Status.Proxies, st.status.Proxies) {
		r.Recorder.Eventf(ms, nil, corev1.EventTypeWarning, ReasonXDSRejected, "Push", "%s", nack)
	}
	st.succeeded()
	return ctrl.Result{}, r.writeStatus(ctx, ms, st)
}

// fail reports what only a change of the spec or of a foreign object can fix: a
// Warning event, Ready=False with the reason, observedGeneration left where it
// was, and no retry. What the failed reconcile did not get to observe
// (configVersion, replicas, sidecars) stays as last reported.
func (r *MeshServiceReconciler) fail(ctx context.Context, ms *meshv1alpha1.MeshService, st *statusBuilder, reason, action string, err error) (ctrl.Result, error) {
	r.Recorder.Eventf(ms, nil, corev1.EventTypeWarning, reason, action, "%v", err)
	st.setConditions(meshServiceReadyCondition(meshServiceReadyInputs{failure: &failure{reason: reason, message: err.Error()}}))
	return ctrl.Result{}, r.writeStatus(ctx, ms, st)
}

// findUpstreamMeshes returns the ServiceMesh of each found upstream (nil when it
// has none: built-in defaults), whose modes decide whether it will accept us.
func (r *MeshServiceReconciler) findUpstreamMeshes(ctx context.Context, found map[types.NamespacedName]*meshv1alpha1.MeshService) (map[types.NamespacedName]*meshv1alpha1.ServiceMesh, error) {
	meshes := make(map[types.NamespacedName]*meshv1alpha1.ServiceMesh, len(found))
	for key, up := range found {
		mesh, err := meshOf(ctx, r.Client, up)
		if err != nil {
			return nil, err
		}
		meshes[key] = mesh
	}
	return meshes, nil
}

// findUpstreams returns the upstream MeshServices that exist, by key. Those in
// a namespace the manager does not watch are not looked up (the cache would
// fail the read) and so are not found.
func (r *MeshServiceReconciler) findUpstreams(ctx context.Context, ms *meshv1alpha1.MeshService) (map[types.NamespacedName]*meshv1alpha1.MeshService, error) {
	found := map[types.NamespacedName]*meshv1alpha1.MeshService{}
	for _, u := range ms.Spec.Upstreams {
		key := u.Key(ms.Namespace)
		if !watches(r.Namespaces, key.Namespace) {
			continue
		}
		up := &meshv1alpha1.MeshService{}
		err := r.Get(ctx, key, up)
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, err
		}
		if up.DeletionTimestamp.IsZero() {
			found[key] = up
		}
	}
	return found, nil
}

// meshOf returns the ServiceMesh a MeshService names, or nil when it does not
// exist: built-in defaults then apply (mTLS Strict, authorization Enforce).
func meshOf(ctx context.Context, c client.Reader, ms *meshv1alpha1.MeshService) (*meshv1alpha1.ServiceMesh, error) {
	mesh := &meshv1alpha1.ServiceMesh{}
	err := c.Get(ctx, types.NamespacedName{Namespace: ms.Namespace, Name: ms.Spec.Mesh}, mesh)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return mesh, nil
}

func meshSidecar(mesh *meshv1alpha1.ServiceMesh) *meshv1alpha1.SidecarSettings {
	if mesh == nil {
		return nil
	}
	return mesh.Spec.Sidecar
}

// membersOf enqueues every MeshService of the namespace that names the mesh.
func (r *MeshServiceReconciler) membersOf(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.enqueueMatching(ctx, client.InNamespace(obj.GetNamespace()), client.MatchingFields{meshIndex: obj.GetName()})
}

// callersOf enqueues every MeshService that names obj as an upstream.
func (r *MeshServiceReconciler) callersOf(ctx context.Context, obj client.Object) []reconcile.Request {
	key := types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}.String()
	return r.enqueueMatching(ctx, client.MatchingFields{upstreamIndex: key})
}

func (r *MeshServiceReconciler) enqueueMatching(ctx context.Context, opts ...client.ListOption) []reconcile.Request {
	var list meshv1alpha1.MeshServiceList
	if err := r.List(ctx, &list, opts...); err != nil {
		log.FromContext(ctx).Error(err, "listing MeshServices to enqueue")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// sameName maps a Deployment or Service to the MeshService whose name it would
// carry.
func sameName(_ context.Context, obj client.Object) []reconcile.Request {
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}}}
}

// configMapOf maps a ConfigMap to the MeshService whose Envoy config it would
// hold (objects.ConfigMapName). It sees metadata only, so it goes by name.
func configMapOf(_ context.Context, obj client.Object) []reconcile.Request {
	name, found := strings.CutSuffix(obj.GetName(), objects.ConfigMapSuffix)
	if !found {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}}}
}

// notCreated passes every event but creation. Objects a MeshService controls are
// only ever created by its own reconcile (or seen for the first time when the
// manager starts, together with the MeshService itself); their updates (drift,
// Deployment status) and deletions still count.
var notCreated = predicate.Funcs{CreateFunc: func(event.CreateEvent) bool { return false }}

// deletedOnly passes deletions of objects no MeshService controls (Owns already
// covers those it does).
var deletedOnly = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	DeleteFunc: func(e event.DeleteEvent) bool {
		ref := metav1.GetControllerOf(e.Object)
		return ref == nil || ref.APIVersion != meshv1alpha1.GroupVersion.String()
	},
}

// SetupWithManager registers the upstream index and the watches.
func (r *MeshServiceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	err := mgr.GetFieldIndexer().IndexField(context.Background(), &meshv1alpha1.MeshService{}, upstreamIndex, indexKeys(upstreamKeysOf))
	if err != nil {
		return err
	}
	err = mgr.GetFieldIndexer().IndexField(context.Background(), &meshv1alpha1.MeshService{}, meshIndex,
		func(o client.Object) []string { return []string{o.(*meshv1alpha1.MeshService).Spec.Mesh} })
	if err != nil {
		return err
	}
	err = mgr.GetFieldIndexer().IndexField(context.Background(), &meshv1alpha1.MeshService{}, serviceAccountIndex, serviceAccountKey)
	if err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).
		// Our own status writes and the creates of what we own only echo a
		// reconcile that has just happened: reacting to them would reconcile
		// every MeshService twice, and at scale the echoes queue in front of
		// the work that matters.
		For(&meshv1alpha1.MeshService{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}, builder.WithPredicates(notCreated)).
		Owns(&corev1.Service{}, builder.WithPredicates(notCreated)).
		Owns(&corev1.ServiceAccount{}, builder.WithPredicates(notCreated)).
		Owns(&networkingv1.NetworkPolicy{}, builder.WithPredicates(notCreated)).
		Owns(&policyv1.PodDisruptionBudget{}, builder.WithPredicates(notCreated)).
		// ConfigMaps are watched as metadata only: we write their data and
		// never read it back, and the API server need not send it to us.
		Owns(&corev1.ConfigMap{}, builder.OnlyMetadata, builder.WithPredicates(notCreated)).
		// A foreign object blocking one of our names may go away at any time; its
		// deletion is what lets the blocked MeshService converge. The cache holds
		// only objects with our label (cacheOptions), so these see the deletion of
		// a labelled foreign object (an orphan of a MeshService deleted with
		// --cascade=orphan) at once; an unlabelled one is looked for again every
		// ConflictRetry (retryBlocked).
		Watches(&appsv1.Deployment{}, handler.EnqueueRequestsFromMapFunc(sameName), builder.WithPredicates(deletedOnly)).
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(sameName), builder.WithPredicates(deletedOnly)).
		Watches(&corev1.ServiceAccount{}, handler.EnqueueRequestsFromMapFunc(sameName), builder.WithPredicates(deletedOnly)).
		Watches(&networkingv1.NetworkPolicy{}, handler.EnqueueRequestsFromMapFunc(sameName), builder.WithPredicates(deletedOnly)).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(configMapOf), builder.OnlyMetadata, builder.WithPredicates(deletedOnly)).
		// Callers depend on an upstream's existence and spec, not on its status.
		Watches(&meshv1alpha1.MeshService{}, handler.EnqueueRequestsFromMapFunc(r.callersOf),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// MeshServices running as one ServiceAccount share an identity, and say so.
		Watches(&meshv1alpha1.MeshService{}, r.sharersHandler()).
		// A callee's policy lists its callers: a declaration made or withdrawn,
		// or a caller's identity changed, re-reconciles the callees before and after.
		Watches(&meshv1alpha1.MeshService{}, declaredHandler(upstreamKeysOf)).
		Watches(&meshv1alpha1.ServiceMesh{}, declaredHandler(routeKeysOf)).
		Watches(&meshv1alpha1.ServiceMesh{}, handler.EnqueueRequestsFromMapFunc(r.membersOf),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controllerOptions(r.MaxConcurrentReconciles))
	if r.SidecarEvents != nil {
		b = b.WatchesRawSource(source.Channel(r.SidecarEvents, &handler.EnqueueRequestForObject{}))
	}
	if r.XDS != nil {
		// ACKs, NACKs and streams coming and going, for status.
		b = b.WatchesRawSource(source.Channel(r.XDS.events, &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(withConflictRetry(mgr, r, &r.applied, r.ConflictRetry))
}
