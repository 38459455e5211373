package identity

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"maps"
	"strings"
	"testing"
	"time"
)

func TestGenerateCA(t *testing.T) {
	ca, err := GenerateCA("cluster.local", now)
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Cert
	if got, want := c.Subject.CommonName, "envoymesh identity CA (cluster.local)"; got != want {
		t.Errorf("CN = %q, want %q", got, want)
	}
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("IsCA %v BasicConstraintsValid %v MaxPathLen %d MaxPathLenZero %v, want a CA that signs only leaves", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature; c.KeyUsage != want {
		t.Errorf("KeyUsage = %v, want %v", c.KeyUsage, want)
	}
	if len(c.SubjectKeyId) == 0 {
		t.Errorf("no SubjectKeyId")
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v is not a positive 128-bit number", c.SerialNumber)
	}
	if k, ok := ca.Key.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key is %T, want ECDSA P-256", ca.Key)
	}
	nb := now.Truncate(time.Second).Add(-Backdate)
	if !c.NotBefore.Equal(nb) || !c.NotAfter.Equal(nb.AddDate(10, 0, 0)) {
		t.Errorf("validity %v..%v, want %v for 10 years", c.NotBefore, c.NotAfter, nb)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if len(ca.Chain) != 0 {
		t.Errorf("a root's chain holds %d certificates, want none", len(ca.Chain))
	}
	if !bytes.Equal(ca.AnchorsPEM, pemCerts(c)) {
		t.Errorf("anchors are not the root")
	}
	if len(ca.ID()) != 16 || ca.BundleName() != BundleNamePrefix+ca.ID() {
		t.Errorf("ID %q BundleName %q", ca.ID(), ca.BundleName())
	}
	other, err := GenerateCA("cluster.local", now)
	if err != nil {
		t.Fatal(err)
	}
	if other.ID() == ca.ID() {
		t.Errorf("two CAs share ID %s", ca.ID())
	}

	if _, err := GenerateCA("Bad/Domain", now); err == nil || !strings.Contains(err.Error(), "Bad/Domain") {
		t.Errorf("GenerateCA with a bad trust domain: %v", err)
	}
}

func TestSecretDataRoundTrip(t *testing.T) {
	ca, err := GenerateCA("cluster.local", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	data, err := ca.SecretData()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(data["tls.key"]); b == nil || b.Type != "PRIVATE KEY" {
		t.Errorf("tls.key is not a PKCS#8 PRIVATE KEY block")
	}
	if !bytes.Equal(data["tls.crt"], data["ca.crt"]) || !bytes.Equal(data["tls.crt"], pemCerts(ca.Cert)) {
		t.Errorf("tls.crt and ca.crt should both be the root")
	}
	got, err := ParseCA(data)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cert.Equal(ca.Cert) || got.ID() != ca.ID() || len(got.Chain) != 0 || !bytes.Equal(got.AnchorsPEM, ca.AnchorsPEM) {
		t.Errorf("parsed CA differs: ID %s vs %s, chain %d, anchors equal %v", got.ID(), ca.ID(), len(got.Chain), bytes.Equal(got.AnchorsPEM, ca.AnchorsPEM))
	}
	again, err := got.SecretData()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(data, again, bytes.Equal) {
		t.Errorf("SecretData of the parsed CA differs from the original")
	}
}

type interFixture struct {
	root, inter *signed
	data        map[string][]byte
}

// intermediateCA is how cert-manager leaves a CA Certificate issued by a CA
// Issuer: tls.crt is the intermediate followed by the root, ca.crt the root; the
// root is RSA, the intermediate ECDSA with a SEC1 key.
func intermediateCA(t testing.TB) interFixture {
	t.Helper()
	root := makeCert(t, rsaKey(), nil, certOpts{cn: "root"})
	inter := makeCert(t, ecKey(t, elliptic.P256()), root, certOpts{cn: "intermediate"})
	return interFixture{root: root, inter: inter, data: map[string][]byte{
		"tls.crt": pemCerts(inter.cert, root.cert),
		"tls.key": pemKey(t, inter.key, "EC PRIVATE KEY"),
		"ca.crt":  pemCerts(root.cert),
	}}
}

func TestParseCACertManager(t *testing.T) {
	ecRoot := makeCert(t, ecKey(t, elliptic.P256()), nil, certOpts{})
	rsaRoot := makeCert(t, rsaKey(), nil, certOpts{})
	edRoot := makeCert(t, edKey(t), nil, certOpts{})
	for _, tc := range []struct {
		name string
		s    *signed
		key  string
	}{
		{"ECDSA root, SEC1 key", ecRoot, "EC PRIVATE KEY"},
		{"ECDSA root, PKCS#8 key", ecRoot, "PRIVATE KEY"},
		{"RSA root, PKCS#1 key", rsaRoot, "RSA PRIVATE KEY"},
		{"RSA root, PKCS#8 key", rsaRoot, "PRIVATE KEY"},
		{"Ed25519 root", edRoot, "PRIVATE KEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := ParseCA(map[string][]byte{
				"tls.crt": pemCerts(tc.s.cert),
				"tls.key": pemKey(t, tc.s.key, tc.key),
				"ca.crt":  pemCerts(tc.s.cert),
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(ca.Chain) != 0 || !bytes.Equal(ca.AnchorsPEM, pemCerts(tc.s.cert)) {
				t.Errorf("a root: chain %d certificates, anchors %q", len(ca.Chain), ca.AnchorsPEM)
			}
			if errs := apiServerBundleErrors(TrustBundle(ca)); len(errs) != 0 {
				t.Errorf("API server rejects the bundle: %v", errs)
			}
			leaf, err := ca.Issue(ecKey(t, elliptic.P256()).Public(), SPIFFEID("td", "ns", "sa"), time.Hour, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			verifyLeaf(t, ca, leaf, time.Now())
		})
	}

	t.Run("intermediate", func(t *testing.T) {
		f := intermediateCA(t)
		ca, err := ParseCA(f.data)
		if err != nil {
			t.Fatal(err)
		}
		if !ca.Cert.Equal(f.inter.cert) {
			t.Errorf("signing certificate is %q, want the intermediate", ca.Cert.Subject)
		}
		if len(ca.Chain) != 1 || !ca.Chain[0].Equal(f.inter.cert) {
			t.Errorf("chain has %d certificates, want only the intermediate (the root is dropped)", len(ca.Chain))
		}
		if !bytes.Equal(ca.AnchorsPEM, f.data["ca.crt"]) {
			t.Errorf("anchors are not ca.crt")
		}
		leaf, err := ca.Issue(ecKey(t, elliptic.P256()).Public(), SPIFFEID("td", "ns", "sa"), 24*time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		verifyLeaf(t, ca, leaf, time.Now())
		if got := decodeChain(t, leaf.ChainPEM); len(got) != 2 || !got[1].Equal(f.inter.cert) {
			t.Errorf("issued chain has %d certificates, want the leaf and the intermediate", len(got))
		}
		data, err := ca.SecretData()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseCA(data)
		if err != nil || back.ID() != ca.ID() || len(back.Chain) != 1 || !bytes.Equal(back.AnchorsPEM, ca.AnchorsPEM) {
			t.Errorf("intermediate does not round-trip through SecretData: %v", err)
		}
	})

	t.Run("ca.crt with duplicates and headers", func(t *testing.T) {
		f := intermediateCA(t)
		withHeader := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"Comment": "root"}, Bytes: f.root.cert.Raw})
		f.data["ca.crt"] = append(append(withHeader, '\n'), pemCerts(f.root.cert)...)
		ca, err := ParseCA(f.data)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ca.AnchorsPEM, pemCerts(f.root.cert)) {
			t.Errorf("anchors %q, want the root once without headers", ca.AnchorsPEM)
		}
		if errs := apiServerBundleErrors(TrustBundle(ca)); len(errs) != 0 {
			t.Errorf("API server rejects the bundle: %v", errs)
		}
	})
}

