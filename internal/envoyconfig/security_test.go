package envoyconfig

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	rbacnetworkv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

const (
	spiffeA = "spiffe://cluster.local/ns/shop/sa/frontend"
	spiffeB = "spiffe://cluster.local/ns/shop/sa/checkout"
	spiffeC = "spiffe://cluster.local/ns/infra/sa/batch"
)

var allProtocols = []v1alpha1.Protocol{v1alpha1.ProtocolHTTP, v1alpha1.ProtocolHTTP2, v1alpha1.ProtocolGRPC, v1alpha1.ProtocolTCP}

// secureService is an upstream-less service with the given modes and principals.
func secureService(p v1alpha1.Protocol, mtls v1alpha1.MTLSMode, authz v1alpha1.AuthorizationMode, principals ...string) Service {
	return Service{Name: "payments", Namespace: "shop", Port: 9000, ServicePort: 15006, Protocol: p,
		Security: &Security{MTLS: mtls, Authorization: authz, Principals: principals}}
}

func inboundOf(t *testing.T, out *Output) *listenerv3.Listener {
	t.Helper()
	_, ls := parseListeners(t, out.Listeners)
	return listenerNamed(t, ls, inboundListenerName)
}

// mtlsChain is the inbound listener's one TLS filter chain.
func mtlsChain(t *testing.T, l *listenerv3.Listener) *listenerv3.FilterChain {
	t.Helper()
	var found *listenerv3.FilterChain
	for _, fc := range append(slices.Clone(l.FilterChains), l.DefaultFilterChain) {
		if fc.GetTransportSocket() == nil {
			continue
		}
		if found != nil {
			t.Fatalf("listener %q has two TLS filter chains", l.Name)
		}
		found = fc
	}
	if found == nil {
		t.Fatalf("listener %q has no TLS filter chain", l.Name)
	}
	return found
}

func downstreamOf(t *testing.T, fc *listenerv3.FilterChain) *tlsv3.DownstreamTlsContext {
	t.Helper()
	ctx := &tlsv3.DownstreamTlsContext{}
	if err := unpackSocket(fc.TransportSocket, ctx); err != nil {
		t.Fatal(err)
	}
	return ctx
}

func upstreamOf(t *testing.T, c *clusterv3.Cluster) *tlsv3.UpstreamTlsContext {
	t.Helper()
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := unpackSocket(c.TransportSocket, ctx); err != nil {
		t.Fatalf("cluster %q: %v", c.Name, err)
	}
	return ctx
}

// sansOf are the exact URI SANs a TLS context's default validation requires.
func sansOf(t *testing.T, c *tlsv3.CommonTlsContext) []string {
	t.Helper()
	var out []string
	for _, m := range c.GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
		if m.SanType != tlsv3.SubjectAltNameMatcher_URI || m.GetMatcher().GetExact() == "" {
			t.Fatalf("SAN matcher %v is not an exact URI", m)
		}
		out = append(out, m.GetMatcher().GetExact())
	}
	return out
}

