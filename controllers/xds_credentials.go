package controllers

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/envoymesh/envoymesh-operator/internal/identity"
)

// xdsLeafLifetime is how long the xDS server's own certificate is valid; it is
// renewed at half life, like a sidecar's.
const xdsLeafLifetime = 24 * time.Hour

// xdsCredentials are the xDS server's TLS credentials on every replica: a leaf
// for the manager's SPIFFE ID signed by the mesh CA (the manager cannot get a Pod
// Certificate from itself: its pod would wait for its own signer), and as client
// roots every trust bundle of the signer, the same ones the sidecars trust. The
// CA Secret and the bundles are in every replica's cache, so followers need no
// leader to serve.
type xdsCredentials struct {
	Reader   client.Reader
	CASecret types.NamespacedName
	// SPIFFEID is the manager's identity, the SAN the sidecars verify.
	SPIFFEID string
	Now      func() time.Time

	mu        sync.RWMutex
	cert      *tls.Certificate
	caID      string
	refreshAt time.Time
	roots     *x509.CertPool
}

// credentialsKey is the one key the credentials reconciler works on.
var credentialsKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "xds-credentials"}}

// Reconcile reissues the leaf when the CA changed or half its life has passed,
// and rebuilds the client roots from the signer's bundles.
func (c *xdsCredentials) Reconcile(ctx context.Context, _ ctrl.Request) (ctrl.Result, error) {
	now := c.Now()
	secret := &corev1.Secret{}
	if err := c.Reader.Get(ctx, c.CASecret, secret); err != nil {
		log.FromContext(ctx).Info("the xDS server waits for the identity CA Secret", "secret", c.CASecret, "error", err.Error())
		return ctrl.Result{RequeueAfter: waitForCASecret}, client.IgnoreNotFound(err)
	}
	ca, err := identity.ParseCA(secret.Data)
	if err != nil {
		log.FromContext(ctx).Info("the xDS server waits for a usable identity CA", "secret", c.CASecret, "error", err.Error())
		return ctrl.Result{RequeueAfter: waitForCASecret}, nil
	}
	var bundles certificatesv1.ClusterTrustBundleList
	if err := c.Reader.List(ctx, &bundles); err != nil {
		return ctrl.Result{}, err
	}
	roots := x509.NewCertPool()
	for _, b := range bundles.Items {
		if b.Spec.SignerName == identity.SignerName {
			roots.AppendCertsFromPEM([]byte(b.Spec.TrustBundle))
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.roots = roots
	if c.cert == nil || c.caID != ca.ID() || !now.Before(c.refreshAt) {
		cert, refreshAt, err := issueServing(ca, c.SPIFFEID, now)
		if err != nil {
			return ctrl.Result{}, err
		}
		c.cert, c.caID, c.refreshAt = cert, ca.ID(), refreshAt
	}
	return ctrl.Result{RequeueAfter: c.refreshAt.Sub(now)}, nil
}

// issueServing signs a fresh key for spiffeID with ca.
func issueServing(ca *identity.CA, spiffeID string, now time.Time) (*tls.Certificate, time.Time, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, time.Time{}, err
	}
	leaf, err := ca.Issue(key.Public(), spiffeID, xdsLeafLifetime, now)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("issuing the xDS server's certificate: %w", err)
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: leaf.Cert, Certificate: [][]byte{leaf.Cert.Raw}}
	for _, c := range ca.Chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, leaf.BeginRefreshAt, nil
}

// errNoCredentials refuses handshakes until the CA has been read.
var errNoCredentials = errors.New("the xDS server has no certificate yet: the identity CA has not been read")

// TLSConfig serves the current leaf and requires a client certificate that
// chains to a bundle of the signer; each handshake sees the latest of both.
func (c *xdsCredentials) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c.mu.RLock()
			defer c.mu.RUnlock()
			if c.cert == nil {
				return nil, errNoCredentials
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				NextProtos:   []string{"h2"},
				Certificates: []tls.Certificate{*c.cert},
				ClientCAs:    c.roots,
				ClientAuth:   tls.RequireAndVerifyClientCert,
			}, nil
		},
	}
}

// Ready reports whether the server has credentials to serve with.
func (c *xdsCredentials) Ready() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert != nil
}

// setupXDSCredentials runs the credentials reconciler on every replica.
func setupXDSCredentials(mgr ctrl.Manager, c *xdsCredentials) error {
	toKey := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{credentialsKey}
	})
	return ctrl.NewControllerManagedBy(mgr).Named("xds-credentials").
		WithOptions(controller.Options{NeedLeaderElection: ptr.To(false)}).
		WatchesRawSource(source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
			q.Add(credentialsKey)
			return nil
		})).
		Watches(&corev1.Secret{}, toKey).
		Watches(&certificatesv1.ClusterTrustBundle{}, toKey).
		Complete(c)
}
