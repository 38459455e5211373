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
	Secrets []*tlsv3.Secret
	// Endpoints are the EDS resources. No builder fills them yet: sidecars
	// resolve upstreams by DNS.
	Endpoints []*endpointv3.ClusterLoadAssignment

	// Version is a hash of the deterministic proto encoding of the listeners,
	// clusters, secrets and endpoints: the version_info Envoy reports once it
	// loaded them. It is known before anything is rendered, so an unchanged set
	// is recognised without rendering it. Secrets are in it, as one version
	// covers a whole xDS snapshot; they change only with the listeners and
	// clusters that name them, so they never move it alone.
	Version string
	// BootstrapVersion is the same kind of hash of the bootstrap alone; the pod
	// template carries it, so only a bootstrap change rolls the pods.
	BootstrapVersion string
}

// deterministic is the encoding both versions hash: map entries sorted, so equal
// messages give equal bytes within one build of the operator.
var deterministic = proto.MarshalOptions{Deterministic: true}

// versioned sets the versions of r from its content.
func (r *Resources) versioned() (*Resources, error) {
	dynamic := make([]proto.Message, 0, len(r.Listeners)+len(r.Clusters)+len(r.Secrets)+len(r.Endpoints))
	dynamic = appendMessages(dynamic, r.Listeners)
	dynamic = appendMessages(dynamic, r.Clusters)
	dynamic = appendMessages(dynamic, r.Secrets)
	dynamic = appendMessages(dynamic, r.Endpoints)
	var err error
	if r.Version, err = versionOf(dynamic...); err != nil {
		return nil, err
	}
	if r.BootstrapVersion, err = versionOf(r.Bootstrap); err != nil {
		return nil, err
	}
	return r, nil
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
