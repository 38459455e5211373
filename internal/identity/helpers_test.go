package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Fixtures build CAs the way cert-manager would leave them in a Secret, so ParseCA
// and Issue are tested against real encodings rather than this package's own.

var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func ecKey(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func edKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// certOpts describe a test certificate; the zero value is a CA valid a year
// around the real clock (ParseCA checks expiry against it).
type certOpts struct {
	cn                  string
	notBefore, notAfter time.Time
	notCA               bool
	keyUsage            x509.KeyUsage
}

type signed struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// makeCert signs a certificate for key with parent (self-signed when nil).
func makeCert(t testing.TB, key crypto.Signer, parent *signed, o certOpts) *signed {
	t.Helper()
	if o.cn == "" {
		o.cn = "test CA"
	}
	if o.notBefore.IsZero() {
		o.notBefore = time.Now().Add(-time.Hour)
	}
	if o.notAfter.IsZero() {
		o.notAfter = time.Now().Add(365 * 24 * time.Hour)
	}
	if o.keyUsage == 0 {
		o.keyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	}
	serial, err := randomSerial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.cn, Organization: []string{"cert-manager"}},
		NotBefore:             o.notBefore,
		NotAfter:              o.notAfter,
		IsCA:                  !o.notCA,
		BasicConstraintsValid: true,
		KeyUsage:              o.keyUsage,
	}
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &signed{cert: c, key: key}
}

func pemCerts(certs ...*x509.Certificate) []byte { return encodeCerts(certs...) }

// pemKey encodes key as cert-manager does for each privateKey.encoding.
func pemKey(t testing.TB, key crypto.Signer, format string) []byte {
	t.Helper()
	var (
		der []byte
		err error
	)
	switch format {
	case "PRIVATE KEY":
		der, err = x509.MarshalPKCS8PrivateKey(key)
	case "EC PRIVATE KEY":
		der, err = x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	case "RSA PRIVATE KEY":
		der = x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))
	default:
		t.Fatalf("unknown key format %q", format)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: format, Bytes: der})
}

// caOf wraps a self-signed fixture as a CA without ParseCA, for tests that pin
// the clock.
func caOf(s *signed) *CA {
	return &CA{Cert: s.cert, Key: s.key, AnchorsPEM: pemCerts(s.cert)}
}

// verifyLeaf checks the issued chain the way a peer does: roots from the
// published anchors, the rest of the chain as intermediates, for each usage a
// mesh leaf serves.
func verifyLeaf(t *testing.T, ca *CA, leaf *Leaf, now time.Time) {
	t.Helper()
	chain := decodeChain(t, leaf.ChainPEM)
	if !chain[0].Equal(leaf.Cert) {
		t.Fatalf("first certificate of the chain is not the leaf")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ca.AnchorsPEM) {
		t.Fatalf("anchors hold no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Fatalf("verify for usage %v: %v", u, err)
		}
	}
}

func decodeChain(t *testing.T, s string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for rest := []byte(s); ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if strings.TrimSpace(string(rest)) != "" {
				t.Fatalf("trailing data after the chain: %q", rest)
			}
			return out
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("chain block %d: %v", len(out), err)
		}
		out = append(out, c)
	}
}

// stubPCR is a PodCertificateRequest as the kubelet files it: an empty PKCS#10
// request signed by the pod's key.
func stubPCR(t *testing.T, key crypto.Signer, maxExpirationSeconds int32) *certificatesv1.PodCertificateRequest {
	t.Helper()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return &certificatesv1.PodCertificateRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "pcr", Namespace: "ns"},
		Spec: certificatesv1.PodCertificateRequestSpec{
			SignerName:           SignerName,
			PodName:              "pod",
			ServiceAccountName:   "sa",
			MaxExpirationSeconds: &maxExpirationSeconds,
			StubPKCS10Request:    csr,
		},
	}
}