// rbacRules finds the RBAC filter of an inbound chain: the HTTP one inside the
// connection manager, or the network one, which must come right before tcp_proxy.
func rbacRules(t *testing.T, fc *listenerv3.FilterChain) (found bool, rules, shadow *rbacconfigv3.RBAC) {
	t.Helper()
	last := fc.Filters[len(fc.Filters)-1]
	switch last.Name {
	case tcpProxyFilterName:
		if len(fc.Filters) == 1 {
			return false, nil, nil
		}
		if len(fc.Filters) != 2 || fc.Filters[0].Name != networkRBACFilterName {
			t.Fatalf("TCP chain filters %v, want the network RBAC filter and tcp_proxy", fc.Filters)
		}
		cfg := &rbacnetworkv3.RBAC{}
		if err := fc.Filters[0].GetTypedConfig().UnmarshalTo(cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.StatPrefix != inboundListenerName {
			t.Errorf("network RBAC stat_prefix %q, want %q", cfg.StatPrefix, inboundListenerName)
		}
		return true, cfg.Rules, cfg.ShadowRules
	case hcmFilterName:
		hcm := hcmOf(t, &listenerv3.Listener{Name: "chain " + fc.Name, FilterChains: []*listenerv3.FilterChain{fc}})
		names := filterNames(hcm)
		if slices.Equal(names, []string{routerFilterName}) {
			return false, nil, nil
		}
		if !slices.Equal(names, []string{httpRBACFilterName, routerFilterName}) {
			t.Fatalf("http_filters %v, want RBAC then the router", names)
		}
		cfg := &rbachttpv3.RBAC{}
		if err := hcm.HttpFilters[0].GetTypedConfig().UnmarshalTo(cfg); err != nil {
			t.Fatal(err)
		}
		return true, cfg.Rules, cfg.ShadowRules
	}
	t.Fatalf("chain ends with %q", last.Name)
	return false, nil, nil
}

// wantCallerRules: ALLOW, one policy for any request whose principals are
// exactly the authenticated names given, in order; none means no policy at all.
func wantCallerRules(t *testing.T, what string, got *rbacconfigv3.RBAC, names ...string) {
	t.Helper()
	want := &rbacconfigv3.RBAC{Action: rbacconfigv3.RBAC_ALLOW}
	if len(names) > 0 {
		p := &rbacconfigv3.Policy{Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_Any{Any: true}}}}
		for _, n := range names {
			p.Principals = append(p.Principals, &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Authenticated_{
				Authenticated: &rbacconfigv3.Principal_Authenticated{PrincipalName: exactMatcher(n)},
			}})
		}
		want.Policies = map[string]*rbacconfigv3.Policy{callersPolicyName: p}
	}
	if got == nil {
		t.Fatalf("%s: no rules, want %v", what, want)
	}
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Errorf("%s (-want +got):\n%s", what, d)
	}
}

