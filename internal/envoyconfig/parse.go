package envoyconfig

import (
	"fmt"
	"slices"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// ParseRendered reads files, what Render wrote (a sidecar's or gateway's
// ConfigMap data, keyed by file name), back into typed Resources, so the
// readers of this package (InboundTLS, UpstreamTLS) can be pointed at the config
// a pod really mounts rather than at a fresh build.
//
// It reads the files as Envoy would: YAML as JSON, every Any resolved against
// the registered types, which include every type this package packs, as its
// builders import them; an unknown field or type is an error. The bootstrap,
// lds.yaml and cds.yaml are required, the SDS files optional (a config without
// identity has none), and a file Render never writes is refused. Version is
// the version_info of lds.yaml and cds.yaml, which must agree; BootstrapVersion
// is computed from the bootstrap, as the rendered files do not carry it.
// Endpoints stay empty: Render writes none. It reads file-delivered configs
// only: under ADS the ConfigMap has no lds.yaml or cds.yaml, and is refused
// for want of them (the listeners and clusters are in the xDS snapshot).
func ParseRendered(files map[string]string) (*Resources, error) {
	for name := range files {
		if !slices.Contains([]string{BootstrapFile, ListenersFile, ClustersFile, SDSIdentityFile, SDSTrustFile}, name) {
			return nil, fmt.Errorf("parse: %q is not a file Render writes", name)
		}
	}
	for _, name := range []string{BootstrapFile, ListenersFile, ClustersFile} {
		if _, ok := files[name]; !ok {
			return nil, fmt.Errorf("parse: no %s", name)
		}
	}
	res := &Resources{Bootstrap: &bootstrapv3.Bootstrap{}}
	if err := parseRenderedYAML(files[BootstrapFile], res.Bootstrap); err != nil {
		return nil, fmt.Errorf("parse %s: %w", BootstrapFile, err)
	}
	var err error
	if res.BootstrapVersion, err = versionOf(res.Bootstrap); err != nil {
		return nil, err
	}
	var clustersVersion string
	if res.Version, res.Listeners, err = parseDiscoveryFile[*listenerv3.Listener](files, ListenersFile); err != nil {
		return nil, err
	}
	if clustersVersion, res.Clusters, err = parseDiscoveryFile[*clusterv3.Cluster](files, ClustersFile); err != nil {
		return nil, err
	}
	if clustersVersion != res.Version {
		return nil, fmt.Errorf("parse: %s is at version %q but %s at %q", ClustersFile, clustersVersion, ListenersFile, res.Version)
	}
	// Identity first, then trust, as the builders list them.
	for _, name := range []string{IdentitySecretName, TrustSecretName} {
		file := sdsFiles[name]
		if _, ok := files[file]; !ok {
			continue
		}
		_, secrets, err := parseDiscoveryFile[*tlsv3.Secret](files, file)
		if err != nil {
			return nil, err
		}
		if len(secrets) != 1 || secrets[0].GetName() != name {
			return nil, fmt.Errorf("parse %s: want the one secret %q, got %d secrets (%v)", file, name, len(secrets), secretNames(secrets))
		}
		res.Secrets = append(res.Secrets, secrets[0])
	}
	if res.FilesVersion, err = res.filesVersion(); err != nil {
		return nil, err
	}
	return res, nil
}

// parseDiscoveryFile reads files[name], a DiscoveryResponse, and unpacks each of
// its resources, which must all be Ts.
func parseDiscoveryFile[T proto.Message](files map[string]string, name string) (string, []T, error) {
	dr := &discoveryv3.DiscoveryResponse{}
	if err := parseRenderedYAML(files[name], dr); err != nil {
		return "", nil, fmt.Errorf("parse %s: %w", name, err)
	}
	out := make([]T, 0, len(dr.Resources))
	for i, a := range dr.Resources {
		m, err := a.UnmarshalNew()
		if err != nil {
			return "", nil, fmt.Errorf("parse %s: resource %d (%s): %w", name, i, a.GetTypeUrl(), err)
		}
		r, ok := m.(T)
		if !ok {
			return "", nil, fmt.Errorf("parse %s: resource %d is a %T, want %T", name, i, m, *new(T))
		}
		out = append(out, r)
	}
	return dr.VersionInfo, out, nil
}

func parseRenderedYAML(data string, m proto.Message) error {
	j, err := yaml.YAMLToJSON([]byte(data))
	if err != nil {
		return err
	}
	return protojson.Unmarshal(j, m)
}

func secretNames(secrets []*tlsv3.Secret) []string {
	names := make([]string, 0, len(secrets))
	for _, s := range secrets {
		names = append(names, s.GetName())
	}
	return names
}
