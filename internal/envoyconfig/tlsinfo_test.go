package envoyconfig

import (
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

func TestInboundTLSReadsTheProtos(t *testing.T) {
	for _, tc := range []struct {
		p             v1alpha1.Protocol
		mtls          v1alpha1.MTLSMode
		authz         v1alpha1.AuthorizationMode
		principals    []string
		handshakeSANs []string
	}{
		{v1alpha1.ProtocolHTTP, v1alpha1.MTLSStrict, v1alpha1.AuthorizationEnforce, []string{spiffeB, spiffeA}, nil},
		{v1alpha1.ProtocolGRPC, v1alpha1.MTLSPermissive, v1alpha1.AuthorizationAudit, []string{spiffeA}, nil},
		{v1alpha1.ProtocolTCP, v1alpha1.MTLSPermissive, v1alpha1.AuthorizationEnforce, []string{spiffeA, spiffeC}, []string{spiffeC, spiffeA}},
		{v1alpha1.ProtocolTCP, v1alpha1.MTLSStrict, v1alpha1.AuthorizationOff, nil, nil},
	} {
		t.Run(string(tc.p)+"/"+string(tc.mtls)+"/"+string(tc.authz), func(t *testing.T) {
			res, err := BuildSidecar(secureService(tc.p, tc.mtls, tc.authz, tc.principals...), Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := InboundTLS(res)
			if err != nil {
				t.Fatal(err)
			}
			want := &InboundTLSInfo{
				RequireClientCert: true,
				Authorization:     tc.authz,
				Principals:        slices.Sorted(slices.Values(tc.principals)),
				HandshakeSANs:     tc.handshakeSANs,
				ServerALPN:        serverALPN(tc.p),
				TrustFile:         "/var/run/envoymesh/identity/ca.pem",
				CertFile:          "/var/run/envoymesh/identity/bundle.pem",
				KeyFile:           "/var/run/envoymesh/identity/bundle.pem",
			}
			if tc.authz == v1alpha1.AuthorizationOff {
				want.Principals = nil
			}
			if tc.mtls == v1alpha1.MTLSPermissive {
				want.MatchALPN, want.PlaintextFallback = []string{MeshALPN}, true
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("InboundTLS (-want +got):\n%s", d)
			}
		})
	}
	t.Run("errors", func(t *testing.T) {
		plain, err := BuildSidecar(Service{Name: "a", Namespace: "ns", Port: 8081, ServicePort: 8786}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := InboundTLS(plain); err == nil || !strings.Contains(err.Error(), "no TLS filter chain") {
			t.Errorf("plaintext: error %v", err)
		}
		res, err := BuildSidecar(secureService(v1alpha1.ProtocolHTTP, v1alpha1.MTLSStrict, v1alpha1.AuthorizationOff), Options{})
		if err != nil {
			t.Fatal(err)
		}
		res.Secrets = res.Secrets[:1]
		if _, err := InboundTLS(res); err == nil || !strings.Contains(err.Error(), `no secret "trust"`) {
			t.Errorf("missing trust secret: error %v", err)
		}
	})
}

func TestUpstreamTLSReadsTheProtos(t *testing.T) {
	res, err := BuildSidecar(meshCaller(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := UpstreamTLS(res, UpstreamClusterName("payments", "shop"))
	if err != nil {
		t.Fatal(err)
	}
	want := &UpstreamTLSInfo{
		SNI:         "payments.shop.svc.cluster.local",
		RequiredSAN: "spiffe://cluster.local/ns/shop/sa/payments",
		ALPN:        []string{"h2", MeshALPN},
		TrustFile:   "/var/run/envoymesh/identity/ca.pem",
		CertFile:    "/var/run/envoymesh/identity/bundle.pem",
		KeyFile:     "/var/run/envoymesh/identity/bundle.pem",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("UpstreamTLS (-want +got):\n%s", d)
	}
	if _, err := UpstreamTLS(res, UpstreamClusterName("legacy", "shop")); err == nil || !strings.Contains(err.Error(), "plaintext") {
		t.Errorf("plaintext cluster: error %v", err)
	}
	if _, err := UpstreamTLS(res, "nope"); err == nil {
		t.Error("a missing cluster gave no error")
	}
	// A reference to a file Render does not write is an error, not a guess.
	c := res.Clusters[slices.IndexFunc(res.Clusters, func(c *clusterv3.Cluster) bool { return c.Name == UpstreamClusterName("web", "shop") })]
	ctx := upstreamOf(t, c)
	ctx.CommonTlsContext.TlsCertificateSdsSecretConfigs[0].SdsConfig = watchedFile("elsewhere.yaml")
	if c.TransportSocket, err = transportSocket(tlsTransportSocketName, ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := UpstreamTLS(res, c.Name); err == nil || !strings.Contains(err.Error(), "Render writes it to") {
		t.Errorf("misdirected SDS reference: error %v", err)
	}
}
