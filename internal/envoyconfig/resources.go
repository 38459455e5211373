package envoyconfig

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
)

// Resources is one Envoy's config as typed, validated protos: what BuildSidecar and
// BuildGateway produce, and what every delivery consumes. Render turns it into the
// ConfigMap's files; an xDS snapshot is the other consumer. Each list is in a
// deterministic order, so the same inputs give the same Version.
type Resources struct {
	// Bootstrap is the static config the Envoy starts with; it names where the
	// rest comes from (see Delivery).
	Bootstrap *bootstrapv3.Bootstrap
	Listeners []*listenerv3.Listener
	Clusters  []*clusterv3.Cluster
	// Secrets are the SDS resources: the identity and trust secrets when the
	// Envoy has an identity (see Security), in that order. They name files the
	// kubelet keeps fresh, so they only change when Security comes or goes.
	// The TLS contexts read them from SDS files in the ConfigMap whatever the
	// delivery, so an xDS snapshot may carry them but no Envoy asks for them.
	Secrets []*tlsv3.Secret
	// BootstrapSecrets are the SDS secrets the bootstrap's own clusters name
	// (the xDS server's under ADSDelivery): files beside the bootstrap, which
	// Render writes whatever Secrets holds, and never xDS resources.
	BootstrapSecrets []*tlsv3.Secret
	// Endpoints are the EDS resources: one load assignment per EDS cluster, in
	// the clusters' order, filled when the delivery has EDS (see
	// Options.Endpoints and WithEndpoints). Shared with the caller's input:
	// they must not be modified.
	Endpoints []*endpointv3.ClusterLoadAssignment

	// Version is a hash of the deterministic proto encoding of the listeners,
	// clusters and secrets: the version_info Envoy reports once it loaded them.
	// It is known before anything is rendered, so an unchanged set is
	// recognised without rendering it. Secrets are in it, as they are part of
	// the same snapshot; they change only with the listeners and clusters that
	// name them, so they never move it alone. Endpoints are not in it: an
	// upstream's pods come and go far more often than its config changes, and
	// an EDS push must neither resend listeners and clusters nor make every
	// caller look out of sync; EndpointsVersion versions them.
	Version string
	// EndpointsVersion is the same kind of hash of the endpoints alone, the
	// version of the snapshot's EDS resources; empty when there are none.
	EndpointsVersion string
	// BootstrapVersion is the same kind of hash of the bootstrap alone; the pod
	// template carries it, so only a bootstrap change rolls the pods.
	BootstrapVersion string
	// FilesVersion identifies what Render writes, so a caller can skip
	// rendering an unchanged ConfigMap: "<Version>/<BootstrapVersion>" with
	// file delivery; under ADS, where the ConfigMap carries only the bootstrap
	// and the SDS files, BootstrapVersion and the secrets' hash, so no
	// listener, cluster or endpoint change rewrites it.
	FilesVersion string
}

// deterministic is the encoding both versions hash: map entries sorted, so equal
// messages give equal bytes within one build of the operator.
var deterministic = proto.MarshalOptions{Deterministic: true}

// versioned sets the versions of r from its content.
func (r *Resources) versioned() (*Resources, error) {
	dynamic := make([]proto.Message, 0, len(r.Listeners)+len(r.Clusters)+len(r.Secrets))
	dynamic = appendMessages(dynamic, r.Listeners)
	dynamic = appendMessages(dynamic, r.Clusters)
	dynamic = appendMessages(dynamic, r.Secrets)
	var err error
	if r.Version, err = versionOf(dynamic...); err != nil {
		return nil, err
	}
	if r.EndpointsVersion, err = endpointsVersion(r.Endpoints); err != nil {
		return nil, err
	}
	if r.BootstrapVersion, err = versionOf(r.Bootstrap); err != nil {
		return nil, err
	}
	if r.FilesVersion, err = r.filesVersion(); err != nil {
		return nil, err
	}
	return r, nil
}

func endpointsVersion(endpoints []*endpointv3.ClusterLoadAssignment) (string, error) {
	if len(endpoints) == 0 {
		return "", nil
	}
	return versionOf(appendMessages(make([]proto.Message, 0, len(endpoints)), endpoints)...)
}

// filesVersion is FilesVersion: Version when lds.yaml or cds.yaml is a file,
// BootstrapVersion always, and a hash of the secrets when Version does not
// cover the secrets Render writes (under ADS, or with bootstrap secrets).
func (r *Resources) filesVersion() (string, error) {
	listenersAsFiles := writesListeners(r.Bootstrap) || writesClusters(r.Bootstrap)
	if listenersAsFiles && len(r.BootstrapSecrets) == 0 {
		return r.Version + "/" + r.BootstrapVersion, nil
	}
	secrets := appendMessages(make([]proto.Message, 0, len(r.Secrets)+len(r.BootstrapSecrets)), r.Secrets)
	secretsVersion, err := versionOf(appendMessages(secrets, r.BootstrapSecrets)...)
	if err != nil {
		return "", err
	}
	if listenersAsFiles {
		return r.Version + "/" + r.BootstrapVersion + "/" + secretsVersion, nil
	}
	return r.BootstrapVersion + "/" + secretsVersion, nil
}

func appendMessages[M proto.Message](to []proto.Message, ms []M) []proto.Message {
	for _, m := range ms {
		to = append(to, m)
	}
	return to
}

// versionOf is the first 16 hex digits of a SHA-256 over the deterministic
// encoding of ms. Each message is preceded by its type and length, so messages
// cannot run into each other.
func versionOf(ms ...proto.Message) (string, error) {
	h := sha256.New()
	var buf []byte
	var lenBuf [binary.MaxVarintLen64]byte
	for _, m := range ms {
		var err error
		name := m.ProtoReflect().Descriptor().FullName()
		if buf, err = deterministic.MarshalAppend(buf[:0], m); err != nil {
			return "", fmt.Errorf("version of a %s: %w", name, err)
		}
		h.Write([]byte(name))
		h.Write(binary.AppendUvarint(lenBuf[:0], uint64(len(buf))))
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
