package controllers

import (
	"context"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// waitForCA is how soon a request is looked at again while the signer has no CA yet.
const waitForCA = time.Second

// PodCertificateSigner is the signer mesh.envoymesh.io/identity: for each
// PodCertificateRequest addressed to it, it checks the live pod and issues the
// pod's SPIFFE certificate, or Denies the request naming the failed check. What
// it cannot judge yet (no CA, an API error) is retried and never Denied: Denied
// is final for the pod, which would then never start.
type PodCertificateSigner struct {
	// Client reads from the cache and writes status.
	client.Client
	// APIReader reads what the cache does not hold (pods the operator does not
	// run, objects the cache has not seen yet), so a denial rests on the API
	// server's word, never on a cache miss.
	APIReader   client.Reader
	Authority   *identity.Authority
	TrustDomain string
	// Now is the signer's clock (time.Now when nil).
	Now func() time.Time
}

// +kubebuilder:rbac:groups=certificates.k8s.io,resources=podcertificaterequests,verbs=get;list;watch
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=podcertificaterequests/status,verbs=update
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=signers,resourceNames=mesh.envoymesh.io/identity,verbs=sign;attest
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch

// Reconcile issues or denies one request.
func (s *PodCertificateSigner) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pcr := &certificatesv1.PodCertificateRequest{}
	if err := s.Get(ctx, req.NamespacedName, pcr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if pcr.Spec.SignerName != identity.SignerName || concluded(pcr) {
		return ctrl.Result{}, nil
	}
	now := s.now()
	ca := s.Authority.ForSigning(now)
	if ca == nil {
		return ctrl.Result{RequeueAfter: waitForCA}, nil
	}
	facts, err := s.gather(ctx, pcr)
	if err != nil {
		return ctrl.Result{}, err
	}
	v := judge(pcr, facts, s.TrustDomain)
	if v.deny {
		log.FromContext(ctx).Info("denied a pod certificate", "pod", pcr.Spec.PodName, "reason", v.reason, "message", v.message)
		setPCRCondition(pcr, certificatesv1.PodCertificateRequestConditionTypeDenied, v.reason, v.message)
		certificateRequests.WithLabelValues("denied", v.reason).Inc()
		return ctrl.Result{}, s.Status().Update(ctx, pcr)
	}
	maxLifetime := identity.MaxLeafLifetime
	if m := pcr.Spec.MaxExpirationSeconds; m != nil {
		maxLifetime = time.Duration(*m) * time.Second
	}
	leaf, err := ca.Issue(v.key, v.spiffeID, maxLifetime, now)
	if err != nil {
		// The CA itself cannot issue (it expires too soon): an operator problem,
		// not the pod's. Retried, so a new CA lets the pod start.
		return ctrl.Result{}, err
	}
	pcr.Status.CertificateChain = leaf.ChainPEM
	pcr.Status.NotBefore = &metav1.Time{Time: leaf.NotBefore}
	pcr.Status.NotAfter = &metav1.Time{Time: leaf.NotAfter}
	pcr.Status.BeginRefreshAt = &metav1.Time{Time: leaf.BeginRefreshAt}
	setPCRCondition(pcr, certificatesv1.PodCertificateRequestConditionTypeIssued, "Issued", v.spiffeID)
	if err := s.Status().Update(ctx, pcr); err != nil {
		return ctrl.Result{}, err
	}
	certificateRequests.WithLabelValues("issued", "").Inc()
	return ctrl.Result{}, nil
}

func (s *PodCertificateSigner) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// concluded: Issued, Denied and Failed are final; the API server refuses any
// further status change.
func concluded(pcr *certificatesv1.PodCertificateRequest) bool {
	for _, t := range []string{
		certificatesv1.PodCertificateRequestConditionTypeIssued,
		certificatesv1.PodCertificateRequestConditionTypeDenied,
		certificatesv1.PodCertificateRequestConditionTypeFailed,
	} {
		if meta.IsStatusConditionTrue(pcr.Status.Conditions, t) {
			return true
		}
	}
	return false
}

func setPCRCondition(pcr *certificatesv1.PodCertificateRequest, t, reason, msg string) {
	meta.SetStatusCondition(&pcr.Status.Conditions, metav1.Condition{
		Type: t, Status: metav1.ConditionTrue, Reason: reason, Message: msg, ObservedGeneration: pcr.Generation,
	})
}

// gather reads the facts judge needs. Each read goes to the cache first and,
// when the cache does not have the object, to the API server: only the API
// server's "not found" counts as an answer.
func (s *PodCertificateSigner) gather(ctx context.Context, pcr *certificatesv1.PodCertificateRequest) (requestFacts, error) {
	var f requestFacts
	pod := &corev1.Pod{}
	found, err := s.lookup(ctx, types.NamespacedName{Namespace: pcr.Namespace, Name: pcr.Spec.PodName}, pod)
	if err != nil || !found {
		return f, err
	}
	f.pod = pod
	sa := &corev1.ServiceAccount{}
	if found, err = s.lookup(ctx, types.NamespacedName{Namespace: pcr.Namespace, Name: pcr.Spec.ServiceAccountName}, sa); err != nil {
		return f, err
	} else if found {
		f.serviceAccount = sa
	}
	f.member, err = s.membershipOf(ctx, pod)
	return f, err
}

// membershipOf finds the MeshService, or the gateway, a pod claims by its label.
// The claim is checked by judge: the pod must run as the owner's ServiceAccount,
// which only someone allowed to run pods as it can arrange.
func (s *PodCertificateSigner) membershipOf(ctx context.Context, pod *corev1.Pod) (*membership, error) {
	if name, ok := pod.Labels[objects.ServiceLabel]; ok {
		ms := &meshv1alpha1.MeshService{}
		found, err := s.lookup(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: name}, ms)
		if err != nil || !found || !ms.DeletionTimestamp.IsZero() {
			return nil, err
		}
		// The mesh only decides the mode, and most MeshServices name one that
		// does not exist (built-in defaults): the cache's word is enough here, as
		// a miss can only lead to an issue, never to a denial, and asking the API
		// server would double the signer's requests.
		mesh, err := meshOf(ctx, s.Client, ms)
		if err != nil {
			return nil, err
		}
		return &membership{owner: "MeshService " + ms.Name, serviceAccount: objects.ServiceAccountName(ms), mesh: mesh}, nil
	}
	if name, ok := pod.Labels[objects.GatewayLabel]; ok {
		mesh := &meshv1alpha1.ServiceMesh{}
		found, err := s.lookup(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: name}, mesh)
		if err != nil || !found || mesh.Spec.Gateway == nil || !mesh.Spec.Gateway.Enabled {
			return nil, err
		}
		return &membership{owner: "the gateway of ServiceMesh " + mesh.Name, serviceAccount: objects.GatewayServiceAccountName(mesh), mesh: mesh}, nil
	}
	return nil, nil
}

// lookup reads key into obj from the cache, falling back to the API server when
// the cache does not have it (or does not hold that kind of object at all: it
// caches only the operator's own pods).
func (s *PodCertificateSigner) lookup(ctx context.Context, key types.NamespacedName, obj client.Object) (bool, error) {
	err := s.Get(ctx, key, obj)
	if err == nil {
		return true, nil
	}
	if !apierrors.IsNotFound(err) {
		return false, err
	}
	err = s.APIReader.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}
