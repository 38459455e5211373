package controllers

import (
	"context"
	"errors"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
)

// signerWorld is a member pod and its request in a fake API; cache and apiReader
// may be made to fail or to miss.
func signerWorld(t *testing.T, cacheFuncs, readerFuncs interceptor.Funcs) (*PodCertificateSigner, client.Client, types.NamespacedName) {
	t.Helper()
	req, f := judgeCase(t)
	ms := &meshv1alpha1.MeshService{}
	ms.Namespace, ms.Name = "shop", "cart"
	f.pod.Labels = map[string]string{"mesh.envoymesh.io/service": "cart"}
	objs := []client.Object{req, f.pod, f.serviceAccount, ms}
	api := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(objs...).
		WithStatusSubresource(&certificatesv1.PodCertificateRequest{}).Build()
	ca, err := identity.GenerateCA("cluster.local", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	authority := &identity.Authority{}
	authority.Set(ca, time.Now())
	s := &PodCertificateSigner{
		Client:    interceptor.NewClient(api.(client.WithWatch), cacheFuncs),
		APIReader: interceptor.NewClient(api.(client.WithWatch), readerFuncs),
		Authority: authority, TrustDomain: "cluster.local",
	}
	return s, api, client.ObjectKeyFromObject(req)
}

func statusOf(t *testing.T, c client.Client, key types.NamespacedName) certificatesv1.PodCertificateRequestStatus {
	t.Helper()
	got := &certificatesv1.PodCertificateRequest{}
	if err := c.Get(context.Background(), key, got); err != nil {
		t.Fatal(err)
	}
	return got.Status
}

// TestSignerRetriesWhatItCannotJudge: an API error while reading the pod is
// returned for a retry, and the request stays pending; Denied would be final.
func TestSignerRetriesWhatItCannotJudge(t *testing.T) {
	failPods := interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if _, ok := obj.(*corev1.Pod); ok {
			return errors.New("etcdserver: request timed out")
		}
		return c.Get(ctx, key, obj, opts...)
	}}
	s, api, key := signerWorld(t, failPods, failPods)
	if _, err := s.Reconcile(context.Background(), ctrl.Request{NamespacedName: key}); err == nil {
		t.Fatal("a transient error was swallowed: the request would never be retried")
	}
	if st := statusOf(t, api, key); len(st.Conditions) != 0 {
		t.Fatalf("a transient error concluded the request: %+v", st.Conditions)
	}

	// With no CA yet, the request waits too.
	s, api, key = signerWorld(t, interceptor.Funcs{}, interceptor.Funcs{})
	s.Authority = &identity.Authority{}
	res, err := s.Reconcile(context.Background(), ctrl.Request{NamespacedName: key})
	if err != nil || res.RequeueAfter != waitForCA {
		t.Fatalf("result %+v, %v: want a retry after %v", res, err, waitForCA)
	}
	if st := statusOf(t, api, key); len(st.Conditions) != 0 {
		t.Fatalf("a missing CA concluded the request: %+v", st.Conditions)
	}
}

// TestSignerAsksTheAPIServerOnACacheMiss: a pod the cache has not seen (or does
// not hold) is read live before anything is decided.
func TestSignerAsksTheAPIServerOnACacheMiss(t *testing.T) {
	missPods := interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if _, ok := obj.(*corev1.Pod); ok {
			return apiNotFound(key.Name)
		}
		return c.Get(ctx, key, obj, opts...)
	}}
	s, api, key := signerWorld(t, missPods, interceptor.Funcs{})
	if _, err := s.Reconcile(context.Background(), ctrl.Request{NamespacedName: key}); err != nil {
		t.Fatal(err)
	}
	if got := pcrConditionReason(statusOf(t, api, key)); got != "Issued/Issued" {
		t.Fatalf("verdict %s, want Issued: the cache miss must not decide", got)
	}
}

func pcrConditionReason(st certificatesv1.PodCertificateRequestStatus) string {
	for _, c := range st.Conditions {
		return c.Type + "/" + c.Reason
	}
	return ""
}

func apiNotFound(name string) error {
	return apierrors.NewNotFound(corev1.Resource("pods"), name)
}
