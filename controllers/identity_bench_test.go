package controllers

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"reflect"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// BenchmarkSignRequest is the signer's own cost per certificate, without the API
// server: a member pod as the operator's Deployment runs it, and the request its
// kubelet files (a fresh P-256 key, the stub PKCS#10 request).
//
//   - judge+issue: every check of judge (which parses the stub request and checks
//     its signature) and CA.Issue for the verdict.
//   - reconcile: all of Reconcile with reads served from memory, each a deep copy
//     as the manager's cache hands out, the ServiceMesh absent (built-in
//     defaults), and a status write that goes nowhere. hack/bench times the
//     API server's part.
func BenchmarkSignRequest(b *testing.B) {
	const trustDomain = "cluster.local"
	now := time.Now()
	ca, err := identity.GenerateCA(trustDomain, now)
	if err != nil {
		b.Fatal(err)
	}
	req, facts := signBenchCase(b)

	b.Run("judge+issue", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v := judge(req, facts, trustDomain)
			if v.deny {
				b.Fatalf("denied: %s: %s", v.reason, v.message)
			}
			if _, err := ca.Issue(v.key, v.spiffeID, identity.MaxLeafLifetime, now); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("reconcile", func(b *testing.B) {
		mem := memReader{}
		for _, o := range []client.Object{req, facts.pod, facts.serviceAccount, signBenchMeshService()} {
			mem.add(o)
		}
		authority := &identity.Authority{}
		authority.Set(ca, now)
		s := &PodCertificateSigner{Client: mem, APIReader: mem, Authority: authority, TrustDomain: trustDomain}
		r := ctrl.Request{NamespacedName: client.ObjectKeyFromObject(req)}
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Reconcile(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
		if mem.issued == nil || *mem.issued == 0 {
			b.Fatal("Reconcile wrote no Issued status")
		}
	})
}

// signBenchMeshService is the MeshService "cart" of namespace "shop", with an app
// container as hack/bench's MeshServices have.
func signBenchMeshService() *meshv1alpha1.MeshService {
	return &meshv1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart", UID: "ms-uid", Generation: 1},
		Spec: meshv1alpha1.MeshServiceSpec{
			Mesh: "default", Replicas: ptr.To[int32](10), Port: 8080, ServicePort: 15006,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "app", Image: "example.com/cart:1",
				Ports: []corev1.ContainerPort{{Name: "svc-port", ContainerPort: 8080}},
			}}}},
		},
	}
}

// signBenchCase is a pod of cart's Deployment (the operator's template, sidecar
// and identity volume included) bound to node-a, and its pending request.
func signBenchCase(b *testing.B) (*certificatesv1.PodCertificateRequest, requestFacts) {
	ms := signBenchMeshService()
	tmpl := objects.Deployment(ms, objects.DefaultSidecar("envoyproxy/envoy:distroless-v1.40.0"), "bootstrap-hash", true).Spec.Template
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ms.Namespace, Name: "cart-7d9f8-x2x4q", UID: "pod-uid", Labels: tmpl.Labels, Annotations: tmpl.Annotations},
		Spec:       *tmpl.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = "node-a"
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ms.Namespace, Name: objects.ServiceAccountName(ms), UID: "sa-uid"}}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		b.Fatal(err)
	}
	req := &certificatesv1.PodCertificateRequest{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ms.Namespace, Name: "req-abcde", Generation: 1,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}},
		},
		Spec: certificatesv1.PodCertificateRequestSpec{
			SignerName: identity.SignerName, PodName: pod.Name, PodUID: pod.UID,
			ServiceAccountName: sa.Name, ServiceAccountUID: sa.UID, NodeName: "node-a", NodeUID: "node-uid",
			MaxExpirationSeconds: ptr.To[int32](86400), StubPKCS10Request: csr,
		},
	}
	return req, requestFacts{
		pod:            pod,
		serviceAccount: sa,
		member:         &membership{owner: "MeshService " + ms.Name, serviceAccount: objects.ServiceAccountName(ms)},
	}
}

// memReader serves Get from a map, handing out deep copies as the cache does;
// its status writer only counts Issued statuses. The rest of client.Client is
// left nil: Reconcile must not reach it.
type memReader struct {
	client.Client
	objs   map[memKey]client.Object
	issued *int
}

type memKey struct {
	t   reflect.Type
	key types.NamespacedName
}

func (m *memReader) add(o client.Object) {
	if m.objs == nil {
		m.objs = map[memKey]client.Object{}
		m.issued = new(int)
	}
	m.objs[memKey{reflect.TypeOf(o), client.ObjectKeyFromObject(o)}] = o
}

func (m memReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	o, ok := m.objs[memKey{reflect.TypeOf(obj), key}]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{}, key.Name)
	}
	reflect.ValueOf(obj).Elem().Set(reflect.ValueOf(o.DeepCopyObject()).Elem())
	return nil
}

func (m memReader) Status() client.SubResourceWriter { return memStatus{issued: m.issued} }

// memStatus counts the Issued statuses written; the rest of the writer is left
// nil: the signer only updates.
type memStatus struct {
	client.SubResourceWriter
	issued *int
}

func (s memStatus) Update(_ context.Context, obj client.Object, _ ...client.SubResourceUpdateOption) error {
	if pcr, ok := obj.(*certificatesv1.PodCertificateRequest); ok && concluded(pcr) && pcr.Status.CertificateChain != "" {
		*s.issued++
	}
	return nil
}
