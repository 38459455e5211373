package controllers

import (
	"context"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/envoymesh/envoymesh-operator/internal/identity"
)

// These cover the CA Secret paths the envtest suite's manager (whose Secret
// exists before it starts) does not take.

func TestGeneratesTheCAWhenItsSecretIsMissing(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(Scheme()).Build()
	key := types.NamespacedName{Namespace: "envoymesh-system", Name: DefaultCASecretName}
	r := &identityCAReconciler{Client: c, Authority: &identity.Authority{}, Now: time.Now,
		Options: IdentityOptions{TrustDomain: "cluster.local", CASecret: key, GenerateCA: true}}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{}); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{}
	if err := c.Get(context.Background(), key, secret); err != nil {
		t.Fatalf("the CA Secret was not created: %v", err)
	}
	ca, err := identity.ParseCA(secret.Data)
	if err != nil {
		t.Fatalf("the stored CA does not parse: %v", err)
	}
	if got := r.Authority.ForSigning(time.Now()); got == nil || got.ID() != ca.ID() {
		t.Error("the first CA must sign at once: there is no older bundle anyone trusts")
	}
	bundle := &certificatesv1.ClusterTrustBundle{}
	if err := c.Get(context.Background(), types.NamespacedName{Name: ca.BundleName()}, bundle); err != nil {
		t.Fatalf("the CA's bundle was not published: %v", err)
	}
	if bundle.Spec.SignerName != identity.SignerName {
		t.Errorf("bundle signerName %q", bundle.Spec.SignerName)
	}
}

func TestWaitsForAnExistingCASecretWithoutCreatingOne(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(Scheme()).Build()
	key := types.NamespacedName{Namespace: "cert-manager", Name: "mesh-ca"}
	r := &identityCAReconciler{Client: c, Authority: &identity.Authority{}, Now: time.Now,
		Options: IdentityOptions{TrustDomain: "cluster.local", CASecret: key}}
	res, err := r.Reconcile(context.Background(), ctrl.Request{})
	if err != nil || res.RequeueAfter != waitForCASecret {
		t.Fatalf("result %+v, err %v: want a wait of %v", res, err, waitForCASecret)
	}
	if err := c.Get(context.Background(), key, &corev1.Secret{}); err == nil {
		t.Error("a Secret the operator does not own was created")
	}
	if r.Authority.Current() != nil {
		t.Error("a CA was set without a Secret")
	}

	// An unusable Secret is waited on too, and never rewritten.
	bad := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}, Data: map[string][]byte{"tls.crt": []byte("x")}}
	if err := c.Create(context.Background(), bad); err != nil {
		t.Fatal(err)
	}
	if res, err := r.Reconcile(context.Background(), ctrl.Request{}); err != nil || res.RequeueAfter != waitForCASecret {
		t.Fatalf("result %+v, err %v: want a wait", res, err)
	}
	got := &corev1.Secret{}
	if err := c.Get(context.Background(), key, got); err != nil || string(got.Data["tls.crt"]) != "x" || len(got.Data) != 1 {
		t.Errorf("the unusable Secret changed: %v %v", got.Data, err)
	}
}
