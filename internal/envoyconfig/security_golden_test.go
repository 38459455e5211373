package envoyconfig

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// securityGoldenCases are the inbound listener in each mode: every mTLS ×
// authorization pair for HTTP and TCP, each mode at least once for the HTTP/2
// family, and a service nobody may call.
var securityGoldenCases = []struct {
	p          v1alpha1.Protocol
	mtls       v1alpha1.MTLSMode
	authz      v1alpha1.AuthorizationMode
	principals []string
	suffix     string
}{
	{p: v1alpha1.ProtocolHTTP, mtls: v1alpha1.MTLSStrict, authz: v1alpha1.AuthorizationEnforce},
	{p: v1alpha1.ProtocolHTTP, mtls: v1alpha1.MTLSStrict, authz: v1alpha1.AuthorizationAudit},
	{p: v1alpha1.ProtocolHTTP, mtls: v1alpha1.MTLSStrict, authz: v1alpha1.AuthorizationOff},
	{p: v1alpha1.ProtocolHTTP, mtls: v1alpha1.MTLSPermissive, authz: v1alpha1.AuthorizationEnforce},
	{p: v1alpha1.ProtocolHTTP, mtls: v1alpha1.MTLSPermissive, authz: v1alpha1.AuthorizationAudit},
	{p: v1alpha1.ProtocolHTTP, mtls: v1alpha1.MTLSPermissive, authz: v1alpha1.AuthorizationOff},
	{p: v1alpha1.ProtocolHTTP, mtls: v1alpha1.MTLSStrict, authz: v1alpha1.AuthorizationEnforce, principals: []string{}, suffix: "-no-callers"},
	{p: v1alpha1.ProtocolHTTP2, mtls: v1alpha1.MTLSStrict, authz: v1alpha1.AuthorizationEnforce},
	{p: v1alpha1.ProtocolHTTP2, mtls: v1alpha1.MTLSPermissive, authz: v1alpha1.AuthorizationOff},
	{p: v1alpha1.ProtocolGRPC, mtls: v1alpha1.MTLSStrict, authz: v1alpha1.AuthorizationAudit},
	{p: v1alpha1.ProtocolGRPC, mtls: v1alpha1.MTLSPermissive, authz: v1alpha1.AuthorizationEnforce},
	{p: v1alpha1.ProtocolTCP, mtls: v1alpha1.MTLSStrict, authz: v1alpha1.AuthorizationEnforce},
	{p: v1alpha1.ProtocolTCP, mtls: v1alpha1.MTLSStrict, authz: v1alpha1.AuthorizationAudit},
	{p: v1alpha1.ProtocolTCP, mtls: v1alpha1.MTLSStrict, authz: v1alpha1.AuthorizationOff},
	{p: v1alpha1.ProtocolTCP, mtls: v1alpha1.MTLSPermissive, authz: v1alpha1.AuthorizationEnforce},
	{p: v1alpha1.ProtocolTCP, mtls: v1alpha1.MTLSPermissive, authz: v1alpha1.AuthorizationAudit},
	{p: v1alpha1.ProtocolTCP, mtls: v1alpha1.MTLSPermissive, authz: v1alpha1.AuthorizationOff},
	{p: v1alpha1.ProtocolTCP, mtls: v1alpha1.MTLSStrict, authz: v1alpha1.AuthorizationEnforce, principals: []string{}, suffix: "-no-callers"},
}

// TestGoldenSecurityModes pins the inbound listener of each mode in
// testdata/security/<protocol>-<mtls>-<authorization>/lds.yaml. Only lds.yaml
// differs between modes: the test holds the bootstrap and cds.yaml equal to the
// plaintext service's, and the SDS files equal to every other identity's.
func TestGoldenSecurityModes(t *testing.T) {
	var sdsIdentity, sdsTrust []byte
	for _, tc := range securityGoldenCases {
		name := strings.ToLower(string(tc.p) + "-" + string(tc.mtls) + "-" + string(tc.authz) + tc.suffix)
		t.Run(name, func(t *testing.T) {
			principals := tc.principals
			if principals == nil {
				principals = []string{spiffeC, spiffeA}
			}
			out := build(t, secureService(tc.p, tc.mtls, tc.authz, principals...))
			if err := validateRendered(out); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("security", name), ListenersFile, out.Listeners)

			plainSvc := secureService(tc.p, tc.mtls, tc.authz)
			plainSvc.Security = nil
			plain := build(t, plainSvc)
			_, clusters := parseClusters(t, out.Clusters)
			_, plainClusters := parseClusters(t, plain.Clusters)
			if !bytes.Equal(out.Bootstrap, plain.Bootstrap) || !slices.EqualFunc(clusters, plainClusters, func(a, b *clusterv3.Cluster) bool { return proto.Equal(a, b) }) {
				t.Error("the mode changed the bootstrap or the clusters; only lds.yaml and the SDS files may differ")
			}
			if sdsIdentity == nil {
				sdsIdentity, sdsTrust = out.SDSIdentity, out.SDSTrust
			}
			if len(out.SDSIdentity) == 0 || !bytes.Equal(out.SDSIdentity, sdsIdentity) || !bytes.Equal(out.SDSTrust, sdsTrust) {
				t.Error("the SDS files differ between modes")
			}
		})
	}
}

// TestGoldenSecurityEgress pins a caller with an identity and mesh upstreams of
// every protocol, health-checked, beside a plaintext one: every file, the SDS
// files included.
func TestGoldenSecurityEgress(t *testing.T) {
	out := build(t, meshCaller())
	if err := validateRendered(out); err != nil {
		t.Fatal(err)
	}
	checkGoldenSecurityOutput(t, filepath.Join("security", "egress"), out)
}

// TestGoldenSecurityGateway pins the seed's gateway with an identity: a
// plaintext listener and an mTLS cluster to service-a.
func TestGoldenSecurityGateway(t *testing.T) {
	target := httpTarget(8786)
	target.Peer = &Peer{SPIFFEID: "spiffe://cluster.local/ns/default/sa/service-a", SNI: "service-a.default.svc.cluster.local"}
	out := buildGateway(t, Gateway{Name: "default", Namespace: "default", ListenPort: GatewayListenPort,
		Routes:   []GatewayRoute{{Prefix: "/", Name: "service-a", Namespace: "default", Target: target}},
		Security: &Security{MTLS: v1alpha1.MTLSStrict, Authorization: v1alpha1.AuthorizationEnforce}})
	if err := validateRendered(out); err != nil {
		t.Fatal(err)
	}
	checkGoldenSecurityOutput(t, filepath.Join("security", "gateway"), out)
}

func checkGoldenSecurityOutput(t *testing.T, dir string, out *Output) {
	t.Helper()
	checkGoldenOutput(t, dir, out)
	checkGolden(t, dir, SDSIdentityFile, out.SDSIdentity)
	checkGolden(t, dir, SDSTrustFile, out.SDSTrust)
}
