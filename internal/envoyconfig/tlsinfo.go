package envoyconfig

import (
	"errors"
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetworkv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// The readers below give a Go crypto/tls peer what it needs to meet an Envoy
// built here. They read the built protos, unpacking every typed config and
// following each SDS reference to its secret, never the builder's inputs, so a
// test that dials with their answer proves the config and the certificates agree.

// InboundTLSInfo is what a client meets at a sidecar's inbound listener.
type InboundTLSInfo struct {
	RequireClientCert bool
	// Authorization is what the RBAC filter does: Enforce (rules), Audit (shadow
	// rules only) or Off (no filter).
	Authorization v1alpha1.AuthorizationMode
	// Principals are the SPIFFE IDs the policy admits (Enforce) or would admit
	// (Audit). In Enforce, none means nobody is admitted.
	Principals []string
	// HandshakeSANs are the URI SANs of which a client certificate must carry one
	// for the handshake to succeed (TCP in Enforce); none: any certificate that
	// chains to TrustFile.
	HandshakeSANs []string
	// ServerALPN are the protocols the listener selects from.
	ServerALPN []string
	// MatchALPN is what a client must offer, one of, to reach the mTLS chain
	// (Permissive); nil when every connection reaches it (Strict).
	MatchALPN []string
	// PlaintextFallback reports a plaintext chain for every other connection.
	PlaintextFallback bool
	// TrustFile holds the anchors client certificates must chain to; CertFile
	// and KeyFile are what the sidecar presents (the same file, key first).
	TrustFile, CertFile, KeyFile string
}

// UpstreamTLSInfo is what a cluster's upstream meets: the client side of mTLS.
type UpstreamTLSInfo struct {
	SNI string
	// RequiredSAN is the URI SAN the server's certificate must carry.
	RequiredSAN string
	// ALPN is what the cluster offers.
	ALPN []string
	// TrustFile holds the anchors the server's certificate must chain to;
	// CertFile and KeyFile are what the cluster presents.
	TrustFile, CertFile, KeyFile string
}

// InboundTLS reads the mTLS side of res's inbound listener; an error says what is
// missing, e.g. a plaintext listener or a secret nothing delivers.
func InboundTLS(res *Resources) (*InboundTLSInfo, error) {
	l := findListener(res, inboundListenerName)
	if l == nil {
		return nil, fmt.Errorf("no listener %q", inboundListenerName)
	}
	i := slices.IndexFunc(l.FilterChains, func(fc *listenerv3.FilterChain) bool { return fc.TransportSocket != nil })
	if i < 0 {
		return nil, fmt.Errorf("listener %q has no TLS filter chain", l.Name)
	}
	fc := l.FilterChains[i]
	ctx := &tlsv3.DownstreamTlsContext{}
	if err := unpackSocket(fc.TransportSocket, ctx); err != nil {
		return nil, err
	}
	info := &InboundTLSInfo{
		RequireClientCert: ctx.GetRequireClientCertificate().GetValue(),
		ServerALPN:        ctx.GetCommonTlsContext().GetAlpnProtocols(),
		MatchALPN:         fc.GetFilterChainMatch().GetApplicationProtocols(),
		PlaintextFallback: l.DefaultFilterChain != nil,
	}
	var err error
	if info.HandshakeSANs, err = readCommonTLS(res, ctx.GetCommonTlsContext(), &info.TrustFile, &info.CertFile, &info.KeyFile); err != nil {
		return nil, err
	}
	rules, shadow, err := rbacOf(fc.Filters)
	if err != nil {
		return nil, err
	}
	switch {
	case rules != nil:
		info.Authorization = v1alpha1.AuthorizationEnforce
		info.Principals, err = principalsOf(rules)
	case shadow != nil:
		info.Authorization = v1alpha1.AuthorizationAudit
		info.Principals, err = principalsOf(shadow)
	default:
		info.Authorization = v1alpha1.AuthorizationOff
	}
	return info, err
}

// UpstreamTLS reads the mTLS side of the cluster named cluster in res.
func UpstreamTLS(res *Resources, cluster string) (*UpstreamTLSInfo, error) {
	i := slices.IndexFunc(res.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == cluster })
	if i < 0 {
		return nil, fmt.Errorf("no cluster %q", cluster)
	}
	socket := res.Clusters[i].GetTransportSocket()
	if socket == nil {
		return nil, fmt.Errorf("cluster %q is plaintext", cluster)
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := unpackSocket(socket, ctx); err != nil {
		return nil, err
	}
	info := &UpstreamTLSInfo{SNI: ctx.GetSni(), ALPN: ctx.GetCommonTlsContext().GetAlpnProtocols()}
	sans, err := readCommonTLS(res, ctx.GetCommonTlsContext(), &info.TrustFile, &info.CertFile, &info.KeyFile)
	if err != nil {
		return nil, err
	}
	if len(sans) != 1 {
		return nil, fmt.Errorf("cluster %q requires %d URI SANs, want exactly one", cluster, len(sans))
	}
	info.RequiredSAN = sans[0]
	return info, nil
}

func findListener(res *Resources, name string) *listenerv3.Listener {
	for _, l := range res.Listeners {
		if l.GetName() == name {
			return l
		}
	}
	return nil
}

// readCommonTLS follows the identity and trust SDS references of c to the files
// their secrets name, and returns the exact URI SANs its validation requires.
func readCommonTLS(res *Resources, c *tlsv3.CommonTlsContext, trust, cert, key *string) ([]string, error) {
	certs := c.GetTlsCertificateSdsSecretConfigs()
	if len(certs) != 1 {
		return nil, fmt.Errorf("TLS context names %d certificate secrets, want one", len(certs))
	}
	id, err := secretFor(res, certs[0])
	if err != nil {
		return nil, err
	}
	tc := id.GetTlsCertificate()
	*cert, *key = tc.GetCertificateChain().GetFilename(), tc.GetPrivateKey().GetFilename()
	combined := c.GetCombinedValidationContext()
	if combined == nil {
		return nil, errors.New("TLS context has no combined validation context")
	}
	tr, err := secretFor(res, combined.GetValidationContextSdsSecretConfig())
	if err != nil {
		return nil, err
	}
	*trust = tr.GetValidationContext().GetTrustedCa().GetFilename()
	if *cert == "" || *key == "" || *trust == "" {
		return nil, fmt.Errorf("secrets %q and %q do not name a certificate, key and trust file", id.GetName(), tr.GetName())
	}
	var sans []string
	for _, m := range combined.GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
		exact := m.GetMatcher().GetExact()
		if m.GetSanType() != tlsv3.SubjectAltNameMatcher_URI || exact == "" {
			return nil, fmt.Errorf("SAN matcher %v is not an exact URI", m)
		}
		sans = append(sans, exact)
	}
	return sans, nil
}

