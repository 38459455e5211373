package envoyconfig

import (
	"fmt"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// XDSClusterName is the bootstrap's static cluster of the manager's xDS
// server, which the ADS config source names.
const XDSClusterName = "envoymesh-xds"

// Settings of the ADS channel; see ADSDelivery for why.
const (
	xdsConnectTimeout = 1 * time.Second

	adsMaxTokens = 100
	adsFillRate  = 10

	xdsKeepaliveTime     = 30 // seconds idle before the first probe
	xdsKeepaliveInterval = 5  // seconds between probes
	xdsKeepaliveProbes   = 3
)

// ADS is the manager's xDS server as a sidecar or gateway reaches it.
type ADS struct {
	// Address is the DNS name of the manager's xDS Service,
	// "<service>.<namespace>.svc.<clusterDomain>"; it is also the SNI.
	Address string
	Port    int32
	// ServerSPIFFEID is the manager's identity,
	// "spiffe://<trust domain>/ns/<namespace>/sa/<serviceAccount>": the only
	// URI SAN the Envoy accepts from the server.
	ServerSPIFFEID string
}

// ADSDelivery has Envoy take its listeners, clusters and endpoints from the
// manager over one ADS stream (gRPC, HTTP/2, v3), instead of from files the
// kubelet syncs only every minute or so:
//
//   - dynamic_resources.ads_config names XDSClusterName and sends the node only
//     on the first request of a stream (the server keeps it per stream);
//     rate_limit_settings bounds the discovery requests Envoy sends: a burst of
//     100 covers a whole (re)connect (LDS, CDS, EDS and their ACKs, many times
//     over) and 10 a second is far above steady state (one ACK per type per
//     push), yet caps a sidecar stuck NACKing, or a fleet reconnecting after a
//     manager restart, at 10 requests a second each. Those are the values Envoy
//     documents as its defaults once the message is present; without it, Envoy
//     does not limit at all.
//   - lds_config, cds_config and the EDS clusters' eds_config are {ads: {}}.
//   - The static XDSClusterName cluster dials Address:Port (STRICT_DNS, as
//     upstream clusters, so a headless Service would work as well as a
//     ClusterIP one) over HTTP/2 and mutual TLS: it presents the Pod
//     Certificate, by which the server authorizes the stream, and accepts only
//     a certificate of ServerSPIFFEID chaining to the mesh's anchors. Its
//     secrets come from the same SDS files as every other TLS context's
//     (Resources.BootstrapSecrets), so they rotate without a restart; they
//     cannot come over ADS, which this very cluster carries. TCP keepalive
//     finds a server that vanished without closing the stream (a node lost)
//     in about 45 s, where a quiet stream would otherwise wait forever.
//
// The bootstrap keeps the admin API and the status listener as with files.
// The pod needs its certificate whatever the mesh's mTLS mode: the channel is
// authenticated by it even when the mesh's traffic is plaintext.
func ADSDelivery(a ADS) (Delivery, error) {
	if err := checkADS(a); err != nil {
		return Delivery{}, err
	}
	ads := &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
	api := &corev3.ApiConfigSource{
		ApiType:             corev3.ApiConfigSource_GRPC,
		TransportApiVersion: corev3.ApiVersion_V3,
		GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSClusterName},
		}}},
		SetNodeOnFirstMessageOnly: true,
		RateLimitSettings: &corev3.RateLimitSettings{
			MaxTokens: wrapperspb.UInt32(adsMaxTokens),
			FillRate:  wrapperspb.Double(adsFillRate),
		},
	}
	if err := api.ValidateAll(); err != nil {
		return Delivery{}, fmt.Errorf("ads_config: %w", err)
	}
	cluster, err := xdsCluster(a)
	if err != nil {
		return Delivery{}, err
	}
	secrets, err := identitySecrets()
	if err != nil {
		return Delivery{}, err
	}
	return Delivery{LDS: ads, CDS: ads, EDS: ads, ADS: api, Clusters: []*clusterv3.Cluster{cluster}, Secrets: secrets}, nil
}

func checkADS(a ADS) error {
	if a.Address == "" || strings.ContainsAny(a.Address, ":/ ") {
		return fmt.Errorf("ads: address %q must be a DNS name without scheme or port", a.Address)
	}
	if a.Port < 1 || a.Port > 65535 {
		return fmt.Errorf("ads: port %d is not a valid port", a.Port)
	}
	if err := checkSPIFFEID(a.ServerSPIFFEID); err != nil {
		return fmt.Errorf("ads: server identity: %w", err)
	}
	return nil
}

// xdsCluster is the static cluster of the manager's xDS server; see ADSDelivery.
func xdsCluster(a ADS) (*clusterv3.Cluster, error) {
	c := &clusterv3.Cluster{
		Name:                 XDSClusterName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS},
		ConnectTimeout:       durationpb.New(xdsConnectTimeout),
		LoadAssignment:       singleEndpoint(XDSClusterName, a.Address, a.Port),
		DnsRefreshRate:       durationpb.New(dnsRefreshRate),
		RespectDnsTtl:        true,
		DnsLookupFamily:      clusterv3.Cluster_V4_PREFERRED,
		UpstreamConnectionOptions: &clusterv3.UpstreamConnectionOptions{TcpKeepalive: &corev3.TcpKeepalive{
			KeepaliveTime:     wrapperspb.UInt32(xdsKeepaliveTime),
			KeepaliveInterval: wrapperspb.UInt32(xdsKeepaliveInterval),
			KeepaliveProbes:   wrapperspb.UInt32(xdsKeepaliveProbes),
		}},
	}
	var err error
	if c.TypedExtensionProtocolOptions, err = http2ProtocolOptions(); err != nil {
		return nil, fmt.Errorf("cluster %q: %w", c.Name, err)
	}
	// gRPC is HTTP/2: offer only h2, and never MeshALPN, which marks mesh
	// traffic for Permissive listeners, not the control plane's.
	if c.TransportSocket, err = transportSocket(tlsTransportSocketName, &tlsv3.UpstreamTlsContext{
		Sni:              a.Address,
		CommonTlsContext: commonTLS([]string{a.ServerSPIFFEID}, []string{alpnH2}),
	}); err != nil {
		return nil, fmt.Errorf("cluster %q: %w", c.Name, err)
	}
	return validCluster(c)
}

// isADS reports whether s is the aggregated source.
func isADS(s *corev3.ConfigSource) bool { return s.GetAds() != nil }

// checkDelivery rejects a delivery Envoy would refuse at startup or on the
// first CDS update: a source that names ADS without an ADS server.
func checkDelivery(d *Delivery) error {
	if d.ADS != nil {
		return nil
	}
	var name string
	switch {
	case isADS(d.LDS):
		name = "lds_config"
	case isADS(d.CDS):
		name = "cds_config"
	case isADS(d.EDS):
		name = "eds_config"
	default:
		return nil
	}
	return fmt.Errorf("delivery: %s names ADS, but the delivery has no ADS server", name)
}
