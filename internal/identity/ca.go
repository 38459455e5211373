package identity

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// Keys of the CA Secret, as cert-manager writes a Certificate (kubernetes.io/tls).
const (
	keyTLSCert = "tls.crt"
	keyTLSKey  = "tls.key"
	keyCACert  = "ca.crt"
)

// caValidity is long because rotating a root is a trust change across the whole
// mesh; leaves are what rotate often.
const caValidity = 10 // years

// CA signs leaves.
type CA struct {
	// Cert is the signing certificate, the first block of tls.crt.
	Cert *x509.Certificate
	// Key is Cert's private key.
	Key crypto.Signer
	// Chain follows the leaf in an issued chain so peers that trust only the
	// anchors can build a path: Cert and the further intermediates of tls.crt. It
	// is empty when Cert is a root, and never holds a root: peers must already
	// trust the root, sending it only costs bytes in every handshake.
	Chain []*x509.Certificate
	// AnchorsPEM is what the trust bundle publishes: Cert when it is a root,
	// else the certificates of ca.crt, deduplicated and without PEM headers as
	// kube-apiserver requires of a ClusterTrustBundle.
	AnchorsPEM []byte
}

// GenerateCA makes an ECDSA P-256 self-signed root, so a mesh works without
// cert-manager. It is backdated like leaves, valid ten years, and may sign only
// leaves (MaxPathLen 0): nothing below it should ever be a CA.
func GenerateCA(trustDomain string, now time.Time) (*CA, error) {
	if err := ValidateTrustDomain(trustDomain); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	notBefore := now.Truncate(time.Second).Add(-Backdate)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "envoymesh identity CA (" + trustDomain + ")"},
		NotBefore:             notBefore,
		NotAfter:              notBefore.AddDate(caValidity, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		// SubjectKeyId is left to x509.CreateCertificate, which derives it from
		// the public key for a CA (RFC 7093 method 1).
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, AnchorsPEM: encodeCerts(cert)}, nil
}

// ParseCA reads a kubernetes.io/tls Secret's data as cert-manager writes a CA
// Certificate: tls.crt (the CA, then any intermediates above it), tls.key
// (PKCS#8, SEC1 or PKCS#1) and ca.crt (the root). It checks up front what would
// otherwise surface as leaves no peer accepts: that the certificate is a CA, the
// key is its own, it has not expired, and, for an intermediate, that ca.crt
// verifies it.
func ParseCA(data map[string][]byte) (*CA, error) {
	certs, err := parseCerts(keyTLSCert, data[keyTLSCert])
	if err != nil {
		return nil, err
	}
	cert := certs[0]
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("%s: %q is not a CA certificate (basic constraints CA is false)", keyTLSCert, cert.Subject)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s: %q is not a CA certificate (key usage lacks cert sign)", keyTLSCert, cert.Subject)
	}
	// time.Now rather than a parameter: this only rejects a Secret that is
	// already useless; Issue enforces the CA's lifetime against its own clock.
	if now := time.Now(); !now.Before(cert.NotAfter) {
		return nil, fmt.Errorf("%s: %q expired at %s", keyTLSCert, cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339))
	}

	key, err := parseKey(data[keyTLSKey])
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s: private key does not match the certificate in %s", keyTLSKey, keyTLSCert)
	}

	ca := &CA{Cert: cert, Key: key}
	if isSelfSigned(cert) {
		ca.AnchorsPEM = encodeCerts(cert)
		return ca, nil
	}

	ca.Chain = []*x509.Certificate{cert}
	for _, c := range certs[1:] {
		if !isSelfSigned(c) {
			ca.Chain = append(ca.Chain, c)
		}
	}
	if len(data[keyCACert]) == 0 {
		return nil, fmt.Errorf("%s: missing; it is required when %s is not self-signed", keyCACert, keyTLSCert)
	}
	anchors, err := parseCerts(keyCACert, data[keyCACert])
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	var uniq []*x509.Certificate
	seen := map[string]bool{}
	for i, a := range anchors {
		// kube-apiserver rejects a ClusterTrustBundle with a non-CA or duplicate entry.
		if !a.BasicConstraintsValid || !a.IsCA {
			return nil, fmt.Errorf("%s: certificate %d (%q) is not a CA certificate", keyCACert, i, a.Subject)
		}
		if seen[string(a.Raw)] {
			continue
		}
		seen[string(a.Raw)] = true
		uniq = append(uniq, a)
		roots.AddCert(a)
	}
	inter := x509.NewCertPool()
	for _, c := range ca.Chain[1:] {
		inter.AddCert(c)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("%s: does not verify %s, peers would reject its leaves: %w", keyCACert, keyTLSCert, err)
	}
	ca.AnchorsPEM = encodeCerts(uniq...)
	return ca, nil
}

// SecretData is the CA as a kubernetes.io/tls Secret, in the layout ParseCA reads,
// so a generated CA survives operator restarts.
func (ca *CA) SecretData() (map[string][]byte, error) {
	key, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyTLSKey, err)
	}
	crt := encodeCerts(ca.Chain...) // Cert first when it is an intermediate
	if len(ca.Chain) == 0 {
		crt = encodeCerts(ca.Cert)
	}
	return map[string][]byte{
		keyTLSCert: crt,
		keyTLSKey:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
		keyCACert:  bytes.Clone(ca.AnchorsPEM),
	}, nil
}

// ID names the CA by its certificate, stable across restarts and equal for the
// same CA read back from its Secret: the first 16 hex characters of the SHA-256 of
// its DER.
func (ca *CA) ID() string {
	sum := sha256.Sum256(ca.Cert.Raw)
	return hex.EncodeToString(sum[:])[:16]
}

// BundleName is the name of the ClusterTrustBundle publishing the CA; one bundle
// per CA lets old and new trust coexist during a rotation.
func (ca *CA) BundleName() string { return BundleNamePrefix + ca.ID() }

// parseCerts reads every CERTIFICATE block of a PEM value; errors name key.
func parseCerts(key string, data []byte) ([]*x509.Certificate, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%s: missing", key)
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %d is %q, want CERTIFICATE", key, len(certs), b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", key, len(certs), err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: not PEM (no CERTIFICATE block)", key)
	}
	return certs, nil
}

// parseKey reads the one private key block of tls.key in any encoding cert-manager
// writes (its privateKey.encoding: PKCS1 or PKCS8; SEC1 for ECDSA under PKCS1).
func parseKey(data []byte) (crypto.Signer, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%s: missing", keyTLSKey)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%s: not PEM", keyTLSKey)
	}
	var (
		key any
		err error
	)
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM block is %q, want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY", keyTLSKey, b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyTLSKey, err)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey, ed25519.PrivateKey:
		return k.(crypto.Signer), nil
	default:
		return nil, fmt.Errorf("%s: unsupported key type %T, want ECDSA, RSA or Ed25519", keyTLSKey, key)
	}
}

// isSelfSigned reports whether c is a root: a name and a signature of its own.
func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

func encodeCerts(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

// serialLimit bounds serials to 128 bits: unpredictable, and well inside RFC
// 5280's 20 octets.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

func randomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		if n.Sign() > 0 { // RFC 5280: positive
			return n, nil
		}
	}
}
