package identity

import (
	"fmt"
)

// SPIFFEID is spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>, the
// identity Istio-style meshes give a workload, so authorization policies can name
// a service account across clusters that share the trust domain. Namespace and
// service account names are DNS labels and subdomains, valid path segments as they
// are.
func SPIFFEID(trustDomain, namespace, serviceAccount string) string {
	return "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount
}

// maxTrustDomainLen is the SPIFFE ID specification's limit on a trust domain.
const maxTrustDomainLen = 255

// ValidateTrustDomain applies the SPIFFE ID specification's trust domain rules
// (lowercase letters, digits, '.', '-' and '_'; 1 to 255 bytes), so a bad value is
// reported where it is configured rather than as certificates peers reject.
func ValidateTrustDomain(td string) error {
	if td == "" {
		return fmt.Errorf("trust domain %q is empty", td)
	}
	if len(td) > maxTrustDomainLen {
		return fmt.Errorf("trust domain %q is %d bytes, more than %d", td, len(td), maxTrustDomainLen)
	}
	for i := 0; i < len(td); i++ {
		switch c := td[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		default:
			return fmt.Errorf("trust domain %q: character %q at %d is not allowed (lowercase letters, digits, '.', '-', '_')", td, c, i)
		}
	}
	return nil
}
