package controllers

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// ServiceMesh condition types and reasons.
const (
	// ConditionRoutesResolved is True when every gateway route names an existing MeshService.
	ConditionRoutesResolved = "RoutesResolved"
	ReasonRouteNotFound     = "RouteNotFound"
	ReasonGatewayDisabled   = "GatewayDisabled"
)

// routeIndex indexes ServiceMeshes by the "namespace/name" of every MeshService
// their gateway routes to.
const routeIndex = "spec.gateway.routes.key"

// ServiceMeshReconciler runs each ServiceMesh's gateway and reports its members.
// Mesh-wide defaults reach the members through MeshServiceReconciler.
type ServiceMeshReconciler struct {
	client.Client
	Recorder       recorder.EventRecorder
	ClusterDomain  string
	DefaultSidecar objects.Sidecar
	// Gateways, when set, supplies what the prober observed of the gateway Envoys,
	// and GatewayEvents names the meshes whose observations changed.
	Gateways      ObservationSource
	GatewayEvents <-chan event.GenericEvent

	applied appliedVersions
}

// +kubebuilder:rbac:groups=mesh.envoymesh.io,resources=servicemeshes,verbs=get;list;watch
// +kubebuilder:rbac:groups=mesh.envoymesh.io,resources=servicemeshes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=delete
// +kubebuilder:rbac:groups="",resources=services;configmaps,verbs=delete

// Reconcile converges one ServiceMesh.
func (r *ServiceMeshReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
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
	setCond := func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: mesh.Generation})
	}

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

	gatewayReady, err := r.reconcileGateway(ctx, mesh, &status, setCond)
	if err != nil {
		var notOwned *errNotOwned
		if !errors.As(err, &notOwned) {
			r.Recorder.Eventf(mesh, nil, corev1.EventTypeWarning, "ApplyFailed", "Apply", "%v", err)
			return ctrl.Result{}, err
		}
		r.Recorder.Eventf(mesh, nil, corev1.EventTypeWarning, ReasonConflict, "Apply", "%v", err)
		setCond(meshv1alpha1.ConditionReady, false, ReasonConflict, err.Error())
		return ctrl.Result{}, r.writeMeshStatus(ctx, mesh, status)
	}

	switch {
	case !gatewayReady:
		// reconcileGateway set Ready with its reason.
	case status.ReadyServices < status.Services:
		setCond(meshv1alpha1.ConditionReady, false, ReasonProgressing,
			fmt.Sprintf("%d/%d MeshServices ready", status.ReadyServices, status.Services))
	default:
		setCond(meshv1alpha1.ConditionReady, true, ReasonAvailable,
			fmt.Sprintf("%d/%d MeshServices ready", status.ReadyServices, status.Services))
	}
	status.ObservedGeneration = mesh.Generation
	return ctrl.Result{}, r.writeMeshStatus(ctx, mesh, status)
}

