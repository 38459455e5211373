package envoyconfig

import (
	"fmt"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// Security is a sidecar's (or gateway's) mTLS and authorization, resolved from its
// mesh. A nil *Security keeps the config plaintext and without identity, exactly
// as before identities existed: that is how a Disabled mesh is expressed.
type Security struct {
	MTLS          v1alpha1.MTLSMode          // MTLSStrict or MTLSPermissive
	Authorization v1alpha1.AuthorizationMode // AuthorizationEnforce, AuthorizationAudit or AuthorizationOff
	// Principals are the SPIFFE IDs allowed to call this service. The caller sorts
	// and deduplicates them; the builder does it again, so the config is the same
	// whatever their order.
	Principals []string
}

// Peer is the identity of a mesh upstream: connections to it are mutual TLS.
type Peer struct {
	SPIFFEID string // required exactly as the URI SAN of the upstream's certificate
	SNI      string // "<name>.<namespace>.svc.<clusterDomain>"
}

// Names of the SDS secrets and the ConfigMap files that deliver them. Envoy reads
// one secret per SDS file, so each has its own.
const (
	IdentitySecretName = "identity"
	TrustSecretName    = "trust"
	SDSIdentityFile    = "sds-identity.yaml"
	SDSTrustFile       = "sds-trust.yaml"
)

// MeshALPN is the ALPN value every mesh client offers beside the application's
// (h2 or http/1.1). A Permissive listener sends connections that offer it to its
// mTLS chain and everything else (plaintext, or TLS the app terminates itself)
// to its plaintext one. Servers never select it, so the negotiated protocol
// stays the application's and the HTTP codec is chosen by it.
const MeshALPN = "envoymesh-mtls"

const (
	tlsTransportSocketName = "envoy.transport_sockets.tls"
	spiffeScheme           = "spiffe://"
	alpnH2                 = "h2"
	alpnHTTP11             = "http/1.1"
)

// sdsFiles maps each secret to the file Render writes it to.
var sdsFiles = map[string]string{IdentitySecretName: SDSIdentityFile, TrustSecretName: SDSTrustFile}

// checkSecurity rejects modes the builder does not know, including Disabled,
// which is a nil Security, and principals that are not SPIFFE IDs.
func checkSecurity(sec *Security) error {
	if sec == nil {
		return nil
	}
	switch sec.MTLS {
	case v1alpha1.MTLSStrict, v1alpha1.MTLSPermissive:
	default:
		return fmt.Errorf("security: mTLS mode %q: want Strict or Permissive (Disabled is a nil Security)", sec.MTLS)
	}
	switch sec.Authorization {
	case v1alpha1.AuthorizationEnforce, v1alpha1.AuthorizationAudit, v1alpha1.AuthorizationOff:
	default:
		return fmt.Errorf("security: authorization mode %q: want Enforce, Audit or Off", sec.Authorization)
	}
	for _, p := range sec.Principals {
		if err := checkSPIFFEID(p); err != nil {
			return fmt.Errorf("security: principal: %w", err)
		}
	}
	return nil
}

func checkSPIFFEID(id string) error {
	if !strings.HasPrefix(id, spiffeScheme) || len(id) == len(spiffeScheme) {
		return fmt.Errorf("%q is not a SPIFFE ID", id)
	}
	return nil
}

// principals are sec's, sorted and deduplicated, in a copy.
func principals(sec *Security) []string {
	return slices.Compact(slices.Sorted(slices.Values(sec.Principals)))
}

// identitySecrets are the two secrets every TLS context names: the Pod Certificate
// and the mesh's trust anchors, both files the kubelet keeps fresh. Watching
// IdentityDir catches the kubelet's atomic swap of its ..data symlink, so Envoy
// reloads them without a restart; the key and chain come from one file and are
// read together, so they cannot be caught half-rotated.
func identitySecrets() ([]*tlsv3.Secret, error) {
	bundle := IdentityDir + "/" + CredentialBundleFile
	secrets := []*tlsv3.Secret{
		{Name: IdentitySecretName, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: fileSource(bundle),
			PrivateKey:       fileSource(bundle),
			WatchedDirectory: &corev3.WatchedDirectory{Path: IdentityDir},
		}}},
		{Name: TrustSecretName, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa:        fileSource(IdentityDir + "/" + TrustBundleFile),
			WatchedDirectory: &corev3.WatchedDirectory{Path: IdentityDir},
		}}},
	}
	for _, s := range secrets {
		if err := s.ValidateAll(); err != nil {
			return nil, fmt.Errorf("secret %q: %w", s.Name, err)
		}
	}
	return secrets, nil
}

