package identity

import (
	"crypto/elliptic"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTrustBundle(t *testing.T) {
	ca, err := GenerateCA("cluster.local", now)
	if err != nil {
		t.Fatal(err)
	}
	b := TrustBundle(ca)
	if b.Name != ca.BundleName() || !strings.HasPrefix(b.Name, BundleNamePrefix) {
		t.Errorf("name %q, want %q", b.Name, ca.BundleName())
	}
	if b.Spec.SignerName != SignerName || b.Spec.TrustBundle != string(ca.AnchorsPEM) {
		t.Errorf("spec %+v", b.Spec)
	}
	want := map[string]string{"app.kubernetes.io/managed-by": "envoymesh-operator", "mesh.envoymesh.io/ca-id": ca.ID()}
	if diff := cmp.Diff(want, b.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if errs := apiServerBundleErrors(b); len(errs) != 0 {
		t.Errorf("API server rejects the bundle: %v", errs)
	}
	// Server-side apply needs apiVersion and kind in the body.
	j, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil || tm.APIVersion != "certificates.k8s.io/v1" || tm.Kind != "ClusterTrustBundle" {
		t.Errorf("TypeMeta %+v (%v)", tm, err)
	}
	// BundleNamePrefix is the one the API server derives from SignerName.
	if want := strings.ReplaceAll(SignerName, "/", ":") + ":"; BundleNamePrefix != want {
		t.Errorf("BundleNamePrefix %q, want %q", BundleNamePrefix, want)
	}
}

func bundle(name, signer, retireAfter string) certificatesv1.ClusterTrustBundle {
	b := certificatesv1.ClusterTrustBundle{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       certificatesv1.ClusterTrustBundleSpec{SignerName: signer, TrustBundle: "pem"},
	}
	if retireAfter != "" {
		b.Annotations = map[string]string{RetireAfterAnnotation: retireAfter}
	}
	return b
}

func TestPlanBundles(t *testing.T) {
	cur, err := GenerateCA("cluster.local", now)
	if err != nil {
		t.Fatal(err)
	}
	// A fraction of a second in now: the retire time written as RFC 3339 must
	// not come out earlier than planned, so it is rounded up.
	now := time.Date(2030, 3, 1, 10, 20, 30, 500_000_000, time.UTC)
	retire := time.Date(2030, 3, 2, 10, 30, 31, 0, time.UTC) // now + 24h10m, rounded up
	// RFC 3339 drops now's half second, so annotations written from now are
	// half a second earlier than the time they were computed from.
	rfc := func(t time.Time) string { return t.Format(time.RFC3339) }
	const half = 500 * time.Millisecond
	curName := cur.BundleName()
	const old, older = BundleNamePrefix + "0123456789abcdef", BundleNamePrefix + "fedcba9876543210"

	for _, tc := range []struct {
		name     string
		current  *CA
		existing []certificatesv1.ClusterTrustBundle
		want     BundlePlan
	}{
		{name: "no CA yet", current: nil, existing: []certificatesv1.ClusterTrustBundle{bundle(old, SignerName, "")}},
		{name: "fresh", current: cur, want: BundlePlan{Create: TrustBundle(cur)}},
		{name: "steady", current: cur, existing: []certificatesv1.ClusterTrustBundle{bundle(curName, SignerName, "")}},
		{
			name: "CA changed", current: cur,
			existing: []certificatesv1.ClusterTrustBundle{bundle(old, SignerName, "")},
			want:     BundlePlan{Create: TrustBundle(cur), Retire: map[string]time.Time{old: retire}, RequeueAfter: retire.Sub(now)},
		},
		{
			name: "CA changed, new bundle already there", current: cur,
			existing: []certificatesv1.ClusterTrustBundle{bundle(curName, SignerName, ""), bundle(old, SignerName, "")},
			want:     BundlePlan{Retire: map[string]time.Time{old: retire}, RequeueAfter: retire.Sub(now)},
		},
		{
			name: "old retired, pending", current: cur,
			existing: []certificatesv1.ClusterTrustBundle{bundle(curName, SignerName, ""), bundle(old, SignerName, rfc(now.Add(3*time.Hour)))},
			want:     BundlePlan{RequeueAfter: 3*time.Hour - half},
		},
		{
			name: "earliest pending wins", current: cur,
			existing: []certificatesv1.ClusterTrustBundle{
				bundle(curName, SignerName, ""),
				bundle(old, SignerName, rfc(now.Add(3*time.Hour))),
				bundle(older, SignerName, rfc(now.Add(time.Hour))),
			},
			want: BundlePlan{RequeueAfter: time.Hour - half},
		},
		{
			name: "old retired and passed", current: cur,
			existing: []certificatesv1.ClusterTrustBundle{
				bundle(curName, SignerName, ""),
				bundle(older, SignerName, rfc(now.Add(-time.Second))),
				bundle(old, SignerName, rfc(now.Add(-48*time.Hour))),
			},
			want: BundlePlan{Delete: []string{old, older}},
		},
		{
			name: "one passed, one pending", current: cur,
			existing: []certificatesv1.ClusterTrustBundle{
				bundle(curName, SignerName, ""),
				bundle(older, SignerName, rfc(now.Add(-time.Minute))),
				bundle(old, SignerName, rfc(now.Add(time.Minute))),
			},
			want: BundlePlan{Delete: []string{older}, RequeueAfter: time.Minute - half},
		},
		{
			name: "rollback", current: cur,
			existing: []certificatesv1.ClusterTrustBundle{bundle(curName, SignerName, rfc(now.Add(time.Hour))), bundle(old, SignerName, "")},
			want:     BundlePlan{Unretire: []string{curName}, Retire: map[string]time.Time{old: retire}, RequeueAfter: retire.Sub(now)},
		},
		{
			name: "rollback after the retire time passed", current: cur,
			existing: []certificatesv1.ClusterTrustBundle{bundle(curName, SignerName, rfc(now.Add(-time.Hour)))},
			want:     BundlePlan{Unretire: []string{curName}},
		},
		{
			name: "rollback, malformed annotation", current: cur,
			existing: []certificatesv1.ClusterTrustBundle{bundle(curName, SignerName, "soon")},
			want:     BundlePlan{Unretire: []string{curName}},
		},
		{
			name: "other signers and signerless bundles ignored", current: cur,
			existing: []certificatesv1.ClusterTrustBundle{
				bundle(curName, SignerName, ""),
				bundle("example.com:foo:a", "example.com/foo", ""),
				bundle("example.com:foo:b", "example.com/foo", rfc(now.Add(-time.Hour))),
				bundle("plain", "", rfc(now.Add(-time.Hour))),
			},
		},
		{
			name: "malformed annotation is set again", current: cur,
			existing: []certificatesv1.ClusterTrustBundle{bundle(curName, SignerName, ""), bundle(old, SignerName, "tomorrow")},
			want:     BundlePlan{Retire: map[string]time.Time{old: retire}, RequeueAfter: retire.Sub(now)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PlanBundles(tc.current, tc.existing, now)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			for name, at := range got.Retire {
				back, err := time.Parse(time.RFC3339, at.Format(time.RFC3339))
				if err != nil || !back.Equal(at) {
					t.Errorf("retire time of %s does not survive RFC 3339: %v -> %v", name, at, back)
				}
			}
		})
	}
}

// TestPlanBundlesRotation walks a rotation through time: the old bundle is
// retired when the CA changes and deleted once no leaf it signed can be valid.
func TestPlanBundlesRotation(t *testing.T) {
	a, err := GenerateCA("cluster.local", now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateCA("cluster.local", now)
	if err != nil {
		t.Fatal(err)
	}
	// apply is what the bundle controller does with a plan.
	apply := func(existing []certificatesv1.ClusterTrustBundle, p BundlePlan) []certificatesv1.ClusterTrustBundle {
		var out []certificatesv1.ClusterTrustBundle
		for _, e := range existing {
			if at, ok := p.Retire[e.Name]; ok {
				e.Annotations = map[string]string{RetireAfterAnnotation: at.Format(time.RFC3339)}
			}
			for _, n := range p.Unretire {
				if n == e.Name {
					delete(e.Annotations, RetireAfterAnnotation)
				}
			}
			deleted := false
			for _, n := range p.Delete {
				deleted = deleted || n == e.Name
			}
			if !deleted {
				out = append(out, e)
			}
		}
		if p.Create != nil {
			out = append(out, *p.Create)
		}
		return out
	}
	var bundles []certificatesv1.ClusterTrustBundle
	t0 := now
	bundles = apply(bundles, PlanBundles(a, bundles, t0))
	if len(bundles) != 1 {
		t.Fatalf("after start: %d bundles", len(bundles))
	}
	// A leaf A signs at the last moment it may (BundlePropagation after the switch).
	lastLeaf, err := a.Issue(ecKey(t, elliptic.P256()).Public(), SPIFFEID("td", "ns", "sa"), MaxLeafLifetime, t0.Add(BundlePropagation))
	if err != nil {
		t.Fatal(err)
	}
	p := PlanBundles(b, bundles, t0)
	bundles = apply(bundles, p)
	if len(bundles) != 2 {
		t.Fatalf("after rotation: %d bundles", len(bundles))
	}
	wake := t0.Add(p.RequeueAfter)
	if !wake.After(lastLeaf.NotAfter) {
		t.Errorf("old bundle would go at %v, before A's last leaf expires at %v", wake, lastLeaf.NotAfter)
	}
	if p := PlanBundles(b, bundles, wake.Add(-time.Second)); len(p.Delete) != 0 {
		t.Errorf("deleted early: %v", p.Delete)
	}
	p = PlanBundles(b, bundles, wake)
	if len(p.Delete) != 1 || p.Delete[0] != a.BundleName() {
		t.Fatalf("at retire time: plan %+v", p)
	}
	bundles = apply(bundles, p)
	if len(bundles) != 1 || bundles[0].Name != b.BundleName() {
		t.Errorf("after retirement: %v", bundles)
	}
}
