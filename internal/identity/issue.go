package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// SignerName is the signer pods name in their podCertificate projected volumes.
const SignerName = "mesh.envoymesh.io/identity"

// BundleNamePrefix starts every ClusterTrustBundle name of the signer (the API
// server requires "<signer with / replaced by :>:").
const BundleNamePrefix = "mesh.envoymesh.io:identity:"

// MaxLeafLifetime caps leaves at a day, as the kubernetes.io signers do: short
// enough that a leaked key expires soon and an old CA's bundle can go a day after
// rotation.
const MaxLeafLifetime = 24 * time.Hour

// MinLeafLifetime is the API server's floor for an issued certificate.
const MinLeafLifetime = time.Hour

// Backdate is taken off notBefore so a peer whose clock runs a little behind
// already accepts a fresh leaf (the API server accepts notBefore within ±5 min).
const Backdate = time.Minute

// Leaf is an issued certificate as the PodCertificateRequest status wants it.
type Leaf struct {
	// ChainPEM is the leaf followed by the CA's Chain, for status.certificateChain.
	ChainPEM string
	// NotBefore and NotAfter are the leaf's own validity, as the API server
	// requires of status.notBefore and status.notAfter.
	NotBefore, NotAfter time.Time
	// BeginRefreshAt is half life, inside the API server's
	// [notBefore+10m, notAfter-10m] for any lifetime of at least an hour.
	BeginRefreshAt time.Time
	// Cert is the leaf, for logging and metrics.
	Cert *x509.Certificate
}

// Issue signs a leaf for pub whose only name is the URI SAN spiffeID (a SPIFFE
// X.509-SVID: empty subject, no DNS, IP or email names), usable for both ends of
// mTLS. The times are what the PodCertificateRequest status must repeat: the API
// server rejects a status whose notBefore and notAfter differ from the
// certificate's, and both have second precision, so now is truncated to the second
// first. The lifetime is the shortest of maxExpiration (the request's
// maxExpirationSeconds), MaxLeafLifetime and what is left of the CA, and at least
// MinLeafLifetime; refresh begins at half life.
func (ca *CA) Issue(pub crypto.PublicKey, spiffeID string, maxExpiration time.Duration, now time.Time) (*Leaf, error) {
	switch pub.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("unsupported public key type %T, want ECDSA, RSA or Ed25519", pub)
	}
	uri, err := url.Parse(spiffeID)
	if err != nil || uri.Scheme != "spiffe" || uri.Host == "" || !strings.HasPrefix(uri.Path, "/") {
		return nil, fmt.Errorf("%q is not a SPIFFE ID", spiffeID)
	}

	lifetime := min(maxExpiration, MaxLeafLifetime)
	if lifetime < MinLeafLifetime {
		return nil, fmt.Errorf("maximum expiration %v is shorter than the minimum leaf lifetime %v", maxExpiration, MinLeafLifetime)
	}
	notBefore := now.Truncate(time.Second).Add(-Backdate)
	notAfter := notBefore.Add(lifetime)
	if ca.Cert.NotAfter.Before(notAfter) {
		// A leaf must not outlive its CA: peers would reject it before it expires.
		notAfter = ca.Cert.NotAfter
	}
	if notAfter.Sub(notBefore) < MinLeafLifetime {
		return nil, fmt.Errorf("CA %q expires at %s, too soon to issue a leaf valid %v", ca.Cert.Subject, ca.Cert.NotAfter.UTC().Format(time.RFC3339), MinLeafLifetime)
	}

	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		URIs:                  []*url.URL{uri},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		AuthorityKeyId:        ca.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign leaf for %s: %w", spiffeID, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse leaf for %s: %w", spiffeID, err)
	}

	var chain strings.Builder
	_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	for _, c := range ca.Chain {
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	// The status must repeat the certificate's own times, so read them back
	// from it rather than trusting the template.
	nb, na := cert.NotBefore, cert.NotAfter
	return &Leaf{
		ChainPEM:       chain.String(),
		NotBefore:      nb,
		NotAfter:       na,
		BeginRefreshAt: nb.Add(na.Sub(nb) / 2).Truncate(time.Second),
		Cert:           cert,
	}, nil
}
