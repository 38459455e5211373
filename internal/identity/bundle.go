package identity

import (
	"slices"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RetireMargin is added to MaxLeafLifetime before an old bundle may go: it covers
// clock skew, Backdate, and the BundlePropagation window in which the old CA still
// signs after the new one is set.
const RetireMargin = 10 * time.Minute

// RetireAfterAnnotation on a ClusterTrustBundle of an old CA: RFC 3339 time after
// which no leaf it signed is valid. It lives on the object, not in memory, so an
// operator restart neither forgets nor restarts the countdown.
const RetireAfterAnnotation = "mesh.envoymesh.io/retire-after"

const (
	managedByLabel = "app.kubernetes.io/managed-by"
	managedByValue = "envoymesh-operator"
	caIDLabel      = "mesh.envoymesh.io/ca-id"
)

// TrustBundle is the signer-linked ClusterTrustBundle publishing ca's anchors,
// which pods mount with a clusterTrustBundle projection by signer name, so they
// trust every CA of the signer at once. TypeMeta is set so it can be server-side
// applied as is.
func TrustBundle(ca *CA) *certificatesv1.ClusterTrustBundle {
	return &certificatesv1.ClusterTrustBundle{
		TypeMeta: metav1.TypeMeta{APIVersion: certificatesv1.SchemeGroupVersion.String(), Kind: "ClusterTrustBundle"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   ca.BundleName(),
			Labels: map[string]string{managedByLabel: managedByValue, caIDLabel: ca.ID()},
		},
		Spec: certificatesv1.ClusterTrustBundleSpec{
			SignerName:  SignerName,
			TrustBundle: string(ca.AnchorsPEM),
		},
	}
}

// BundlePlan is what the bundle controller must do so that trust follows the
// current CA without an outage: the current CA's bundle exists, and every other
// bundle of the signer stays until no leaf its CA signed can still be valid.
type BundlePlan struct {
	// Create is the current CA's bundle, when missing.
	Create *certificatesv1.ClusterTrustBundle
	// Retire maps bundle name to the retire-after time to set (now +
	// MaxLeafLifetime + RetireMargin, in UTC and rounded up to the second so it
	// survives RFC 3339) on other bundles without a valid one yet.
	Retire map[string]time.Time
	// Unretire lists bundles of the current CA that carry the annotation (the CA
	// was rolled back): clear it.
	Unretire []string
	// Delete lists bundles whose retire-after has passed; never the current CA's.
	Delete []string
	// RequeueAfter is the time until the earliest pending retire-after, 0 if none.
	RequeueAfter time.Duration
}

// PlanBundles compares the bundles of the signer with the current CA. It looks
// only at bundles whose spec.signerName is SignerName: those are the signer's
// alone (creating one takes attest permission on it), and any other is none of its
// business. The retire time is set once, when a bundle first stops being current,
// because only then is it known that its CA stopped signing; a malformed
// annotation counts as absent and is set again. With no current CA it plans
// nothing: retiring then could take trust away from leaves still being issued.
func PlanBundles(current *CA, existing []certificatesv1.ClusterTrustBundle, now time.Time) BundlePlan {
	var plan BundlePlan
	if current == nil {
		return plan
	}
	name := current.BundleName()
	found := false
	var next time.Time
	pending := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for i := range existing {
		b := &existing[i]
		if b.Spec.SignerName != SignerName {
			continue
		}
		raw, annotated := b.Annotations[RetireAfterAnnotation]
		if b.Name == name {
			found = true
			if annotated {
				plan.Unretire = append(plan.Unretire, b.Name)
			}
			continue
		}
		at, err := time.Parse(time.RFC3339, raw)
		switch {
		case !annotated || err != nil:
			at = retireAt(now)
			if plan.Retire == nil {
				plan.Retire = map[string]time.Time{}
			}
			plan.Retire[b.Name] = at
			pending(at)
		case !now.Before(at):
			plan.Delete = append(plan.Delete, b.Name)
		default:
			pending(at)
		}
	}
	if !found {
		plan.Create = TrustBundle(current)
	}
	if !next.IsZero() {
		plan.RequeueAfter = next.Sub(now)
	}
	slices.Sort(plan.Unretire)
	slices.Sort(plan.Delete)
	return plan
}

// retireAt is when a bundle retired now may go, rounded up to a whole second so
// writing it as RFC 3339 never makes it earlier.
func retireAt(now time.Time) time.Time {
	at := now.Add(MaxLeafLifetime + RetireMargin).UTC()
	if t := at.Truncate(time.Second); !t.Equal(at) {
		return t.Add(time.Second)
	}
	return at
}
