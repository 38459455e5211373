package fleetsim

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ClientTLS is a sidecar's side of the channel as its bootstrap sets it up:
// it presents cert and accepts only a server certificate that chains to roots
// and whose one URI SAN is serverID (Envoy's match_typed_subject_alt_names
// with an exact URI), not a host name.
func ClientTLS(cert tls.Certificate, roots *x509.CertPool, serverID string) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		// The name check below replaces the host name check, which a SPIFFE
		// certificate (no DNS SAN) would fail; the chain is verified there too.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			leaf := cs.PeerCertificates[0]
			intermediates := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				intermediates.AddCert(c)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != serverID {
				return fmt.Errorf("server certificate names %v, want %s", leaf.URIs, serverID)
			}
			return nil
		},
	}
}
