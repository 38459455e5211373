package identity

import (
	"crypto"
	"crypto/ecdh"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"slices"
	"strings"
	"testing"
	"time"
)

// now has a fraction of a second on purpose: certificates and metav1.Time cannot
// carry it, so Issue must drop it.
var now = time.Date(2030, 3, 1, 10, 20, 30, 987654321, time.UTC)

var oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

func TestIssue(t *testing.T) {
	root, err := GenerateCA("cluster.local", now.Add(-30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// A CA with a few hours left caps leaves at its own expiry.
	short := caOf(makeCert(t, ecKey(t, elliptic.P256()), nil, certOpts{
		notBefore: now.Add(-time.Hour), notAfter: now.Add(5 * time.Hour).Truncate(time.Second),
	}))
	// The shortest a CA may have left: backdating makes the leaf an hour long.
	edge := caOf(makeCert(t, ecKey(t, elliptic.P256()), nil, certOpts{
		notBefore: now.Add(-time.Hour), notAfter: now.Truncate(time.Second).Add(MinLeafLifetime - Backdate),
	}))
	rsaCA := caOf(makeCert(t, rsaKey(), nil, certOpts{notBefore: now.Add(-time.Hour), notAfter: now.Add(1000 * time.Hour)}))
	edCA := caOf(makeCert(t, edKey(t), nil, certOpts{notBefore: now.Add(-time.Hour), notAfter: now.Add(1000 * time.Hour)}))

	nb := now.Truncate(time.Second).Add(-Backdate)
	for _, tc := range []struct {
		name         string
		ca           *CA
		pub          crypto.PublicKey
		max          time.Duration
		wantLifetime time.Duration
	}{
		{"max 24h", root, ecKey(t, elliptic.P256()).Public(), 24 * time.Hour, 24 * time.Hour},
		{"max 91d capped at 24h", root, ecKey(t, elliptic.P256()).Public(), 91 * 24 * time.Hour, MaxLeafLifetime},
		{"max 1h", root, ecKey(t, elliptic.P256()).Public(), time.Hour, time.Hour},
		{"max 90m", root, ecKey(t, elliptic.P384()).Public(), 90 * time.Minute, 90 * time.Minute},
		{"odd seconds, half life truncated", root, ecKey(t, elliptic.P521()).Public(), 3601 * time.Second, 3601 * time.Second},
		{"ed25519 pod key", root, edKey(t).Public(), 2 * time.Hour, 2 * time.Hour},
		{"rsa pod key", root, rsaKey().Public(), 24 * time.Hour, 24 * time.Hour},
		{"capped by CA expiry", short, ecKey(t, elliptic.P256()).Public(), 24 * time.Hour, short.Cert.NotAfter.Sub(nb)},
		{"CA expiry leaves exactly the minimum", edge, ecKey(t, elliptic.P256()).Public(), 24 * time.Hour, MinLeafLifetime},
		{"rsa CA", rsaCA, ecKey(t, elliptic.P256()).Public(), 24 * time.Hour, 24 * time.Hour},
		{"ed25519 CA", edCA, ecKey(t, elliptic.P256()).Public(), 24 * time.Hour, 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := SPIFFEID("cluster.local", "shop", "cart")
			leaf, err := tc.ca.Issue(tc.pub, id, tc.max, now)
			if err != nil {
				t.Fatal(err)
			}
			verifyLeaf(t, tc.ca, leaf, now)
			c := leaf.Cert

			if got := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !got.Equal(tc.pub) {
				t.Errorf("leaf public key is not the requested one")
			}
			if len(c.URIs) != 1 || c.URIs[0].String() != id {
				t.Errorf("URIs = %v, want only %s", c.URIs, id)
			}
			if len(c.DNSNames)+len(c.IPAddresses)+len(c.EmailAddresses) != 0 {
				t.Errorf("extra SANs: dns %v ip %v email %v", c.DNSNames, c.IPAddresses, c.EmailAddresses)
			}
			if len(c.Subject.Names) != 0 {
				t.Errorf("subject = %q, want empty", c.Subject)
			}
			for _, e := range c.Extensions {
				// RFC 5280 4.2.1.6: with an empty subject the SAN must be critical.
				if e.Id.Equal(oidSAN) && !e.Critical {
					t.Errorf("SAN extension is not critical")
				}
			}
			if c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KeyUsage = %v, want DigitalSignature only", c.KeyUsage)
			}
			if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
				t.Errorf("ExtKeyUsage = %v", c.ExtKeyUsage)
			}
			if !c.BasicConstraintsValid || c.IsCA {
				t.Errorf("BasicConstraintsValid %v IsCA %v, want true false", c.BasicConstraintsValid, c.IsCA)
			}
			if len(tc.ca.Cert.SubjectKeyId) == 0 || string(c.AuthorityKeyId) != string(tc.ca.Cert.SubjectKeyId) {
				t.Errorf("AuthorityKeyId %x, CA SubjectKeyId %x", c.AuthorityKeyId, tc.ca.Cert.SubjectKeyId)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %v is not a positive 128-bit number", c.SerialNumber)
			}

			for name, ts := range map[string]time.Time{"NotBefore": leaf.NotBefore, "NotAfter": leaf.NotAfter, "BeginRefreshAt": leaf.BeginRefreshAt} {
				if ts.Nanosecond() != 0 {
					t.Errorf("%s %v has a fraction of a second", name, ts)
				}
			}
			if !leaf.NotBefore.Equal(c.NotBefore) || !leaf.NotAfter.Equal(c.NotAfter) {
				t.Errorf("Leaf times %v..%v differ from the certificate's %v..%v", leaf.NotBefore, leaf.NotAfter, c.NotBefore, c.NotAfter)
			}
			if !leaf.NotBefore.Equal(nb) {
				t.Errorf("NotBefore = %v, want %v (now to the second, minus %v)", leaf.NotBefore, nb, Backdate)
			}
			if got := leaf.NotAfter.Sub(leaf.NotBefore); got != tc.wantLifetime {
				t.Errorf("lifetime = %v, want %v", got, tc.wantLifetime)
			}
			if leaf.NotAfter.After(tc.ca.Cert.NotAfter) {
				t.Errorf("leaf outlives its CA: %v > %v", leaf.NotAfter, tc.ca.Cert.NotAfter)
			}
			half := leaf.NotBefore.Add(tc.wantLifetime / 2).Truncate(time.Second)
			if !leaf.BeginRefreshAt.Equal(half) {
				t.Errorf("BeginRefreshAt = %v, want half life %v", leaf.BeginRefreshAt, half)
			}
			if leaf.BeginRefreshAt.Before(leaf.NotBefore.Add(10*time.Minute)) || leaf.BeginRefreshAt.After(leaf.NotAfter.Add(-10*time.Minute)) {
				t.Errorf("BeginRefreshAt %v outside the API server's [notBefore+10m, notAfter-10m]", leaf.BeginRefreshAt)
			}
			if got := decodeChain(t, leaf.ChainPEM); len(got) != 1+len(tc.ca.Chain) {
				t.Errorf("chain has %d certificates, want the leaf and %d", len(got), len(tc.ca.Chain))
			}
		})
	}
}

