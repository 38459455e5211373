package xds

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
)

// Type URLs of the resources a snapshot holds, as Envoy names them in requests.
const (
	ListenerType = resourcev3.ListenerType
	ClusterType  = resourcev3.ClusterType
	EndpointType = resourcev3.EndpointType
	SecretType   = resourcev3.SecretType
)

// Versions are a snapshot's version per type URL.
type Versions map[string]string

// deterministic is the encoding the versions hash: map entries sorted, so equal
// resources give equal bytes on every replica running the same build.
var deterministic = proto.MarshalOptions{Deterministic: true}

// contentVersion is the first 16 hex digits of a SHA-256 over the deterministic
// encoding of ms, each preceded by its type name and length so messages cannot
// run into each other (the scheme envoyconfig uses for Resources.Version). A
// version is a pure function of content: a sidecar that reconnects to another
// replica presents a version that replica computed too, and is not pushed again.
func contentVersion[M proto.Message](ms []M) (string, error) {
	h := sha256.New()
	var buf []byte
	var lenBuf [binary.MaxVarintLen64]byte
	for _, m := range ms {
		name := m.ProtoReflect().Descriptor().FullName()
		var err error
		if buf, err = deterministic.MarshalAppend(buf[:0], m); err != nil {
			return "", fmt.Errorf("version of a %s: %w", name, err)
		}
		h.Write([]byte(name))
		h.Write(binary.AppendUvarint(lenBuf[:0], uint64(len(buf))))
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// typedResources is one type's part of a snapshot at version.
func typedResources[M types.Resource](version string, ms []M) cachev3.Resources {
	items := make([]types.Resource, len(ms))
	for i, m := range ms {
		items[i] = m
	}
	return cachev3.NewResources(version, items)
}

// snapshotOf turns a build into a snapshot. Listeners, clusters and secrets
// are at res.Version, the content hash envoyconfig computed of the three and
// the configVersion the MeshService's status shows, so an ACKed LDS or CDS
// version compares with it directly; endpoints are at res.EndpointsVersion, the
// hash of the endpoints alone, so an EndpointSlice change (res.WithEndpoints)
// pushes EDS and nothing else. Nothing is hashed here when the builder set
// both, which it always does; a hand-made Resources gets them computed the
// same way.
func snapshotOf(res *envoyconfig.Resources) (*cachev3.Snapshot, error) {
	version, endpointsVersion := res.Version, res.EndpointsVersion
	var err error
	if version == "" {
		if version, err = contentVersion(concat(res.Listeners, res.Clusters, res.Secrets)); err != nil {
			return nil, err
		}
	}
	if endpointsVersion == "" && len(res.Endpoints) > 0 {
		if endpointsVersion, err = contentVersion(res.Endpoints); err != nil {
			return nil, err
		}
	}
	snap := &cachev3.Snapshot{}
	snap.Resources[types.Listener] = typedResources(version, res.Listeners)
	snap.Resources[types.Cluster] = typedResources(version, res.Clusters)
	snap.Resources[types.Secret] = typedResources(version, res.Secrets)
	snap.Resources[types.Endpoint] = typedResources(endpointsVersion, res.Endpoints)
	return snap, consistent(snap)
}

func concat(ls []*listenerv3.Listener, cs []*clusterv3.Cluster, ss []*tlsv3.Secret) []proto.Message {
	out := make([]proto.Message, 0, len(ls)+len(cs)+len(ss))
	for _, l := range ls {
		out = append(out, l)
	}
	for _, c := range cs {
		out = append(out, c)
	}
	for _, s := range ss {
		out = append(out, s)
	}
	return out
}

// consistent refuses a snapshot whose endpoints do not match its EDS clusters
// one for one. The ADS cache answers an EDS request only once it names every
// endpoint resource of the snapshot, and Envoy names exactly its EDS clusters:
// an extra or missing ClusterLoadAssignment would leave the sidecar's clusters
// warming forever.
func consistent(snap *cachev3.Snapshot) error {
	if err := snap.Consistent(); err != nil {
		return fmt.Errorf("inconsistent snapshot: %w", err)
	}
	return nil
}

// versionsOf reads a snapshot's version per type URL.
func versionsOf(snap *cachev3.Snapshot) Versions {
	return Versions{
		ListenerType: snap.GetVersion(ListenerType),
		ClusterType:  snap.GetVersion(ClusterType),
		EndpointType: snap.GetVersion(EndpointType),
		SecretType:   snap.GetVersion(SecretType),
	}
}

// SetSnapshot makes res the config of every proxy of the MeshService or
// gateway key names (see NodeKey), pushing to its connected proxies each type
// whose version changed. res must not be modified afterwards: the snapshot
// shares its protos. For an EndpointSlice change, pass res.WithEndpoints(...)
// (or call SetEndpoints): only EDS moves.
func (s *Server) SetSnapshot(ctx context.Context, key string, res *envoyconfig.Resources) error {
	snap, err := snapshotOf(res)
	if err != nil {
		return fmt.Errorf("snapshot for %s: %w", key, err)
	}
	s.snapshotMu.Lock()
	defer s.snapshotMu.Unlock()
	return s.setLocked(ctx, key, snap)
}

// SetEndpoints replaces only the endpoints of key's snapshot, versioned by
// their content hash (res.EndpointsVersion's scheme), for a caller that does
// not keep the Resources: connected proxies are sent EDS alone. The names must
// still match the snapshot's EDS clusters one for one.
func (s *Server) SetEndpoints(ctx context.Context, key string, endpoints []*endpointv3.ClusterLoadAssignment) error {
	version, err := contentVersion(endpoints)
	if err != nil {
		return fmt.Errorf("endpoints for %s: %w", key, err)
	}
	eds := typedResources(version, endpoints)
	s.snapshotMu.Lock()
	defer s.snapshotMu.Unlock()
	current, err := s.cache.GetSnapshot(key)
	if err != nil {
		return fmt.Errorf("endpoints for %s: no snapshot to update", key)
	}
	// The other types' Resources are shared with the current snapshot; the
	// cache never modifies a snapshot, so sharing is safe.
	snap := *current.(*cachev3.Snapshot)
	snap.VersionMap = nil
	snap.Resources[types.Endpoint] = eds
	if err := consistent(&snap); err != nil {
		return fmt.Errorf("endpoints for %s: %w", key, err)
	}
	return s.setLocked(ctx, key, &snap)
}

func (s *Server) setLocked(ctx context.Context, key string, snap *cachev3.Snapshot) error {
	s.status.snapshotSet(key, versionsOf(snap))
	return s.cache.SetSnapshot(ctx, key, snap)
}

// ClearSnapshot forgets key's config once no proxy of it is connected: a
// connected proxy keeps what it has (a deleted service's pods are going away,
// a mesh switched back to ConfigMaps rolls its pods) rather than being emptied
// mid-flight. Until then a new stream for key is still served the old
// snapshot if Authorize lets it in. A later SetSnapshot cancels the clearing.
//
// (go-control-plane's own ClearSnapshot also drops the open watches, so a
// proxy connected meanwhile would never hear of a later snapshot.)
func (s *Server) ClearSnapshot(key string) {
	s.snapshotMu.Lock()
	defer s.snapshotMu.Unlock()
	s.status.clearWhenIdle(key, s.cache.ClearSnapshot)
}