// TestNilSecurityHasNoIdentity: without Security nothing of the identity is built
// and no SDS file is rendered; the golden tests hold the rest byte for byte.
func TestNilSecurityHasNoIdentity(t *testing.T) {
	caller, found, mesh := featureMesh()
	res, err := BuildSidecar(ServiceFor(caller, found, mesh), Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := mustRender(t, res)
	if len(res.Secrets) != 0 || out.SDSIdentity != nil || out.SDSTrust != nil {
		t.Errorf("secrets %v, SDS files %q %q; want none", res.Secrets, out.SDSIdentity, out.SDSTrust)
	}
	if bytes.Contains(out.Listeners, []byte("transport_socket")) || bytes.Contains(out.Clusters, []byte("transport_socket")) {
		t.Error("a plaintext config has a transport socket")
	}
}

// TestBootstrapIgnoresSecurity: identity reaches Envoy through lds, cds and the
// SDS files, so turning it on or off never rolls the pods by itself.
func TestBootstrapIgnoresSecurity(t *testing.T) {
	plain := build(t, Service{Name: "payments", Namespace: "shop", Port: 9000, ServicePort: 15006})
	for _, p := range allProtocols {
		out := build(t, secureService(p, v1alpha1.MTLSPermissive, v1alpha1.AuthorizationEnforce, spiffeA))
		if !bytes.Equal(out.Bootstrap, plain.Bootstrap) || out.BootstrapHash != plain.BootstrapHash {
			t.Errorf("%s: the bootstrap changed with Security", p)
		}
	}
}

func TestInboundPrincipalsExact(t *testing.T) {
	for _, p := range allProtocols {
		t.Run(string(p), func(t *testing.T) {
			// Unsorted and repeated: the builder sorts and deduplicates again.
			svc := secureService(p, v1alpha1.MTLSStrict, v1alpha1.AuthorizationEnforce, spiffeB, spiffeA, spiffeB)
			out := build(t, svc)
			if err := validateRendered(out); err != nil {
				t.Fatal(err)
			}
			fc := mtlsChain(t, inboundOf(t, out))
			found, rules, shadow := rbacRules(t, fc)
			if !found || shadow != nil {
				t.Fatalf("RBAC filter %v, shadow rules %v; want enforced rules only", found, shadow)
			}
			wantCallerRules(t, "rules", rules, spiffeB, spiffeA)
			ctx := downstreamOf(t, fc)
			if !ctx.GetRequireClientCertificate().GetValue() {
				t.Error("require_client_certificate is not set")
			}
			sans := sansOf(t, ctx.CommonTlsContext)
			if p == v1alpha1.ProtocolTCP {
				// The handshake admits only the principals, as the network
				// filter decides after tcp_proxy has connected.
				if !slices.Equal(sans, []string{spiffeB, spiffeA}) {
					t.Errorf("TCP handshake SANs %v, want the principals", sans)
				}
			} else if len(sans) != 0 {
				t.Errorf("HTTP handshake SANs %v, want none: RBAC answers 403", sans)
			}
		})
	}
	t.Run("order of principals does not matter", func(t *testing.T) {
		a, err := BuildSidecar(secureService(v1alpha1.ProtocolHTTP, v1alpha1.MTLSStrict, v1alpha1.AuthorizationEnforce, spiffeA, spiffeB, spiffeC), Options{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := BuildSidecar(secureService(v1alpha1.ProtocolHTTP, v1alpha1.MTLSStrict, v1alpha1.AuthorizationEnforce, spiffeC, spiffeA, spiffeB, spiffeA), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if a.Version != b.Version {
			t.Error("the same principals in another order gave another version")
		}
	})
}

// TestZeroPrincipalsDenyAll: an ALLOW rule set without a policy denies every
// request, and must reach Envoy as present-but-empty ("rules: {}"), not absent,
// which would admit everyone. A TCP service also admits no certificate at all.
func TestZeroPrincipalsDenyAll(t *testing.T) {
	for _, p := range allProtocols {
		t.Run(string(p), func(t *testing.T) {
			out := build(t, secureService(p, v1alpha1.MTLSStrict, v1alpha1.AuthorizationEnforce))
			fc := mtlsChain(t, inboundOf(t, out))
			found, rules, shadow := rbacRules(t, fc)
			if !found || rules == nil || shadow != nil {
				t.Fatalf("RBAC filter %v, rules %v, shadow %v; want present, empty rules", found, rules, shadow)
			}
			wantCallerRules(t, "rules", rules)
			sans := sansOf(t, downstreamOf(t, fc).CommonTlsContext)
			if p == v1alpha1.ProtocolTCP && !slices.Equal(sans, []string{noCallerSAN}) {
				t.Errorf("TCP handshake SANs %v, want only the unmatchable %q", sans, noCallerSAN)
			}
		})
	}
}

func TestAuditUsesShadowRulesOnly(t *testing.T) {
	for _, p := range allProtocols {
		t.Run(string(p), func(t *testing.T) {
			out := build(t, secureService(p, v1alpha1.MTLSStrict, v1alpha1.AuthorizationAudit, spiffeA))
			fc := mtlsChain(t, inboundOf(t, out))
			found, rules, shadow := rbacRules(t, fc)
			if !found || rules != nil {
				t.Fatalf("RBAC filter %v, rules %v; want shadow rules only", found, rules)
			}
			wantCallerRules(t, "shadow_rules", shadow, spiffeA)
			if sans := sansOf(t, downstreamOf(t, fc).CommonTlsContext); len(sans) != 0 {
				t.Errorf("handshake SANs %v in Audit, want any mesh identity", sans)
			}
		})
	}
}

func TestAuthorizationOffHasNoRBAC(t *testing.T) {
	for _, p := range allProtocols {
		out := build(t, secureService(p, v1alpha1.MTLSStrict, v1alpha1.AuthorizationOff, spiffeA))
		fc := mtlsChain(t, inboundOf(t, out))
		if found, _, _ := rbacRules(t, fc); found {
			t.Errorf("%s: RBAC filter with authorization Off", p)
		}
		if !downstreamOf(t, fc).GetRequireClientCertificate().GetValue() {
			t.Errorf("%s: Off still requires a mesh certificate", p)
		}
	}
}

func TestStrictHasOnlyTheMTLSChain(t *testing.T) {
	for _, p := range allProtocols {
		l := inboundOf(t, build(t, secureService(p, v1alpha1.MTLSStrict, v1alpha1.AuthorizationEnforce, spiffeA)))
		if len(l.FilterChains) != 1 || l.DefaultFilterChain != nil || l.FilterChains[0].FilterChainMatch != nil {
			t.Errorf("%s: chains %v, default %v; want one chain that takes every connection", p, l.FilterChains, l.DefaultFilterChain)
		}
		if len(l.ListenerFilters) != 0 {
			t.Errorf("%s: listener filters %v, want none", p, l.ListenerFilters)
		}
		if l.StatPrefix != inboundListenerName || l.FilterChains[0].Name != mtlsChainName {
			t.Errorf("%s: stat_prefix %q, chain %q", p, l.StatPrefix, l.FilterChains[0].Name)
		}
	}
}

func TestPermissiveChainMatching(t *testing.T) {
	for _, p := range allProtocols {
		t.Run(string(p), func(t *testing.T) {
			out := build(t, secureService(p, v1alpha1.MTLSPermissive, v1alpha1.AuthorizationEnforce, spiffeA))
			if err := validateRendered(out); err != nil {
				t.Fatal(err)
			}
			l := inboundOf(t, out)
			if len(l.FilterChains) != 1 {
				t.Fatalf("%d filter chains, want the mTLS one (plaintext is the default chain)", len(l.FilterChains))
			}
			want := &listenerv3.FilterChainMatch{TransportProtocol: "tls", ApplicationProtocols: []string{MeshALPN}}
			if d := cmp.Diff(want, l.FilterChains[0].FilterChainMatch, protocmp.Transform()); d != "" {
				t.Errorf("mTLS chain match (-want +got):\n%s", d)
			}
			if found, _, _ := rbacRules(t, l.FilterChains[0]); !found {
				t.Error("the mTLS chain does not authorize")
			}
			plain := l.DefaultFilterChain
			if plain == nil || plain.TransportSocket != nil || plain.FilterChainMatch != nil || plain.Name != plaintextChainName {
				t.Fatalf("default filter chain %v, want a plaintext chain", plain)
			}
			if found, _, _ := rbacRules(t, plain); found {
				t.Error("the plaintext chain has an RBAC filter: its callers have no identity, so it would deny them all")
			}
			if len(l.ListenerFilters) != 1 || l.ListenerFilters[0].Name != tlsInspectorName ||
				l.ListenerFilters[0].GetTypedConfig().GetTypeUrl() != "type.googleapis.com/"+string((&tlsinspectorv3.TlsInspector{}).ProtoReflect().Descriptor().FullName()) {
				t.Errorf("listener filters %v, want the TLS inspector", l.ListenerFilters)
			}
			if !l.ContinueOnListenerFiltersTimeout || l.ListenerFiltersTimeout.AsDuration() != time.Second {
				t.Errorf("listener filters timeout %v, continue %v; want 1s then the plaintext chain", l.ListenerFiltersTimeout, l.ContinueOnListenerFiltersTimeout)
			}
		})
	}
}

// TestMeshALPN: clients offer the app's protocol and MeshALPN; servers select
// only the app's, so HCM's codec follows the negotiated protocol.
func TestMeshALPN(t *testing.T) {
	tests := []struct {
		p              v1alpha1.Protocol
		client, server []string
	}{
		{v1alpha1.ProtocolHTTP, []string{"http/1.1", MeshALPN}, []string{"h2", "http/1.1"}},
		{v1alpha1.ProtocolHTTP2, []string{"h2", MeshALPN}, []string{"h2", "http/1.1"}},
		{v1alpha1.ProtocolGRPC, []string{"h2", MeshALPN}, []string{"h2", "http/1.1"}},
		{v1alpha1.ProtocolTCP, []string{MeshALPN}, nil},
	}
	for _, tc := range tests {
		out := build(t, secureService(tc.p, v1alpha1.MTLSStrict, v1alpha1.AuthorizationOff))
		if got := downstreamOf(t, mtlsChain(t, inboundOf(t, out))).CommonTlsContext.AlpnProtocols; !slices.Equal(got, tc.server) {
			t.Errorf("%s server ALPN %v, want %v", tc.p, got, tc.server)
		}
		if got := clientALPN(tc.p); !slices.Equal(got, tc.client) {
			t.Errorf("%s client ALPN %v, want %v", tc.p, got, tc.client)
		}
		// The first protocol the server prefers that the client offers is
		// what Envoy negotiates: never MeshALPN.
		if i := slices.IndexFunc(tc.server, func(s string) bool { return slices.Contains(tc.client, s) }); i >= 0 && tc.server[i] == MeshALPN {
			t.Errorf("%s negotiates %q", tc.p, MeshALPN)
		}
	}
}

// meshCaller calls one mesh upstream of each protocol, all with health checks,
// plus a plaintext one.
func meshCaller() Service {
	hc := &v1alpha1.HealthCheck{Path: "/healthz"}
	target := func(p v1alpha1.Protocol, name string) *Target {
		tp := MergeTraffic()
		tp.HealthCheck = hc
		if p == v1alpha1.ProtocolTCP {
			tp.HealthCheck = &v1alpha1.HealthCheck{}
		}
		return &Target{ServicePort: 15006, Protocol: p, Traffic: tp, Peer: &Peer{
			SPIFFEID: "spiffe://cluster.local/ns/shop/sa/" + name,
			SNI:      name + ".shop.svc.cluster.local",
		}}
	}
	svc := secureService(v1alpha1.ProtocolHTTP, v1alpha1.MTLSStrict, v1alpha1.AuthorizationEnforce, spiffeA)
	svc.Name = "frontend"
	svc.Upstreams = []Upstream{
		{Name: "web", Namespace: "shop", LocalPort: 9101, Target: target(v1alpha1.ProtocolHTTP, "web")},
		{Name: "api", Namespace: "shop", LocalPort: 9102, Target: target(v1alpha1.ProtocolHTTP2, "api")},
		{Name: "payments", Namespace: "shop", LocalPort: 9103, Target: target(v1alpha1.ProtocolGRPC, "payments")},
		{Name: "cache", Namespace: "shop", LocalPort: 9104, Target: target(v1alpha1.ProtocolTCP, "cache")},
		{Name: "legacy", Namespace: "shop", LocalPort: 9105, Target: &Target{ServicePort: 80, Protocol: v1alpha1.ProtocolHTTP, Traffic: MergeTraffic()}},
	}
	return svc
}

func TestUpstreamClusterTLS(t *testing.T) {
	out := build(t, meshCaller())
	if err := validateRendered(out); err != nil {
		t.Fatal(err)
	}
	_, cs := parseClusters(t, out.Clusters)
	for name, alpn := range map[string][]string{
		"web":      {"http/1.1", MeshALPN},
		"api":      {"h2", MeshALPN},
		"payments": {"h2", MeshALPN},
		"cache":    {MeshALPN},
	} {
		t.Run(name, func(t *testing.T) {
			c := clusterNamed(t, cs, UpstreamClusterName(name, "shop"))
			ctx := upstreamOf(t, c)
			if ctx.Sni != name+".shop.svc.cluster.local" {
				t.Errorf("sni %q", ctx.Sni)
			}
			if got := sansOf(t, ctx.CommonTlsContext); !slices.Equal(got, []string{"spiffe://cluster.local/ns/shop/sa/" + name}) {
				t.Errorf("required SANs %v, want exactly the peer's SPIFFE ID", got)
			}
			if got := ctx.CommonTlsContext.AlpnProtocols; !slices.Equal(got, alpn) {
				t.Errorf("ALPN %v, want %v", got, alpn)
			}
			if got := ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs; len(got) != 1 || got[0].Name != IdentitySecretName {
				t.Errorf("certificate secrets %v, want the identity", got)
			}
			// Health checks take the cluster's transport socket (and its ALPN)
			// unless they select another one or override the ALPN.
			if len(c.HealthChecks) != 1 {
				t.Fatalf("health checks %v, want one", c.HealthChecks)
			}
			hc := c.HealthChecks[0]
			if hc.TransportSocketMatchCriteria != nil || hc.TlsOptions != nil || len(c.TransportSocketMatches) != 0 {
				t.Errorf("health check picks another socket (criteria %v, tls_options %v, matches %v)", hc.TransportSocketMatchCriteria, hc.TlsOptions, c.TransportSocketMatches)
			}
		})
	}
	if c := clusterNamed(t, cs, UpstreamClusterName("legacy", "shop")); c.TransportSocket != nil {
		t.Errorf("an upstream without a Peer got transport socket %v", c.TransportSocket)
	}
}

func TestSecurityErrors(t *testing.T) {
	peer := &Peer{SPIFFEID: spiffeB, SNI: "b.shop.svc.cluster.local"}
	withUpstream := func(s *Service, p *Peer) {
		s.Upstreams = []Upstream{{Name: "b", Namespace: "shop", LocalPort: 9100, Target: &Target{ServicePort: 80, Traffic: MergeTraffic(), Peer: p}}}
	}
	tests := map[string]struct {
		change func(*Service)
		want   string
	}{
		"Disabled is a nil Security": {func(s *Service) { s.Security.MTLS = v1alpha1.MTLSDisabled }, `mTLS mode "Disabled"`},
		"empty mTLS mode":            {func(s *Service) { s.Security.MTLS = "" }, `mTLS mode ""`},
		"unknown authorization":      {func(s *Service) { s.Security.Authorization = "Maybe" }, `authorization mode "Maybe"`},
		"principal not SPIFFE":       {func(s *Service) { s.Security.Principals = []string{"frontend.shop"} }, "not a SPIFFE ID"},
		"bare SPIFFE scheme":         {func(s *Service) { s.Security.Principals = []string{"spiffe://"} }, "not a SPIFFE ID"},
		"peer without identity": {func(s *Service) {
			s.Security = nil
			withUpstream(s, peer)
		}, "no identity"},
		"peer not SPIFFE":  {func(s *Service) { withUpstream(s, &Peer{SPIFFEID: "b", SNI: peer.SNI}) }, "not a SPIFFE ID"},
		"peer without SNI": {func(s *Service) { withUpstream(s, &Peer{SPIFFEID: spiffeB}) }, "SNI must be set"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			svc := secureService(v1alpha1.ProtocolHTTP, v1alpha1.MTLSStrict, v1alpha1.AuthorizationEnforce, spiffeA)
			tc.change(&svc)
			if _, err := BuildSidecar(svc, Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestSDSFiles: each secret is rendered to the file every TLS context reads it
// from, watched like lds.yaml, and names the kubelet's files in a watched
// IdentityDir; the files' bytes do not follow listener changes.
func TestSDSFiles(t *testing.T) {
	out := build(t, meshCaller())
	for file, data := range map[string][]byte{SDSIdentityFile: out.SDSIdentity, SDSTrustFile: out.SDSTrust} {
		_, secrets := parseResources[*tlsv3.Secret](t, data)
		if len(secrets) != 1 || sdsFiles[secrets[0].Name] != file {
			t.Fatalf("%s holds %v, want its one secret", file, secrets)
		}
		if err := validateDeep(secrets[0]); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
	_, id := parseResources[*tlsv3.Secret](t, out.SDSIdentity)
	bundle := IdentityDir + "/" + CredentialBundleFile
	tc := id[0].GetTlsCertificate()
	if tc.GetCertificateChain().GetFilename() != bundle || tc.GetPrivateKey().GetFilename() != bundle || tc.GetWatchedDirectory().GetPath() != IdentityDir {
		t.Errorf("identity %v, want chain and key from %s, watching %s", tc, bundle, IdentityDir)
	}
	_, trust := parseResources[*tlsv3.Secret](t, out.SDSTrust)
	vc := trust[0].GetValidationContext()
	if vc.GetTrustedCa().GetFilename() != IdentityDir+"/"+TrustBundleFile || vc.GetWatchedDirectory().GetPath() != IdentityDir {
		t.Errorf("trust %v, want %s/%s, watching %s", vc, IdentityDir, TrustBundleFile, IdentityDir)
	}

	// Every SDS reference in the listeners and clusters names a rendered file.
	refs := 0
	for _, data := range [][]byte{out.Listeners, out.Clusters} {
		for _, ref := range sdsRefs(t, data) {
			refs++
			want := &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{
				PathConfigSource: &corev3.PathConfigSource{Path: MountPath + "/" + sdsFiles[ref.Name], WatchedDirectory: &corev3.WatchedDirectory{Path: MountPath}},
			}}
			if sdsFiles[ref.Name] == "" || !proto.Equal(ref.SdsConfig, want) {
				t.Errorf("SDS reference %v, want %v", ref, want)
			}
		}
	}
	if refs != 2*(1+4) {
		t.Errorf("%d SDS references, want identity and trust in the inbound chain and 4 clusters", refs)
	}

	svc := meshCaller()
	svc.Upstreams = svc.Upstreams[:1]
	other := build(t, svc)
	if other.ConfigVersion == out.ConfigVersion || !bytes.Equal(other.SDSIdentity, out.SDSIdentity) || !bytes.Equal(other.SDSTrust, out.SDSTrust) {
		t.Error("the SDS files changed with the listeners, or the listeners did not change")
	}
}

// sdsRefs collects every SdsSecretConfig of a rendered DiscoveryResponse file.
func sdsRefs(t *testing.T, data []byte) []*tlsv3.SdsSecretConfig {
	t.Helper()
	var refs []*tlsv3.SdsSecretConfig
	collect := func(c *tlsv3.CommonTlsContext) {
		refs = append(refs, c.GetTlsCertificateSdsSecretConfigs()...)
		refs = append(refs, c.GetCombinedValidationContext().GetValidationContextSdsSecretConfig())
	}
	_, ms := parseResources[proto.Message](t, data)
	for _, m := range ms {
		switch r := m.(type) {
		case *listenerv3.Listener:
			for _, fc := range append(slices.Clone(r.FilterChains), r.DefaultFilterChain) {
				if fc.GetTransportSocket() != nil {
					collect(downstreamOf(t, fc).CommonTlsContext)
				}
			}
		case *clusterv3.Cluster:
			if r.TransportSocket != nil {
				collect(upstreamOf(t, r).CommonTlsContext)
			}
		}
	}
	return refs
}

func TestGatewaySecurity(t *testing.T) {
	peer := &Peer{SPIFFEID: "spiffe://cluster.local/ns/default/sa/service-a", SNI: "service-a.default.svc.cluster.local"}
	target := httpTarget(8786)
	target.Peer = peer
	gw := Gateway{Name: "default", Namespace: "default", ListenPort: GatewayListenPort,
		Routes:   []GatewayRoute{{Prefix: "/", Name: "service-a", Namespace: "default", Target: target}},
		Security: &Security{}} // only its presence matters to a gateway
	res, err := BuildGateway(gw, Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := mustRender(t, res)
	if err := validateRendered(out); err != nil {
		t.Fatal(err)
	}
	if len(out.SDSIdentity) == 0 || len(out.SDSTrust) == 0 {
		t.Error("a gateway with an identity has no SDS files")
	}
	_, ls := parseListeners(t, out.Listeners)
	if l := listenerNamed(t, ls, gatewayListenerName); l.FilterChains[0].TransportSocket != nil || l.DefaultFilterChain != nil {
		t.Error("the gateway's listener must stay plaintext HTTP")
	}
	_, cs := parseClusters(t, out.Clusters)
	up := upstreamOf(t, clusterNamed(t, cs, UpstreamClusterName("service-a", "default")))
	if sans := sansOf(t, up.CommonTlsContext); !slices.Equal(sans, []string{peer.SPIFFEID}) || up.Sni != peer.SNI ||
		!slices.Equal(up.CommonTlsContext.AlpnProtocols, []string{"http/1.1", MeshALPN}) {
		t.Errorf("gateway cluster TLS %v", up)
	}

	gw.Security = nil
	if _, err := BuildGateway(gw, Options{}); err == nil || !strings.Contains(err.Error(), "no identity") {
		t.Errorf("gateway Peer without Security: error %v", err)
	}
}
