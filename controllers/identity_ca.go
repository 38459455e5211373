package controllers

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// DefaultCASecretName is the Secret, in the manager's namespace, holding the CA
// the operator generates when it is given none.
const DefaultCASecretName = "envoymesh-identity-ca"

// signerConcurrency is how many requests the signer works on at once.
const signerConcurrency = 8

// waitForCASecret is how soon a missing or unusable CA Secret is looked at again.
const waitForCASecret = 30 * time.Second

var certificateRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "envoymesh_identity_certificate_requests_total",
	Help: "PodCertificateRequests concluded by the signer, by result (issued, denied) and denial reason.",
}, []string{"result", "reason"})

func init() { metrics.Registry.MustRegister(certificateRequests) }

// IdentityOptions configure the workload identity signer.
type IdentityOptions struct {
	// TrustDomain of every SPIFFE ID (default cluster.local).
	TrustDomain string
	// CASecret holds the CA (tls.crt, tls.key, optional ca.crt). Empty: no
	// signer runs (tests that do not need one).
	CASecret types.NamespacedName
	// GenerateCA creates the Secret with a new root when it is missing; false
	// for a Secret someone else (cert-manager) owns, which is never written.
	GenerateCA bool
	// BundlePropagation overrides identity.BundlePropagation (tests).
	BundlePropagation time.Duration
}

// caKey is the one key the CA reconciler works on.
var caKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "identity-ca"}}

// identityCAReconciler keeps the signer's CA and its trust bundles: it loads
// (or creates) the CA Secret, publishes the CA in a signer-linked
// ClusterTrustBundle and hands the CA to the signer once its bundle has had time
// to reach the pods. Old bundles stay until no leaf their CA signed can still be
// valid, so a CA change causes no outage (docs/security.md).
type identityCAReconciler struct {
	client.Client
	Authority *identity.Authority
	Options   IdentityOptions
	Now       func() time.Time
}

// +kubebuilder:rbac:groups=certificates.k8s.io,resources=clustertrustbundles,verbs=get;list;watch;create;patch;delete

func (r *identityCAReconciler) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	now := r.Now()
	ca, err := r.loadCA(ctx, now)
	if err != nil {
		return ctrl.Result{}, err
	}
	if ca == nil {
		return ctrl.Result{RequeueAfter: waitForCASecret}, nil
	}
	var bundles certificatesv1.ClusterTrustBundleList
	if err := r.List(ctx, &bundles); err != nil {
		return ctrl.Result{}, err
	}
	plan := identity.PlanBundles(ca, bundles.Items, now)
	usableFrom := now.Add(r.propagation())
	if plan.Create != nil {
		if err := r.Create(ctx, plan.Create); err != nil && !apierrors.IsAlreadyExists(err) {
			return ctrl.Result{}, fmt.Errorf("publishing trust bundle %s: %w", plan.Create.Name, err)
		}
		log.FromContext(ctx).Info("published the CA's trust bundle", "bundle", plan.Create.Name)
	} else {
		for i := range bundles.Items {
			if b := &bundles.Items[i]; b.Name == ca.BundleName() {
				usableFrom = b.CreationTimestamp.Add(r.propagation())
			}
		}
	}
	r.Authority.Set(ca, usableFrom)

	for name, after := range plan.Retire {
		if err := r.annotateBundle(ctx, name, after.UTC().Format(time.RFC3339)); err != nil {
			return ctrl.Result{}, err
		}
	}
	for _, name := range plan.Unretire {
		if err := r.annotateBundle(ctx, name, ""); err != nil {
			return ctrl.Result{}, err
		}
	}
	for _, name := range plan.Delete {
		b := &certificatesv1.ClusterTrustBundle{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := r.Delete(ctx, b); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, err
		}
		log.FromContext(ctx).Info("removed a retired CA's trust bundle: no leaf it signed is still valid", "bundle", name)
	}
	return ctrl.Result{RequeueAfter: plan.RequeueAfter}, nil
}

func (r *identityCAReconciler) propagation() time.Duration {
	if r.Options.BundlePropagation > 0 {
		return r.Options.BundlePropagation
	}
	return identity.BundlePropagation
}

