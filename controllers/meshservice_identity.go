package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// Reasons of the Identity condition.
const (
	ReasonAssigned = "Assigned"
	ReasonShared   = "Shared"
	ReasonDisabled = "Disabled"
)

// serviceAccountIndex indexes MeshServices by the ServiceAccount their pods run
// as, so each can say which others share its identity.
const serviceAccountIndex = "identity.serviceAccount"

// identityStatus is who a MeshService's pods are: the ServiceAccount always, the
// SPIFFE ID only when the mesh gives them certificates (for mTLS, or for the
// ADS stream of an XDS mesh).
func identityStatus(ms *meshv1alpha1.MeshService, mesh *meshv1alpha1.ServiceMesh, trustDomain string) *meshv1alpha1.IdentityStatus {
	id := &meshv1alpha1.IdentityStatus{ServiceAccount: objects.ServiceAccountName(ms)}
	if meshv1alpha1.NeedsCertificate(mesh) {
		id.SPIFFEID = identity.SPIFFEID(trustDomain, ms.Namespace, id.ServiceAccount)
	}
	return id
}

// identityCondition reports the identity, and says so when other MeshServices
// run as the same ServiceAccount: their sidecars then present the same
// certificate, and authorization cannot tell them apart.
func identityCondition(id *meshv1alpha1.IdentityStatus, mesh *meshv1alpha1.ServiceMesh, sharedWith []string) metav1.Condition {
	if id.SPIFFEID == "" {
		return newCondition(meshv1alpha1.ConditionIdentity, false, ReasonDisabled,
			fmt.Sprintf("ServiceMesh %s has spec.mtls.mode Disabled: the sidecars get no certificate", mesh.Name))
	}
	if len(sharedWith) > 0 {
		return newCondition(meshv1alpha1.ConditionIdentity, true, ReasonShared,
			fmt.Sprintf("%s, shared with MeshService %s (ServiceAccount %s): authorization cannot tell them apart; give each its own ServiceAccount",
				id.SPIFFEID, strings.Join(sharedWith, ", "), id.ServiceAccount))
	}
	return newCondition(meshv1alpha1.ConditionIdentity, true, ReasonAssigned, id.SPIFFEID)
}

// reportIdentity puts the identity and its condition in status.
func (r *MeshServiceReconciler) reportIdentity(ctx context.Context, ms *meshv1alpha1.MeshService, mesh *meshv1alpha1.ServiceMesh, st *statusBuilder) error {
	id := identityStatus(ms, mesh, r.TrustDomain)
	sharers, err := r.findSharers(ctx, ms)
	if err != nil {
		return err
	}
	st.status.Identity = id
	st.setConditions(identityCondition(id, mesh, sharers))
	return nil
}

// findSharers returns the other MeshServices of ms's namespace that run as the
// same ServiceAccount, sorted by name.
func (r *MeshServiceReconciler) findSharers(ctx context.Context, ms *meshv1alpha1.MeshService) ([]string, error) {
	var list meshv1alpha1.MeshServiceList
	if err := r.List(ctx, &list, client.InNamespace(ms.Namespace),
		client.MatchingFields{serviceAccountIndex: objects.ServiceAccountName(ms)}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	var names []string
	for i := range list.Items {
		if o := &list.Items[i]; o.Name != ms.Name && o.DeletionTimestamp.IsZero() {
			names = append(names, o.Name)
		}
	}
	slices.Sort(names)
	return names, nil
}

// sharersHandler enqueues the MeshServices that run as the ServiceAccount a
// MeshService ran as before and after a change, so both sides of a share (or of
// its end) update their Identity condition.
func (r *MeshServiceReconciler) sharersHandler() handler.TypedEventHandler[client.Object, reconcile.Request] {
	enqueue := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request], objs ...client.Object) {
		seen := map[string]bool{}
		for _, o := range objs {
			ms := o.(*meshv1alpha1.MeshService)
			sa := objects.ServiceAccountName(ms)
			if seen[sa] {
				continue
			}
			seen[sa] = true
			for _, req := range r.enqueueMatching(ctx, client.InNamespace(ms.Namespace), client.MatchingFields{serviceAccountIndex: sa}) {
				if req.NamespacedName != (types.NamespacedName{Namespace: ms.Namespace, Name: ms.Name}) {
					q.Add(req)
				}
			}
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, q, e.Object)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if objects.ServiceAccountName(e.ObjectOld.(*meshv1alpha1.MeshService)) != objects.ServiceAccountName(e.ObjectNew.(*meshv1alpha1.MeshService)) {
				enqueue(ctx, q, e.ObjectOld, e.ObjectNew)
			}
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, q, e.Object)
		},
	}
}

// serviceAccountKey is the index value: the ServiceAccount's name (the index is
// queried within one namespace).
func serviceAccountKey(o client.Object) []string {
	return []string{objects.ServiceAccountName(o.(*meshv1alpha1.MeshService))}
}
