package envoyconfig

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// renderedFiles are out's files as the ConfigMap holds them: the SDS files only
// when rendered.
func renderedFiles(out *Output) map[string]string {
	files := map[string]string{
		BootstrapFile: string(out.Bootstrap),
		ListenersFile: string(out.Listeners),
		ClustersFile:  string(out.Clusters),
	}
	if len(out.SDSIdentity) > 0 {
		files[SDSIdentityFile] = string(out.SDSIdentity)
	}
	if len(out.SDSTrust) > 0 {
		files[SDSTrustFile] = string(out.SDSTrust)
	}
	return files
}

func equalMessages[M proto.Message](a, b []M) bool {
	return slices.EqualFunc(a, b, func(x, y M) bool { return proto.Equal(x, y) })
}

// checkRoundTrip holds ParseRendered(Render(res)) equal to res, message by
// message and in both versions: what the readers find in a ConfigMap is what
// was built.
func checkRoundTrip(t *testing.T, res *Resources) *Resources {
	t.Helper()
	got, err := ParseRendered(renderedFiles(mustRender(t, res)))
	if err != nil {
		t.Fatalf("ParseRendered: %v", err)
	}
	if !proto.Equal(got.Bootstrap, res.Bootstrap) {
		t.Error("the bootstrap differs after the round trip")
	}
	if !equalMessages(got.Listeners, res.Listeners) || !equalMessages(got.Clusters, res.Clusters) || !equalMessages(got.Secrets, res.Secrets) {
		t.Errorf("the resources differ after the round trip: %d/%d listeners, %d/%d clusters, %d/%d secrets",
			len(got.Listeners), len(res.Listeners), len(got.Clusters), len(res.Clusters), len(got.Secrets), len(res.Secrets))
	}
	if len(got.Endpoints) != 0 {
		t.Errorf("%d endpoints from files that carry none", len(got.Endpoints))
	}
	if got.Version != res.Version || got.BootstrapVersion != res.BootstrapVersion {
		t.Errorf("versions %s/%s after the round trip, want %s/%s", got.Version, got.BootstrapVersion, res.Version, res.BootstrapVersion)
	}
	// The versions are hashes of the parsed messages' encoding, so equal
	// versions also prove every Any came back with the very bytes it was built with.
	if again, err := (&Resources{Bootstrap: got.Bootstrap, Listeners: got.Listeners, Clusters: got.Clusters, Secrets: got.Secrets}).versioned(); err != nil {
		t.Fatal(err)
	} else if again.Version != res.Version {
		t.Errorf("the parsed resources hash to %s, want %s", again.Version, res.Version)
	}
	return got
}

func TestParseRenderedRoundTrips(t *testing.T) {
	opts := Options{ClusterDomain: "cluster.local"}
	sidecar := func(t *testing.T, svc Service) *Resources {
		t.Helper()
		res, err := BuildSidecar(svc, opts)
		if err != nil {
			t.Fatalf("BuildSidecar: %v", err)
		}
		return res
	}
	t.Run("seed", func(t *testing.T) {
		mss := seedMesh()
		for _, ms := range mss {
			checkRoundTrip(t, sidecar(t, ServiceFor(ms, foundMap(mss...), nil)))
		}
	})
	t.Run("features", func(t *testing.T) {
		caller, found, mesh := featureMesh()
		checkRoundTrip(t, sidecar(t, ServiceFor(caller, found, mesh)))
	})
	t.Run("security-modes", func(t *testing.T) {
		for _, tc := range securityGoldenCases {
			principals := tc.principals
			if principals == nil {
				principals = []string{spiffeC, spiffeA}
			}
			res := sidecar(t, secureService(tc.p, tc.mtls, tc.authz, principals...))
			got := checkRoundTrip(t, res)
			want, err := InboundTLS(res)
			if err != nil {
				t.Fatal(err)
			}
			if info, err := InboundTLS(got); err != nil {
				t.Errorf("%s/%s/%s: InboundTLS of the parsed config: %v", tc.p, tc.mtls, tc.authz, err)
			} else if d := cmp.Diff(want, info); d != "" {
				t.Errorf("%s/%s/%s: InboundTLS of the parsed config (-built +parsed):\n%s", tc.p, tc.mtls, tc.authz, d)
			}
		}
	})
	t.Run("egress", func(t *testing.T) {
		res := sidecar(t, meshCaller())
		got := checkRoundTrip(t, res)
		for _, up := range []string{"web", "api", "payments", "cache"} {
			want, err := UpstreamTLS(res, UpstreamClusterName(up, "shop"))
			if err != nil {
				t.Fatal(err)
			}
			info, err := UpstreamTLS(got, UpstreamClusterName(up, "shop"))
			if err != nil {
				t.Fatalf("UpstreamTLS %s of the parsed config: %v", up, err)
			}
			if d := cmp.Diff(want, info); d != "" {
				t.Errorf("UpstreamTLS %s of the parsed config (-built +parsed):\n%s", up, d)
			}
		}
	})
	t.Run("gateway", func(t *testing.T) {
		target := httpTarget(8786)
		target.Peer = &Peer{SPIFFEID: "spiffe://cluster.local/ns/default/sa/service-a", SNI: "service-a.default.svc.cluster.local"}
		res, err := BuildGateway(Gateway{Name: "default", Namespace: "default", ListenPort: GatewayListenPort,
			Routes:   []GatewayRoute{{Prefix: "/", Name: "service-a", Namespace: "default", Target: target}},
			Security: &Security{MTLS: v1alpha1.MTLSStrict, Authorization: v1alpha1.AuthorizationEnforce}}, opts)
		if err != nil {
			t.Fatal(err)
		}
		checkRoundTrip(t, res)
	})
}

