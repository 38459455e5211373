package identity

import (
	"sync"
	"time"
)

// BundlePropagation is how long a new bundle is given to reach pods before its CA
// signs: the kubelet refreshes projected volumes about once a minute, and a proxy
// must reload the bundle after that.
const BundlePropagation = 2 * time.Minute

// Authority holds the CA the signer uses. When the CA changes, leaves keep coming
// from the previous CA until the new CA's bundle has had time to reach every pod,
// so a new leaf never reaches a peer that does not trust it yet. The bundle
// controller sets it; the PodCertificateRequest controller signs with it.
type Authority struct {
	mu         sync.Mutex
	current    *CA
	previous   *CA
	usableFrom time.Time
}

// Set makes ca current, usable for signing from usableFrom: its bundle's creation
// plus BundlePropagation, which is already past for a bundle that has long existed
// (a restart, a rollback to a CA still trusted). The CA it replaces, if a
// different one (by ID), becomes previous. Setting the same CA again only moves
// usableFrom earlier, never later, so repeated reconciles cannot hold back a CA
// that is already signing. A nil ca is ignored.
func (a *Authority) Set(ca *CA, usableFrom time.Time) {
	if ca == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.current != nil && a.current.ID() == ca.ID() {
		a.current = ca // the same certificate, maybe with a newer chain or anchors
		if usableFrom.Before(a.usableFrom) {
			a.usableFrom = usableFrom
		}
		return
	}
	a.previous, a.current, a.usableFrom = a.current, ca, usableFrom
}

// ForSigning returns the CA to sign with at now: previous while now is before the
// current CA's usableFrom and a previous CA exists, else current (after the first
// Set there is nothing else to sign with); nil before any Set.
func (a *Authority) ForSigning(now time.Time) *CA {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.previous != nil && now.Before(a.usableFrom) {
		return a.previous
	}
	return a.current
}

// Current returns the latest CA set, the one whose bundle must exist; nil before
// any Set.
func (a *Authority) Current() *CA {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.current
}
