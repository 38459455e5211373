package controllers

import (
	"context"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// Authorization follows the call graph: a service accepts exactly the callers
// that declare it (spec.upstreams, or a gateway route), and a caller of another
// namespace only when the service consents to that namespace (spec.allowFrom).
// A declaration is the caller's; consent is the callee's.

// Reasons of UpstreamsAuthorized and of a route refused for want of consent.
const (
	ReasonAuthorized = "Authorized"
	ReasonRefused    = "Refused"
	ReasonNotAllowed = "NotAllowed"
	// ReasonRequestsDenied is the Warning event raised when sidecars refuse more
	// inbound requests than at the last status.
	ReasonRequestsDenied = "RequestsDenied"
	maxListedCallerIDs   = 20
)

// caller is a MeshService or a gateway that declares a service, as its identity.
type caller struct {
	namespace, serviceAccount string
}

// consents reports whether callee accepts callers running as serviceAccount in
// namespace: its own namespace always, another only through spec.allowFrom.
func consents(callee *meshv1alpha1.MeshService, namespace, serviceAccount string) bool {
	if namespace == callee.Namespace {
		return true
	}
	for _, a := range callee.Spec.AllowFrom {
		if a.Namespace == namespace && (a.ServiceAccount == "" || a.ServiceAccount == serviceAccount) {
			return true
		}
	}
	return false
}

// authorizedPrincipals are the SPIFFE IDs of the declared callers the callee
// consents to, sorted and deduplicated (callers sharing a ServiceAccount are one
// identity).
func authorizedPrincipals(callee *meshv1alpha1.MeshService, callers []caller, trustDomain string) []string {
	var ids []string
	for _, c := range callers {
		if consents(callee, c.namespace, c.serviceAccount) {
			ids = append(ids, identity.SPIFFEID(trustDomain, c.namespace, c.serviceAccount))
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// authorizedCallersStatus is what status reports of the principals: a count and
// the first few.
func authorizedCallersStatus(ids []string) *meshv1alpha1.AuthorizedCallers {
	st := &meshv1alpha1.AuthorizedCallers{Count: int32(len(ids))}
	st.SPIFFEIDs = slices.Clone(ids[:min(len(ids), maxListedCallerIDs)])
	return st
}

// refusal says why callee will refuse calls from the caller ms (whose mesh is
// callerMesh), or "" when it will accept them.
func refusal(ms *meshv1alpha1.MeshService, callerMesh *meshv1alpha1.ServiceMesh, callee *meshv1alpha1.MeshService, calleeMesh *meshv1alpha1.ServiceMesh) string {
	calleeMode := meshv1alpha1.MTLSModeOf(calleeMesh)
	switch {
	case calleeMode == meshv1alpha1.MTLSDisabled:
		return "" // plaintext, no authorization
	case !meshv1alpha1.HasIdentity(callerMesh):
		if calleeMode == meshv1alpha1.MTLSStrict {
			return fmt.Sprintf("%s/%s requires mTLS and ServiceMesh %s has spec.mtls.mode Disabled", callee.Namespace, callee.Name, callerMesh.Name)
		}
		return "" // Permissive: the plaintext chain forwards it
	case meshv1alpha1.AuthorizationModeOf(calleeMesh) != meshv1alpha1.AuthorizationEnforce:
		return ""
	case !consents(callee, ms.Namespace, objects.ServiceAccountName(ms)):
		return fmt.Sprintf("%s/%s does not consent to namespace %s: it needs spec.allowFrom {namespace: %s} (or with serviceAccount: %s)",
			callee.Namespace, callee.Name, ms.Namespace, ms.Namespace, objects.ServiceAccountName(ms))
	}
	return ""
}

// upstreamsAuthorizedCondition names each upstream that will refuse this service.
func upstreamsAuthorizedCondition(refusals []string, total int) metav1.Condition {
	if len(refusals) > 0 {
		return newCondition(meshv1alpha1.ConditionUpstreamsAuthorized, false, ReasonRefused, fmt.Sprintf("%v", refusals))
	}
	return newCondition(meshv1alpha1.ConditionUpstreamsAuthorized, true, ReasonAuthorized, fmt.Sprintf("all %d resolved upstreams accept this service", total))
}

// findDeclaredCallers lists who declares ms: the MeshServices of any namespace
// that name it in spec.upstreams, and the enabled gateways that route to it.
// Consent is applied by authorizedPrincipals.
func (r *MeshServiceReconciler) findDeclaredCallers(ctx context.Context, ms *meshv1alpha1.MeshService) ([]caller, error) {
	key := client.ObjectKeyFromObject(ms).String()
	var services meshv1alpha1.MeshServiceList
	if err := r.List(ctx, &services, client.MatchingFields{upstreamIndex: key}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	var out []caller
	for i := range services.Items {
		if s := &services.Items[i]; s.DeletionTimestamp.IsZero() {
			out = append(out, caller{namespace: s.Namespace, serviceAccount: objects.ServiceAccountName(s)})
		}
	}
	var meshes meshv1alpha1.ServiceMeshList
	if err := r.List(ctx, &meshes, client.MatchingFields{routeIndex: key}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	for i := range meshes.Items {
		if m := &meshes.Items[i]; m.DeletionTimestamp.IsZero() && m.Spec.Gateway != nil && m.Spec.Gateway.Enabled {
			out = append(out, caller{namespace: m.Namespace, serviceAccount: objects.GatewayServiceAccountName(m)})
		}
	}
	return out, nil
}

// upstreamKeysOf are the MeshServices a MeshService declares.
func upstreamKeysOf(o client.Object) []types.NamespacedName {
	ms, ok := o.(*meshv1alpha1.MeshService)
	if !ok {
		return nil
	}
	keys := make([]types.NamespacedName, 0, len(ms.Spec.Upstreams))
	for _, u := range ms.Spec.Upstreams {
		keys = append(keys, u.Key(ms.Namespace))
	}
	return keys
}

// routeKeysOf are the MeshServices a ServiceMesh's gateway routes to.
func routeKeysOf(o client.Object) []types.NamespacedName {
	mesh, ok := o.(*meshv1alpha1.ServiceMesh)
	if !ok || mesh.Spec.Gateway == nil {
		return nil
	}
	keys := make([]types.NamespacedName, 0, len(mesh.Spec.Gateway.Routes))
	for _, r := range mesh.Spec.Gateway.Routes {
		keys = append(keys, r.Key(mesh.Namespace))
	}
	return keys
}

// indexKeys turns keysOf into an index function: the "namespace/name" of each
// service an object declares, so the index and the watches agree on them.
func indexKeys(keysOf func(client.Object) []types.NamespacedName) client.IndexerFunc {
	return func(o client.Object) []string {
		keys := keysOf(o)
		out := make([]string, 0, len(keys))
		for _, k := range keys {
			out = append(out, k.String())
		}
		return out
	}
}

// declaredHandler enqueues the services an object declares (keysOf), before and
// after a change, when the declarations or the declarer's identity changed: the
// callee's inbound policy names its callers.
func declaredHandler(keysOf func(client.Object) []types.NamespacedName) handler.TypedEventHandler[client.Object, reconcile.Request] {
	add := func(q workqueue.TypedRateLimitingInterface[reconcile.Request], objs ...client.Object) {
		for _, o := range objs {
			for _, k := range keysOf(o) {
				q.Add(reconcile.Request{NamespacedName: k})
			}
		}
	}
	return handler.Funcs{
		CreateFunc: func(_ context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(q, e.Object)
		},
		UpdateFunc: func(_ context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() {
				add(q, e.ObjectOld, e.ObjectNew)
			}
		},
		DeleteFunc: func(_ context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(q, e.Object)
		},
	}
}

// authorizeUpstreams marks each resolved upstream authorized or not and returns
// why each refusing one will refuse.
func (b *statusBuilder) authorizeUpstreams(mesh *meshv1alpha1.ServiceMesh, found map[types.NamespacedName]*meshv1alpha1.MeshService,
	meshes map[types.NamespacedName]*meshv1alpha1.ServiceMesh) []string {
	var refusals []string
	for i := range b.status.Upstreams {
		u := &b.status.Upstreams[i]
		key := types.NamespacedName{Namespace: u.Namespace, Name: u.Name}
		callee, ok := found[key]
		if !ok {
			u.Authorized = false
			continue
		}
		why := refusal(b.ms, mesh, callee, meshes[key])
		u.Authorized = why == ""
		if why != "" {
			refusals = append(refusals, why)
		}
	}
	return refusals
}

// meshSecurity is the config side of a mesh's modes for one sidecar or gateway:
// nil (plaintext, no identity) when its mTLS is Disabled.
func meshSecurity(mesh *meshv1alpha1.ServiceMesh, principals []string) *envoyconfig.Security {
	if !meshv1alpha1.HasIdentity(mesh) {
		return nil
	}
	return &envoyconfig.Security{
		MTLS:          meshv1alpha1.MTLSModeOf(mesh),
		Authorization: meshv1alpha1.AuthorizationModeOf(mesh),
		Principals:    principals,
	}
}

// peerOf is what a caller with an identity requires of upstream up: its SPIFFE
// ID, and the SNI naming it. Nil when up's mesh has no identity (plaintext).
func peerOf(up *meshv1alpha1.MeshService, upMesh *meshv1alpha1.ServiceMesh, trustDomain, clusterDomain string) *envoyconfig.Peer {
	if !meshv1alpha1.HasIdentity(upMesh) {
		return nil
	}
	if clusterDomain == "" {
		clusterDomain = envoyconfig.DefaultClusterDomain
	}
	return &envoyconfig.Peer{
		SPIFFEID: identity.SPIFFEID(trustDomain, up.Namespace, objects.ServiceAccountName(up)),
		SNI:      fmt.Sprintf("%s.%s.svc.%s", up.Name, up.Namespace, clusterDomain),
	}
}

// withPeers sets the Peer of every resolved target when the caller has an
// identity (sec != nil).
func withPeers(sec *envoyconfig.Security, ups []envoyconfig.Upstream, found map[types.NamespacedName]*meshv1alpha1.MeshService,
	meshes map[types.NamespacedName]*meshv1alpha1.ServiceMesh, trustDomain, clusterDomain string) {
	if sec == nil {
		return
	}
	for i := range ups {
		key := types.NamespacedName{Namespace: ups[i].Namespace, Name: ups[i].Name}
		if ups[i].Target != nil && found[key] != nil {
			ups[i].Target.Peer = peerOf(found[key], meshes[key], trustDomain, clusterDomain)
		}
	}
}

// authorize resolves both sides of the policy for ms: whom it may call (status
// upstreams[].authorized and UpstreamsAuthorized; each target's Peer in svc)
// and who may call it (status authorizedCallers; svc.Security's principals).
func (r *MeshServiceReconciler) authorize(ctx context.Context, ms *meshv1alpha1.MeshService, mesh *meshv1alpha1.ServiceMesh,
	found map[types.NamespacedName]*meshv1alpha1.MeshService, st *statusBuilder, svc *envoyconfig.Service) error {
	upstreamMeshes, err := r.findUpstreamMeshes(ctx, found)
	if err != nil {
		return err
	}
	st.setConditions(upstreamsAuthorizedCondition(st.authorizeUpstreams(mesh, found, upstreamMeshes), len(found)))
	declared, err := r.findDeclaredCallers(ctx, ms)
	if err != nil {
		return err
	}
	principals := authorizedPrincipals(ms, declared, r.TrustDomain)
	st.status.AuthorizedCallers = nil
	if meshv1alpha1.HasIdentity(mesh) {
		st.status.AuthorizedCallers = authorizedCallersStatus(principals)
	}
	svc.Security = meshSecurity(mesh, principals)
	withPeers(svc.Security, svc.Upstreams, found, upstreamMeshes, r.TrustDomain, r.ClusterDomain)
	return nil
}