func TestIssueRefuses(t *testing.T) {
	ca, err := GenerateCA("cluster.local", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// Backdating gives a leaf Backdate more than what is left of the CA, so
	// the CA must have less than MinLeafLifetime-Backdate left to refuse.
	dying := caOf(makeCert(t, ecKey(t, elliptic.P256()), nil, certOpts{
		notBefore: now.Add(-time.Hour), notAfter: now.Truncate(time.Second).Add(MinLeafLifetime - Backdate - time.Second),
	}))
	halfHour := caOf(makeCert(t, ecKey(t, elliptic.P256()), nil, certOpts{
		notBefore: now.Add(-time.Hour), notAfter: now.Add(30 * time.Minute),
	}))
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := ecKey(t, elliptic.P256()).Public()
	id := SPIFFEID("cluster.local", "ns", "sa")
	for _, tc := range []struct {
		name string
		ca   *CA
		pub  crypto.PublicKey
		id   string
		max  time.Duration
		want string
	}{
		{"CA expires in under an hour", dying, pub, id, 24 * time.Hour, "expires"},
		{"CA expires in half an hour", halfHour, pub, id, 24 * time.Hour, "expires"},
		{"max below the API server's floor", ca, pub, id, 30 * time.Minute, "minimum leaf lifetime"},
		{"unsupported key", ca, x25519.PublicKey(), id, 24 * time.Hour, "unsupported public key type"},
		{"nil key", ca, nil, id, 24 * time.Hour, "unsupported public key type"},
		{"not spiffe", ca, pub, "https://cluster.local/ns/a/sa/b", 24 * time.Hour, "not a SPIFFE ID"},
		{"no trust domain", ca, pub, "spiffe:///ns/a/sa/b", 24 * time.Hour, "not a SPIFFE ID"},
		{"garbage", ca, pub, "spiffe://%zz", 24 * time.Hour, "not a SPIFFE ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf, err := tc.ca.Issue(tc.pub, tc.id, tc.max, now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Issue = %v, %v; want error containing %q", leaf, err, tc.want)
			}
		})
	}
}