// loadCA reads the CA Secret, creating it when it is ours to create. A Secret
// that is missing (and not ours) or unusable leaves the signer waiting, loudly:
// nil, nil.
func (r *identityCAReconciler) loadCA(ctx context.Context, now time.Time) (*identity.CA, error) {
	key := r.Options.CASecret
	secret := &corev1.Secret{}
	err := r.Get(ctx, key, secret)
	switch {
	case apierrors.IsNotFound(err) && r.Options.GenerateCA:
		return r.createCA(ctx, now)
	case apierrors.IsNotFound(err):
		log.FromContext(ctx).Error(err, "the identity CA Secret does not exist: no certificates are issued until it does", "secret", key)
		return nil, nil
	case err != nil:
		return nil, err
	}
	ca, err := identity.ParseCA(secret.Data)
	if err != nil {
		log.FromContext(ctx).Error(err, "the identity CA Secret is unusable: no certificates are issued until it is fixed", "secret", key)
		return nil, nil
	}
	return ca, nil
}

// createCA generates a root and stores it. Another replica may win the race: its
// Secret is then read on the next pass.
func (r *identityCAReconciler) createCA(ctx context.Context, now time.Time) (*identity.CA, error) {
	ca, err := identity.GenerateCA(r.Options.TrustDomain, now)
	if err != nil {
		return nil, err
	}
	data, err := ca.SecretData()
	if err != nil {
		return nil, err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: r.Options.CASecret.Namespace, Name: r.Options.CASecret.Name,
			Labels: map[string]string{objects.ManagedByLabel: objects.ManagedBy},
		},
		Type: corev1.SecretTypeTLS,
		Data: data,
	}
	if err := r.Create(ctx, secret); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("the CA Secret %s appeared meanwhile; reading it next", r.Options.CASecret)
		}
		return nil, fmt.Errorf("storing the generated CA in Secret %s: %w", r.Options.CASecret, err)
	}
	log.FromContext(ctx).Info("generated the identity CA", "secret", r.Options.CASecret, "ca", ca.ID())
	return ca, nil
}

// annotateBundle sets (value != "") or removes the retire-after annotation.
func (r *identityCAReconciler) annotateBundle(ctx context.Context, name, value string) error {
	b := &certificatesv1.ClusterTrustBundle{}
	if err := r.Get(ctx, types.NamespacedName{Name: name}, b); err != nil {
		return client.IgnoreNotFound(err)
	}
	patch := client.MergeFrom(b.DeepCopy())
	if value == "" {
		delete(b.Annotations, identity.RetireAfterAnnotation)
	} else {
		metav1.SetMetaDataAnnotation(&b.ObjectMeta, identity.RetireAfterAnnotation, value)
	}
	return r.Patch(ctx, b, patch)
}

// setupIdentity registers the CA reconciler and the signer. Both run on the
// leader only (controller-runtime's default): one writer of bundles and status.
func setupIdentity(mgr ctrl.Manager, o IdentityOptions, apiReader client.Reader) error {
	authority := &identity.Authority{}
	ca := &identityCAReconciler{Client: mgr.GetClient(), Authority: authority, Options: o, Now: time.Now}
	toCA := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{caKey}
	})
	err := ctrl.NewControllerManagedBy(mgr).Named("identity-ca").
		WatchesRawSource(source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
			q.Add(caKey) // the first pass creates or loads the CA even when nothing exists yet
			return nil
		})).
		Watches(&corev1.Secret{}, toCA).
		Watches(&certificatesv1.ClusterTrustBundle{}, toCA).
		Complete(ca)
	if err != nil {
		return err
	}
	signer := &PodCertificateSigner{Client: mgr.GetClient(), APIReader: apiReader, Authority: authority, TrustDomain: o.TrustDomain}
	return ctrl.NewControllerManagedBy(mgr).Named("identity-signer").
		For(&certificatesv1.PodCertificateRequest{}).
		// Each request waits mostly on its one status write: several in flight
		// keep the client's rate limit, not the round trips, the bound.
		WithOptions(controllerOptions(signerConcurrency)).
		Complete(signer)
}