// reconcileGateway applies (or, when disabled, removes) the gateway and reports
// it in status. It returns whether the gateway is ready.
func (r *ServiceMeshReconciler) reconcileGateway(ctx context.Context, mesh *meshv1alpha1.ServiceMesh,
	status *meshv1alpha1.ServiceMeshStatus, setCond func(t string, ok bool, reason, msg string)) (bool, error) {
	if mesh.Spec.Gateway == nil || !mesh.Spec.Gateway.Enabled {
		status.Gateway = nil
		meta.RemoveStatusCondition(&status.Conditions, ConditionRoutesResolved)
		return true, r.deleteGateway(ctx, mesh)
	}

	found := map[types.NamespacedName]*meshv1alpha1.MeshService{}
	var missing []string
	for _, route := range mesh.Spec.Gateway.Routes {
		key := route.Key(mesh.Namespace)
		ms := &meshv1alpha1.MeshService{}
		err := r.Get(ctx, key, ms)
		switch {
		case apierrors.IsNotFound(err) || err == nil && !ms.DeletionTimestamp.IsZero():
			missing = append(missing, key.String())
		case err != nil:
			return false, err
		default:
			found[key] = ms
		}
	}
	if len(missing) > 0 {
		setCond(ConditionRoutesResolved, false, ReasonRouteNotFound,
			fmt.Sprintf("MeshService %v not found; its routes answer 503 until it exists", missing))
	} else {
		setCond(ConditionRoutesResolved, true, ReasonResolved, fmt.Sprintf("all %d routes resolved", len(mesh.Spec.Gateway.Routes)))
	}

	cfg, err := gatewayFiles(envoyconfig.GatewayFor(mesh, found), envoyconfig.Options{ClusterDomain: r.ClusterDomain})
	if err != nil {
		r.Recorder.Eventf(mesh, nil, corev1.EventTypeWarning, ReasonInvalidConfig, "Build", "%v", err)
		setCond(meshv1alpha1.ConditionReady, false, ReasonInvalidConfig, err.Error())
		return false, nil
	}
	sidecar := objects.ResolveSidecar(r.DefaultSidecar, mesh.Spec.Sidecar)
	for _, o := range []ownedObject{
		{objects.GatewayConfigMap(mesh, cfg), configMapMeta()},
		{objects.GatewayService(mesh), &corev1.Service{}},
		{objects.GatewayDeployment(mesh, sidecar, cfg.BootstrapHash), &appsv1.Deployment{}},
	} {
		if err := applyOwned(ctx, r.Client, &r.applied, mesh, o.desired, o.existing); err != nil {
			return false, err
		}
	}

	dep, svc := &appsv1.Deployment{}, &corev1.Service{}
	key := types.NamespacedName{Namespace: mesh.Namespace, Name: objects.GatewayName(mesh)}
	if err := r.Get(ctx, key, dep); client.IgnoreNotFound(err) != nil {
		return false, err
	}
	if err := r.Get(ctx, key, svc); client.IgnoreNotFound(err) != nil {
		return false, err
	}
	status.Gateway = &meshv1alpha1.GatewayStatus{
		Replicas: dep.Status.Replicas, ReadyReplicas: dep.Status.ReadyReplicas, Address: gatewayAddress(svc),
		ConfigVersion: cfg.ConfigVersion,
	}
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	if dep.Status.ReadyReplicas < want || dep.Status.ObservedGeneration < dep.Generation {
		setCond(meshv1alpha1.ConditionReady, false, ReasonProgressing,
			fmt.Sprintf("gateway %d/%d replicas ready", dep.Status.ReadyReplicas, want))
		return false, nil
	}
	if r.Gateways != nil {
		for _, o := range r.Gateways.Observations(client.ObjectKeyFromObject(mesh)) {
			if o.State == envoyadmin.StateLive && o.LDSVersion == cfg.ConfigVersion && o.CDSVersion == cfg.ConfigVersion {
				status.Gateway.Synced++
			}
		}
		if status.Gateway.Synced < want {
			setCond(meshv1alpha1.ConditionReady, false, ReasonSidecarsNotReady,
				fmt.Sprintf("gateway %d/%d Envoys live on config version %s", status.Gateway.Synced, want, cfg.ConfigVersion))
			return false, nil
		}
	}
	return true, nil
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

// deleteGateway removes the gateway objects this mesh controls, and nothing else.
func (r *ServiceMeshReconciler) deleteGateway(ctx context.Context, mesh *meshv1alpha1.ServiceMesh) error {
	for _, obj := range []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: mesh.Namespace, Name: objects.GatewayName(mesh)}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: mesh.Namespace, Name: objects.GatewayName(mesh)}},
		&metav1.PartialObjectMetadata{TypeMeta: configMapMeta().TypeMeta,
			ObjectMeta: metav1.ObjectMeta{Namespace: mesh.Namespace, Name: objects.GatewayConfigMapName(mesh)}},
	} {
		err := r.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		if metav1.IsControlledBy(obj, mesh) {
			if err := r.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
				return err
			}
		}
	}
	return nil
}

// writeMeshStatus writes status once, and only when it changed.
func (r *ServiceMeshReconciler) writeMeshStatus(ctx context.Context, mesh *meshv1alpha1.ServiceMesh, status meshv1alpha1.ServiceMeshStatus) error {
	if equality.Semantic.DeepEqual(mesh.Status, status) {
		return nil
	}
	next := mesh.DeepCopy()
	next.Status = status
	return r.Status().Update(ctx, next)
}

// meshesOf enqueues the mesh a MeshService names and every mesh routing to it.
func (r *ServiceMeshReconciler) meshesOf(ctx context.Context, obj client.Object) []reconcile.Request {
	ms := obj.(*meshv1alpha1.MeshService)
	reqs := []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: ms.Namespace, Name: ms.Spec.Mesh}}}
	var routing meshv1alpha1.ServiceMeshList
	if err := r.List(ctx, &routing, client.MatchingFields{routeIndex: client.ObjectKeyFromObject(ms).String()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing ServiceMeshes routing to a MeshService")
		return reqs
	}
	for i := range routing.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&routing.Items[i])})
	}
	return reqs
}

// SetupWithManager registers the route index and the watches.
func (r *ServiceMeshReconciler) SetupWithManager(mgr ctrl.Manager) error {
	err := mgr.GetFieldIndexer().IndexField(context.Background(), &meshv1alpha1.ServiceMesh{}, routeIndex,
		func(o client.Object) []string {
			mesh := o.(*meshv1alpha1.ServiceMesh)
			if mesh.Spec.Gateway == nil {
				return nil
			}
			keys := make([]string, 0, len(mesh.Spec.Gateway.Routes))
			for _, route := range mesh.Spec.Gateway.Routes {
				keys = append(keys, route.Key(mesh.Namespace).String())
			}
			return keys
		})
	if err != nil {
		return err
	}
	b := ctrl.NewControllerManagedBy(mgr).
		For(&meshv1alpha1.ServiceMesh{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}, builder.OnlyMetadata).
		// Members' readiness and routed services' ports feed the mesh's status and gateway.
		Watches(&meshv1alpha1.MeshService{}, handler.EnqueueRequestsFromMapFunc(r.meshesOf))
	if r.GatewayEvents != nil {
		b = b.WatchesRawSource(source.Channel(r.GatewayEvents, &handler.EnqueueRequestForObject{}))
	}
	return b.Complete(r)
}