// TestIssueAPIServerAccepts writes the issued fields into a status the way the
// controller does and runs kube-apiserver's checks on it, for the shortest and
// the default maxExpirationSeconds, with the API server's clock a little behind
// and ahead of the signer's.
func TestIssueAPIServerAccepts(t *testing.T) {
	root, err := GenerateCA("cluster.local", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	inter := intermediateCA(t)
	interCA, err := ParseCA(inter.data)
	if err != nil {
		t.Fatal(err)
	}
	realNow := time.Now()
	for _, tc := range []struct {
		name string
		ca   *CA
		now  time.Time
	}{
		{"root", root, now},
		{"intermediate", interCA, realNow},
	} {
		for _, maxSeconds := range []int32{3600, 86400} {
			for _, skew := range []time.Duration{-2 * time.Minute, 0, 3 * time.Minute} {
				key := ecKey(t, elliptic.P256())
				req := stubPCR(t, key, maxSeconds)
				leaf, err := tc.ca.Issue(key.Public(), SPIFFEID("cluster.local", "ns", "sa"), time.Duration(maxSeconds)*time.Second, tc.now)
				if err != nil {
					t.Fatal(err)
				}
				st := issuedStatus(t, leaf)
				if errs := apiServerIssuedErrors(req, st, tc.now.Add(skew)); len(errs) != 0 {
					t.Errorf("%s, maxExpirationSeconds %d, API server clock %v: rejected: %v", tc.name, maxSeconds, skew, errs)
				}
			}
		}
	}
}

// TestAPIServerCheckBites makes sure the copied API server check rejects what the
// real one does, so TestIssueAPIServerAccepts means something.
func TestAPIServerCheckBites(t *testing.T) {
	ca, err := GenerateCA("cluster.local", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	key := ecKey(t, elliptic.P256())
	req := stubPCR(t, key, 3600)
	leaf, err := ca.Issue(key.Public(), SPIFFEID("cluster.local", "ns", "sa"), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	other := ecKey(t, elliptic.P256())
	otherLeaf, err := ca.Issue(other.Public(), SPIFFEID("cluster.local", "ns", "sa"), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	long, err := ca.Issue(key.Public(), SPIFFEID("cluster.local", "ns", "sa"), 2*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		leaf   *Leaf
		mutate func(*Leaf)
		apiNow time.Time
		want   string
	}{
		{"notBefore off by a second", leaf, func(l *Leaf) { l.NotBefore = l.NotBefore.Add(time.Second) }, now, "notBefore"},
		{"clock far ahead", leaf, func(*Leaf) {}, now.Add(10 * time.Minute), "within 5 minutes"},
		{"other key", otherLeaf, func(*Leaf) {}, now, "requested public key"},
		{"longer than asked", long, func(l *Leaf) {}, now, "maxExpirationSeconds"},
		{"refresh too late", leaf, func(l *Leaf) { l.BeginRefreshAt = l.NotAfter.Add(-5 * time.Minute) }, now, "beginRefreshAt"},
	} {
		l := *tc.leaf
		tc.mutate(&l)
		errs := apiServerIssuedErrors(req, issuedStatus(t, &l), tc.apiNow)
		if len(errs) == 0 || !strings.Contains(strings.Join(errs, "; "), tc.want) {
			t.Errorf("%s: errors %v, want one about %q", tc.name, errs, tc.want)
		}
	}
}

// BenchmarkIssue is what one PodCertificateRequest costs the signer: signing a
// leaf for a fresh P-256 key (the kubelet's default) with a generated root.
func BenchmarkIssue(b *testing.B) {
	ca, err := GenerateCA("cluster.local", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	pub := ecKey(b, elliptic.P256()).Public()
	id := SPIFFEID("cluster.local", "ns", "sa")
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ca.Issue(pub, id, MaxLeafLifetime, now); err != nil {
			b.Fatal(err)
		}
	}
}