// TestParseRenderedReadsTheGoldenFiles reads checked-in files, not a fresh
// render: the egress golden's clusters tell what the built caller's do.
func TestParseRenderedReadsTheGoldenFiles(t *testing.T) {
	dir := filepath.Join("testdata", "security", "egress")
	files := map[string]string{}
	for _, name := range []string{BootstrapFile, ListenersFile, ClustersFile, SDSIdentityFile, SDSTrustFile} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(data)
	}
	got, err := ParseRendered(files)
	if err != nil {
		t.Fatal(err)
	}
	res, err := BuildSidecar(meshCaller(), Options{ClusterDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != res.Version {
		t.Errorf("golden version %s, built %s", got.Version, res.Version)
	}
	want, err := UpstreamTLS(res, UpstreamClusterName("payments", "shop"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := UpstreamTLS(got, UpstreamClusterName("payments", "shop"))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, info); d != "" {
		t.Errorf("UpstreamTLS of the golden files (-built +golden):\n%s", d)
	}
}

func TestParseRenderedRefuses(t *testing.T) {
	res, err := BuildSidecar(meshCaller(), Options{ClusterDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	good := renderedFiles(mustRender(t, res))
	for _, tc := range []struct {
		name, want string
		edit       func(map[string]string)
	}{
		{"no listeners", "no lds.yaml", func(f map[string]string) { delete(f, ListenersFile) }},
		{"no bootstrap", "no envoy.yaml", func(f map[string]string) { delete(f, BootstrapFile) }},
		{"a stranger file", `"rds.yaml" is not a file Render writes`, func(f map[string]string) { f["rds.yaml"] = "{}" }},
		{"versions apart", "cds.yaml is at version", func(f map[string]string) {
			f[ClustersFile] = strings.Replace(f[ClustersFile], "version_info: "+res.Version, "version_info: other", 1)
		}},
		{"clusters as listeners", "want *listenerv3.Listener", func(f map[string]string) { f[ListenersFile] = f[ClustersFile] }},
		{"a secret in the other's file", `want the one secret "identity"`, func(f map[string]string) { f[SDSIdentityFile] = f[SDSTrustFile] }},
		{"an unknown field", "unknown field", func(f map[string]string) {
			f[ListenersFile] = strings.Replace(f[ListenersFile], "\nversion_info:", "\nno_such_field: 1\nversion_info:", 1)
		}},
		{"an unknown type", "resolve", func(f map[string]string) {
			f[ClustersFile] = strings.Replace(f[ClustersFile], "type.googleapis.com/envoy.config.cluster.v3.Cluster", "type.googleapis.com/envoy.config.cluster.v3.Nope", 1)
		}},
		{"not YAML", "parse envoy.yaml", func(f map[string]string) { f[BootstrapFile] = "a: [" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := make(map[string]string, len(good))
			for k, v := range good {
				files[k] = v
			}
			tc.edit(files)
			if _, err := ParseRendered(files); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	t.Run("no SDS files", func(t *testing.T) {
		files := map[string]string{}
		for _, name := range []string{BootstrapFile, ListenersFile, ClustersFile} {
			files[name] = good[name]
		}
		got, err := ParseRendered(files)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Secrets) != 0 {
			t.Errorf("%d secrets without SDS files", len(got.Secrets))
		}
		// The readers then say which secret nothing delivers.
		if _, err := UpstreamTLS(got, UpstreamClusterName("web", "shop")); err == nil || !strings.Contains(err.Error(), `no secret "identity"`) {
			t.Errorf("UpstreamTLS without SDS files: error %v", err)
		}
	})
}