// issuedStatus is the status the controller writes for leaf, sent through JSON as
// it is on the way to the API server (metav1.Time keeps whole seconds).
func issuedStatus(t *testing.T, leaf *Leaf) certificatesv1.PodCertificateRequestStatus {
	t.Helper()
	st := certificatesv1.PodCertificateRequestStatus{
		Conditions:       []metav1.Condition{{Type: certificatesv1.PodCertificateRequestConditionTypeIssued, Status: metav1.ConditionTrue, Reason: "Issued", LastTransitionTime: metav1.Now()}},
		CertificateChain: leaf.ChainPEM,
		NotBefore:        &metav1.Time{Time: leaf.NotBefore},
		NotAfter:         &metav1.Time{Time: leaf.NotAfter},
		BeginRefreshAt:   &metav1.Time{Time: leaf.BeginRefreshAt},
	}
	j, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var out certificatesv1.PodCertificateRequestStatus
	if err := json.Unmarshal(j, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Sizes from k8s.io/kubernetes@v1.37.2/pkg/apis/certificates/types.go.
const (
	apiMaxCertificateChainSize = 100 * 1024
	apiMaxTrustBundleSize      = 1 * 1024 * 1024
)

// apiServerIssuedErrors repeats what kube-apiserver checks when a
// PodCertificateRequest's status turns Issued: the pcrIsIssued(newReq) branch of
// ValidatePodCertificateRequestStatusUpdate in
// k8s.io/kubernetes@v1.37.2/pkg/apis/certificates/validation/validation.go.
// It is copied because k8s.io/kubernetes is no dependency of the operator;
// apiNow is the API server's clock.
func apiServerIssuedErrors(req *certificatesv1.PodCertificateRequest, st certificatesv1.PodCertificateRequestStatus, apiNow time.Time) []string {
	var errs []string
	if len(st.CertificateChain) > apiMaxCertificateChainSize {
		return []string{"certificateChain: too long"}
	}
	leafBlock, rest := pem.Decode([]byte(st.CertificateChain))
	if leafBlock == nil {
		return []string{"certificateChain: issued certificate chain must contain at least one certificate"}
	}
	if leafBlock.Type != "CERTIFICATE" {
		return []string{"certificateChain: issued certificate chain must consist entirely of CERTIFICATE PEM blocks"}
	}
	leafCert, err := x509.ParseCertificate(leafBlock.Bytes)
	if err != nil {
		return []string{"certificateChain: leaf certificate does not parse as valid X.509"}
	}
	for _, dnsName := range leafCert.DNSNames {
		if dnsName == "" || strings.Contains(dnsName, "..") || strings.HasPrefix(dnsName, ".") || strings.HasSuffix(dnsName, ".") {
			errs = append(errs, "certificateChain: bad DNSName "+dnsName)
		}
	}
	for _, emailAddress := range leafCert.EmailAddresses {
		if _, err := mail.ParseAddress(emailAddress); err != nil {
			errs = append(errs, "certificateChain: leaf certificate should not contain invalid EmailAddress")
		}
	}
	csr, err := x509.ParseCertificateRequest(req.Spec.StubPKCS10Request)
	if err != nil {
		return append(errs, "spec.stubPKCS10Request: must be a valid PKCS#10 CSR")
	}
	switch wantPK := csr.PublicKey.(type) {
	case ed25519.PublicKey:
		if !wantPK.Equal(leafCert.PublicKey) {
			return append(errs, "certificateChain: leaf certificate was not issued to the requested public key")
		}
	case *rsa.PublicKey:
		if !wantPK.Equal(leafCert.PublicKey) {
			return append(errs, "certificateChain: leaf certificate was not issued to the requested public key")
		}
	case *ecdsa.PublicKey:
		if !wantPK.Equal(leafCert.PublicKey) {
			return append(errs, "certificateChain: leaf certificate was not issued to the requested public key")
		}
	}
	if st.NotBefore == nil || st.NotAfter == nil || st.BeginRefreshAt == nil {
		return append(errs, "notBefore, notAfter and beginRefreshAt must be present")
	}
	if len(errs) > 0 {
		return errs
	}
	if !st.NotBefore.Time.Equal(leafCert.NotBefore) {
		return []string{"notBefore: must be set to the NotBefore time encoded in the leaf certificate"}
	}
	if !timeNear(st.NotBefore.Time, apiNow, 5*time.Minute) {
		return []string{"notBefore: must be set to within 5 minutes of kube-apiserver's current time"}
	}
	if !st.NotAfter.Time.Equal(leafCert.NotAfter) {
		return []string{"notAfter: must be set to the NotAfter time encoded in the leaf certificate"}
	}
	lifetime := leafCert.NotAfter.Sub(leafCert.NotBefore)
	if lifetime < 1*time.Hour {
		return []string{"certificateChain: leaf certificate lifetime must be >= 1 hour"}
	}
	if lifetime > time.Duration(*req.Spec.MaxExpirationSeconds)*time.Second {
		return []string{fmt.Sprintf("certificateChain: leaf certificate lifetime must be <= spec.maxExpirationSeconds (%v)", *req.Spec.MaxExpirationSeconds)}
	}
	if st.BeginRefreshAt.Time.Before(st.NotBefore.Time.Add(10 * time.Minute)) {
		return []string{"beginRefreshAt: must be at least 10 minutes after status.notBefore"}
	}
	if st.BeginRefreshAt.Time.After(st.NotAfter.Time.Add(-10 * time.Minute)) {
		return []string{"beginRefreshAt: must be at least 10 minutes before status.notAfter"}
	}
	for {
		var next *pem.Block
		next, rest = pem.Decode(rest)
		if next == nil {
			break
		}
		if next.Type != "CERTIFICATE" {
			return []string{"certificateChain: issued certificate chain must consist entirely of CERTFICATE PEM blocks"}
		}
		if _, err := x509.ParseCertificate(next.Bytes); err != nil {
			return []string{"certificateChain: intermediate certificate does not parse as valid X.509"}
		}
	}
	return nil
}

// timeNear is validation.go's.
func timeNear(a, b time.Time, skew time.Duration) bool {
	return a.After(b.Add(-skew)) && a.Before(b.Add(skew))
}

// apiServerBundleErrors repeats what kube-apiserver checks on a signer-linked
// ClusterTrustBundle: ValidateClusterTrustBundle and validateTrustBundle in
// validation.go, and ValidateClusterTrustBundleName in
// pkg/apis/core/validation/names.go (signer name syntax is left out: SignerName
// is a constant). Labels are checked as ObjectMeta validation does.
func apiServerBundleErrors(b *certificatesv1.ClusterTrustBundle) []string {
	var errs []string
	prefix := strings.ReplaceAll(b.Spec.SignerName, "/", ":") + ":"
	if !strings.HasPrefix(b.Name, prefix) {
		errs = append(errs, fmt.Sprintf("metadata.name: must be named with prefix %s", prefix))
	} else {
		errs = append(errs, validation.IsDNS1123Subdomain(strings.TrimPrefix(b.Name, prefix))...)
	}
	for k, v := range b.Labels {
		errs = append(errs, validation.IsQualifiedName(k)...)
		errs = append(errs, validation.IsValidLabelValue(v)...)
	}
	in := b.Spec.TrustBundle
	if len(in) > apiMaxTrustBundleSize {
		return append(errs, "spec.trustBundle: too long")
	}
	dedupe := map[string][]int{}
	rest := []byte(in)
	for i := 0; ; i++ {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			errs = append(errs, fmt.Sprintf("entry %d has bad block type: %v", i, blk.Type))
			continue
		}
		if len(blk.Headers) != 0 {
			errs = append(errs, fmt.Sprintf("entry %d has PEM block headers", i))
			continue
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			errs = append(errs, fmt.Sprintf("entry %d does not parse as X.509", i))
			continue
		}
		if !cert.IsCA {
			errs = append(errs, fmt.Sprintf("entry %d does not have the CA bit set", i))
			continue
		}
		if !cert.BasicConstraintsValid {
			errs = append(errs, fmt.Sprintf("entry %d has invalid basic constraints", i))
			continue
		}
		dedupe[string(blk.Bytes)] = append(dedupe[string(blk.Bytes)], i)
	}
	if len(dedupe) == 0 {
		errs = append(errs, "at least one trust anchor must be provided")
	}
	for _, idx := range dedupe {
		if len(idx) > 1 {
			errs = append(errs, fmt.Sprintf("duplicate trust anchor (indices %v)", idx))
		}
	}
	return errs
}