// secretFor is the secret ref names, checked to come from the SDS file Render
// writes that secret to, so a reference that Envoy could not resolve is an error.
func secretFor(res *Resources, ref *tlsv3.SdsSecretConfig) (*tlsv3.Secret, error) {
	want := MountPath + "/" + sdsFiles[ref.GetName()]
	if got := ref.GetSdsConfig().GetPathConfigSource().GetPath(); got != want || sdsFiles[ref.GetName()] == "" {
		return nil, fmt.Errorf("secret %q is read from %q, but Render writes it to %q", ref.GetName(), got, want)
	}
	for _, s := range res.Secrets {
		if s.GetName() == ref.GetName() {
			return s, nil
		}
	}
	return nil, fmt.Errorf("no secret %q in the resources", ref.GetName())
}

// rbacOf finds the RBAC filter among an inbound chain's filters, the network one
// or the HTTP one inside the connection manager, and returns its rule sets.
func rbacOf(filters []*listenerv3.Filter) (rules, shadow *rbacconfigv3.RBAC, err error) {
	for _, f := range filters {
		switch f.GetName() {
		case networkRBACFilterName:
			cfg := &rbacnetworkv3.RBAC{}
			if err := f.GetTypedConfig().UnmarshalTo(cfg); err != nil {
				return nil, nil, err
			}
			return cfg.GetRules(), cfg.GetShadowRules(), nil
		case hcmFilterName:
			hcm := &hcmv3.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
				return nil, nil, err
			}
			for _, hf := range hcm.GetHttpFilters() {
				if hf.GetName() != httpRBACFilterName {
					continue
				}
				cfg := &rbachttpv3.RBAC{}
				if err := hf.GetTypedConfig().UnmarshalTo(cfg); err != nil {
					return nil, nil, err
				}
				return cfg.GetRules(), cfg.GetShadowRules(), nil
			}
		}
	}
	return nil, nil, nil
}

// principalsOf are the exact principal names an ALLOW rule set admits, sorted.
func principalsOf(r *rbacconfigv3.RBAC) ([]string, error) {
	if r.GetAction() != rbacconfigv3.RBAC_ALLOW {
		return nil, fmt.Errorf("RBAC action %v, want ALLOW", r.GetAction())
	}
	var out []string
	for name, p := range r.GetPolicies() {
		for _, pr := range p.GetPrincipals() {
			exact := pr.GetAuthenticated().GetPrincipalName().GetExact()
			if exact == "" {
				return nil, fmt.Errorf("policy %q: principal %v is not an exact authenticated name", name, pr)
			}
			out = append(out, exact)
		}
	}
	slices.Sort(out)
	return out, nil
}