func TestParseCAErrors(t *testing.T) {
	root := makeCert(t, ecKey(t, elliptic.P256()), nil, certOpts{})
	good := func() map[string][]byte {
		return map[string][]byte{"tls.crt": pemCerts(root.cert), "tls.key": pemKey(t, root.key, "PRIVATE KEY"), "ca.crt": pemCerts(root.cert)}
	}
	with := func(key string, v []byte) map[string][]byte {
		d := good()
		if v == nil {
			delete(d, key)
		} else {
			d[key] = v
		}
		return d
	}
	leafKey := ecKey(t, elliptic.P256())
	notCA := makeCert(t, leafKey, nil, certOpts{notCA: true, keyUsage: x509.KeyUsageDigitalSignature})
	noCertSign := makeCert(t, leafKey, nil, certOpts{keyUsage: x509.KeyUsageDigitalSignature})
	expired := makeCert(t, leafKey, nil, certOpts{notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-time.Hour)})
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519DER, err := x509.MarshalPKCS8PrivateKey(x25519)
	if err != nil {
		t.Fatal(err)
	}
	f := intermediateCA(t)
	inter := func(key string, v []byte) map[string][]byte {
		d := maps.Clone(f.data)
		if v == nil {
			delete(d, key)
		} else {
			d[key] = v
		}
		return d
	}
	otherRoot := makeCert(t, ecKey(t, elliptic.P256()), nil, certOpts{cn: "other root"})

	for _, tc := range []struct {
		name string
		data map[string][]byte
		key  string
		want string
	}{
		{"tls.crt missing", with("tls.crt", nil), "tls.crt", "missing"},
		{"tls.crt not PEM", with("tls.crt", []byte("hello")), "tls.crt", "not PEM"},
		{"tls.crt holds a key", with("tls.crt", pemKey(t, root.key, "PRIVATE KEY")), "tls.crt", `is "PRIVATE KEY", want CERTIFICATE`},
		{"tls.crt bad DER", with("tls.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})), "tls.crt", "certificate 0"},
		{"not a CA", map[string][]byte{"tls.crt": pemCerts(notCA.cert), "tls.key": pemKey(t, leafKey, "PRIVATE KEY")}, "tls.crt", "basic constraints CA is false"},
		{"no cert sign", map[string][]byte{"tls.crt": pemCerts(noCertSign.cert), "tls.key": pemKey(t, leafKey, "PRIVATE KEY")}, "tls.crt", "lacks cert sign"},
		{"expired", map[string][]byte{"tls.crt": pemCerts(expired.cert), "tls.key": pemKey(t, leafKey, "PRIVATE KEY")}, "tls.crt", "expired"},
		{"tls.key missing", with("tls.key", nil), "tls.key", "missing"},
		{"tls.key not PEM", with("tls.key", []byte("secret")), "tls.key", "not PEM"},
		{"tls.key wrong block", with("tls.key", pemCerts(root.cert)), "tls.key", `"CERTIFICATE"`},
		{"tls.key corrupt", with("tls.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1, 2, 3}})), "tls.key", "x509"},
		{"tls.key another key", with("tls.key", pemKey(t, leafKey, "EC PRIVATE KEY")), "tls.key", "does not match"},
		{"tls.key X25519", with("tls.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: x25519DER})), "tls.key", "unsupported key type"},
		{"ca.crt missing for an intermediate", inter("ca.crt", nil), "ca.crt", "missing"},
		{"ca.crt not PEM", inter("ca.crt", []byte("root")), "ca.crt", "not PEM"},
		{"ca.crt another root", inter("ca.crt", pemCerts(otherRoot.cert)), "ca.crt", "does not verify"},
		{"ca.crt not a CA", inter("ca.crt", pemCerts(notCA.cert)), "ca.crt", "not a CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := ParseCA(tc.data)
			if err == nil {
				t.Fatalf("ParseCA = %v, want an error", ca)
			}
			if !strings.HasPrefix(err.Error(), tc.key+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to start with %q and say %q", err, tc.key+": ", tc.want)
			}
		})
	}
}