// secretsFor are the secrets the TLS contexts of a config with sec name: none
// without an identity.
func secretsFor(sec *Security) ([]*tlsv3.Secret, error) {
	if sec == nil {
		return nil, nil
	}
	return identitySecrets()
}

func exactMatcher(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func fileSource(path string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: path}}
}

// sdsSecret names a secret in the SDS file Render writes it to, watched like
// lds.yaml, so a TLS context picks up a changed secret without a restart.
func sdsSecret(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: watchedFile(sdsFiles[name])}
}

// commonTLS presents the identity and trusts the mesh's anchors, with the URI
// SANs a peer must carry one of (none: any certificate that chains to them). It
// uses the default certificate validator: the SPIFFE validator extension does
// not reload its CA when the trust bundle rotates.
func commonTLS(sans, alpn []string) *tlsv3.CommonTlsContext {
	var matchers []*tlsv3.SubjectAltNameMatcher
	for _, san := range sans {
		matchers = append(matchers, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_URI,
			Matcher: exactMatcher(san),
		})
	}
	return &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(IdentitySecretName)},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         &tlsv3.CertificateValidationContext{MatchTypedSubjectAltNames: matchers},
				ValidationContextSdsSecretConfig: sdsSecret(TrustSecretName),
			},
		},
		AlpnProtocols: alpn,
	}
}

// serverALPN is what an inbound mTLS chain selects from: the HTTP protocols, so
// the codec follows the client's h2 or http/1.1; nothing for TCP, whose
// tcp_proxy does not care. Never MeshALPN: a negotiated "envoymesh-mtls" would
// make the HTTP connection manager take an h2 client for HTTP/1.
func serverALPN(p v1alpha1.Protocol) []string {
	if p == v1alpha1.ProtocolTCP {
		return nil
	}
	return []string{alpnH2, alpnHTTP11}
}

// clientALPN is what a mesh client offers: the protocol it will speak, then
// MeshALPN, which marks the connection as mesh mTLS for Permissive listeners.
func clientALPN(p v1alpha1.Protocol) []string {
	switch {
	case p == v1alpha1.ProtocolTCP:
		return []string{MeshALPN}
	case isHTTP2(p):
		return []string{alpnH2, MeshALPN}
	default:
		return []string{alpnHTTP11, MeshALPN}
	}
}

// downstreamTLS requires a client certificate that chains to the mesh's anchors
// and, when sans is not empty, names one of them.
func downstreamTLS(p v1alpha1.Protocol, sans []string) (*corev3.TransportSocket, error) {
	return transportSocket(tlsTransportSocketName, &tlsv3.DownstreamTlsContext{
		RequireClientCertificate: wrapperspb.Bool(true),
		CommonTlsContext:         commonTLS(sans, serverALPN(p)),
	})
}

// upstreamTLS presents the identity to a mesh upstream and accepts only a
// certificate that names exactly its SPIFFE ID. Active health checks use the
// cluster's transport socket, so they go through it too, with the same ALPN.
func upstreamTLS(peer Peer, p v1alpha1.Protocol) (*corev3.TransportSocket, error) {
	if err := checkSPIFFEID(peer.SPIFFEID); err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	if peer.SNI == "" {
		return nil, fmt.Errorf("peer %s: SNI must be set", peer.SPIFFEID)
	}
	return transportSocket(tlsTransportSocketName, &tlsv3.UpstreamTlsContext{
		Sni:              peer.SNI,
		CommonTlsContext: commonTLS([]string{peer.SPIFFEID}, clientALPN(p)),
	})
}

// unpackSocket reads the TLS context a TLS transport socket packs.
func unpackSocket(s *corev3.TransportSocket, ctx proto.Message) error {
	if s.GetName() != tlsTransportSocketName {
		return fmt.Errorf("transport socket %q, want %q", s.GetName(), tlsTransportSocketName)
	}
	return s.GetTypedConfig().UnmarshalTo(ctx)
}
