package kubeletdouble

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	certlistersv1 "k8s.io/client-go/listers/certificates/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

func selfSigned(t *testing.T, n int64) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(n), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestTrustAnchors(t *testing.T) {
	a, b, c := selfSigned(t, 1), selfSigned(t, 2), selfSigned(t, 3)
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, ctb := range []*certificatesv1.ClusterTrustBundle{
		{ObjectMeta: metav1.ObjectMeta{Name: "s.io:x:1", Labels: map[string]string{"ring": "current"}},
			Spec: certificatesv1.ClusterTrustBundleSpec{SignerName: "s.io/x", TrustBundle: "comment\n" + string(a)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "s.io:x:2", Labels: map[string]string{"ring": "next"}},
			Spec: certificatesv1.ClusterTrustBundleSpec{SignerName: "s.io/x", TrustBundle: string(b) + string(a)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "other.io:y:1"},
			Spec: certificatesv1.ClusterTrustBundleSpec{SignerName: "other.io/y", TrustBundle: string(c)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "unsigned"}, Spec: certificatesv1.ClusterTrustBundleSpec{TrustBundle: string(c)}},
	} {
		if err := indexer.Add(ctb); err != nil {
			t.Fatal(err)
		}
	}
	k := &Kubelet{ctbLister: certlistersv1.NewClusterTrustBundleLister(indexer)}
	sorted := func(pems ...[]byte) []byte {
		var ders []string
		for _, p := range pems {
			blk, _ := pem.Decode(p)
			ders = append(ders, string(blk.Bytes))
		}
		if len(ders) == 2 && ders[0] > ders[1] {
			ders[0], ders[1] = ders[1], ders[0]
		}
		var out []byte
		for _, d := range ders {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte(d)})...)
		}
		return out
	}

	for _, tc := range []struct {
		name    string
		src     corev1.ClusterTrustBundleProjection
		want    []byte
		wantErr string
	}{
		{"{} selects every bundle of the signer, deduplicated and sorted",
			corev1.ClusterTrustBundleProjection{SignerName: ptr.To("s.io/x"), LabelSelector: &metav1.LabelSelector{}}, sorted(a, b), ""},
		{"a label selector narrows it",
			corev1.ClusterTrustBundleProjection{SignerName: ptr.To("s.io/x"), LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"ring": "current"}}}, a, ""},
		{"a nil selector matches nothing",
			corev1.ClusterTrustBundleProjection{SignerName: ptr.To("s.io/x")}, nil, "matched zero ClusterTrustBundles"},
		{"optional turns nothing into an empty file",
			corev1.ClusterTrustBundleProjection{SignerName: ptr.To("s.io/x"), Optional: ptr.To(true)}, []byte{}, ""},
		{"by name, the comment dropped",
			corev1.ClusterTrustBundleProjection{Name: ptr.To("s.io:x:1")}, a, ""},
		{"a missing name fails unless optional",
			corev1.ClusterTrustBundleProjection{Name: ptr.To("gone")}, nil, "not found"},
		{"neither name nor signer",
			corev1.ClusterTrustBundleProjection{}, nil, "requires either name or signerName"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := k.trustAnchors(&tc.src)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tc.want) || got == nil {
				t.Fatalf("trustAnchors = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestJitter(t *testing.T) {
	if d := (&Kubelet{}).jitterDuration(); d != 0 {
		t.Fatalf("jitter off: %v", d)
	}
	k := &Kubelet{opts: Options{Jitter: true}}
	for range 100 {
		if d := k.jitterDuration(); d < 0 || d >= 5*time.Minute {
			t.Fatalf("jitter %v outside [0, 5m)", d)
		}
	}
}
