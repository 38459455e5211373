package envoyadmin

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// Certificate is the sidecar's own identity certificate as GET /certs reports it.
type Certificate struct {
	// Expiry is the earliest expiration_time among the certificate chains of Envoy's TLS contexts
	// (the certificates Envoy presents); CA certificates, which it only trusts, are not counted.
	// Zero when Envoy holds no certificate: mTLS is off, or the secret is not loaded yet.
	Expiry time.Time
	// URISANs are the URI SANs (the SPIFFE ID) of the certificates that expire at Expiry, sorted
	// and without duplicates.
	URISANs []string
}

// certsUnmarshal discards unknown fields so that fields a newer Envoy adds do not fail the probe.
var certsUnmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}

// ParseCerts parses the body of GET /certs, the proto-JSON of envoy.admin.v3.Certificates: one
// entry per TLS context (the inbound listener's and each egress cluster's), each with its CA
// certificates and its certificate chain. Every context presents the same Pod Certificate, but
// while a rotation is being loaded two may differ; the earliest expiry is the one that matters.
func ParseCerts(r io.Reader) (Certificate, error) {
	b, err := readBody(r)
	if err != nil {
		return Certificate{}, fmt.Errorf("envoyadmin: parse certs: %w", err)
	}
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0:
		return Certificate{}, fmt.Errorf("envoyadmin: parse certs: %w", errEmptyBody)
	case b[0] != '{':
		return Certificate{}, fmt.Errorf("envoyadmin: parse certs: not a JSON object (starts with %q)", b[0])
	}
	var in adminv3.Certificates
	if err := certsUnmarshal.Unmarshal(b, &in); err != nil {
		return Certificate{}, fmt.Errorf("envoyadmin: parse certs: %w", err)
	}
	var out Certificate
	for _, c := range in.GetCertificates() {
		for _, d := range c.GetCertChain() {
			// Envoy writes expiration_time for every certificate it parsed; an entry without one
			// says nothing about expiry. protojson has already checked the timestamp's range.
			ts := d.GetExpirationTime()
			if ts == nil {
				continue
			}
			expiry := ts.AsTime()
			switch {
			case out.Expiry.IsZero() || expiry.Before(out.Expiry):
				out = Certificate{Expiry: expiry, URISANs: uriSANs(nil, d)}
			case expiry.Equal(out.Expiry):
				out.URISANs = uriSANs(out.URISANs, d)
			}
		}
	}
	slices.Sort(out.URISANs)
	out.URISANs = slices.Compact(out.URISANs)
	return out, nil
}

// uriSANs appends d's URI SANs to sans.
func uriSANs(sans []string, d *adminv3.CertificateDetails) []string {
	for _, san := range d.GetSubjectAltNames() {
		if uri := san.GetUri(); uri != "" {
			sans = append(sans, uri)
		}
	}
	return sans
}
