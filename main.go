// Command manager runs the envoymesh operator (controllers.NewManager) with the
// settings of its flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/envoymesh/envoymesh-operator/controllers"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/metricsauth"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
)

// DefaultEnvoyImage is the sidecar image when neither the mesh nor the service set one.
const DefaultEnvoyImage = "envoyproxy/envoy:distroless-v1.40.0"

var setupLog = ctrl.Log.WithName("setup")

func main() {
	var (
		metrics                     metricsauth.Flags
		probeAddr, pprofAddr        string
		enableLeaderElection        bool
		envoyImage, clusterDomain   string
		maxConcurrentReconciles     int
		kubeAPIQPS                  float64
		kubeAPIBurst                int
		kubeAPICompression          bool
		watchNamespaces             string
		probeInterval, probeTimeout time.Duration
		probeConcurrency            int
		trustDomain, caSecret       string
		xds                         xdsFlags
	)
	metricsauth.BindFlags(flag.CommandLine, &metrics)
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "The address the probe endpoint binds to.")
	flag.StringVar(&pprofAddr, "pprof-bind-address", "0",
		"The address Go's pprof endpoints bind to, for profiling the manager; \"0\" disables them.")
	flag.BoolVar(&enableLeaderElection, "leader-elect", false,
		"Enable leader election for controller manager. Enabling this will ensure there is only one active controller manager.")
	flag.StringVar(&envoyImage, "envoy-image", DefaultEnvoyImage, "The Envoy sidecar image used when the mesh and the MeshService set none.")
	flag.StringVar(&clusterDomain, "cluster-domain", "cluster.local", "The cluster's DNS domain, used in upstream addresses.")
	flag.IntVar(&maxConcurrentReconciles, "max-concurrent-reconciles", 8, "MeshServices reconciled in parallel.")
	flag.Float64Var(&kubeAPIQPS, "kube-api-qps", 50, "Sustained queries per second to the API server.")
	flag.IntVar(&kubeAPIBurst, "kube-api-burst", 100, "Burst of queries to the API server.")
	flag.BoolVar(&kubeAPICompression, "kube-api-compression", false,
		"Ask the API server to gzip its responses. Off by default: the manager runs next to the API server, "+
			"and gzip costs it CPU on every watch event it sends.")
	flag.StringVar(&watchNamespaces, "watch-namespaces", os.Getenv("WATCH_NAMESPACE"),
		"Comma-separated namespaces to watch; empty watches all. Defaults to $WATCH_NAMESPACE, which OLM sets from the OperatorGroup.")
	flag.DurationVar(&probeInterval, "probe-interval", prober.DefaultInterval, "How often every sidecar's admin API is probed.")
	flag.DurationVar(&probeTimeout, "probe-timeout", prober.DefaultTimeout, "How long one sidecar's probe may take before it counts as unreachable.")
	flag.IntVar(&probeConcurrency, "probe-concurrency", prober.DefaultConcurrency, "How many sidecars are probed at once.")
	flag.StringVar(&trustDomain, "trust-domain", "cluster.local",
		"The SPIFFE trust domain of the workload identities: spiffe://<trust domain>/ns/<namespace>/sa/<serviceAccount>.")
	flag.StringVar(&caSecret, "identity-ca-secret", "",
		"<namespace>/<name> of an existing CA Secret (tls.crt, tls.key, optional ca.crt, as cert-manager writes them) that signs "+
			"the workload identities; the operator only reads it. Empty: a CA is generated in Secret "+
			controllers.DefaultCASecretName+" of $POD_NAMESPACE.")
	flag.StringVar(&xds.bindAddress, "xds-bind-address", ":18000",
		"The address the ADS server of meshes whose spec.delivery is XDS binds to, on every replica; empty runs none.")
	flag.StringVar(&xds.service, "xds-service", "envoymesh-xds",
		"The Service, in $POD_NAMESPACE, in front of every replica's ADS server: what the sidecars' bootstraps dial.")
	flag.IntVar(&xds.port, "xds-port", 18000, "The port of --xds-service.")
	flag.StringVar(&xds.host, "xds-host", "",
		"A host the bootstraps dial instead of <xds-service>.<namespace>.svc.<cluster-domain> (a manager run outside the cluster).")
	flag.StringVar(&xds.serviceAccount, "xds-service-account", os.Getenv("POD_SERVICE_ACCOUNT"),
		"The manager's ServiceAccount, whose SPIFFE ID the ADS server's certificate carries. Defaults to $POD_SERVICE_ACCOUNT (the downward API's spec.serviceAccountName).")
	flag.StringVar(&xds.replica, "xds-replica", defaultReplica(),
		"This replica's name, which names the report of its ADS streams that the leader reads. Defaults to $POD_NAME, else the host name.")
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))

	identity, err := identityOptions(trustDomain, caSecret, os.Getenv("POD_NAMESPACE"))
	if err != nil {
		setupLog.Error(err, "invalid identity settings")
		os.Exit(1)
	}

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS = float32(kubeAPIQPS)
	cfg.Burst = kubeAPIBurst
	cfg.DisableCompression = !kubeAPICompression

	mgr, err := controllers.NewManager(cfg, controllers.ManagerOptions{
		Manager: ctrl.Options{
			Metrics:                metricsauth.ServerOptions(metrics),
			HealthProbeBindAddress: probeAddr,
			PprofBindAddress:       pprofAddr,
			LeaderElection:         enableLeaderElection,
			LeaderElectionID:       "envoymesh-operator.mesh.envoymesh.io",
			// In a pod controller-runtime finds its namespace itself; outside the
			// cluster (make demo, make run) the Lease goes where POD_NAMESPACE says.
			LeaderElectionNamespace: os.Getenv("POD_NAMESPACE"),
		},
		Namespaces:              namespaceList(watchNamespaces),
		EnvoyImage:              envoyImage,
		ClusterDomain:           clusterDomain,
		MaxConcurrentReconciles: maxConcurrentReconciles,
		Probe:                   prober.Options{Interval: probeInterval, Timeout: probeTimeout, Concurrency: probeConcurrency},
		Identity:                identity,
		XDS:                     xds.options(os.Getenv("POD_NAMESPACE")),
	})
	if err != nil {
		setupLog.Error(err, "unable to create manager")
		os.Exit(1)
	}

	setupLog.Info("starting manager", "envoyImage", envoyImage, "clusterDomain", clusterDomain, "watchNamespaces", watchNamespaces,
		"metricsBindAddress", metrics.BindAddress, "metricsSecure", metrics.Secure)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "problem running manager")
		os.Exit(1)
	}
}

// identityOptions checks the identity flags: a valid trust domain, and a CA
// Secret either named by the flag or generated in the manager's own namespace.
func identityOptions(trustDomain, caSecret, podNamespace string) (controllers.IdentityOptions, error) {
	o := controllers.IdentityOptions{TrustDomain: trustDomain}
	if err := identity.ValidateTrustDomain(trustDomain); err != nil {
		return o, fmt.Errorf("--trust-domain: %w", err)
	}
	if caSecret != "" {
		ns, name, ok := strings.Cut(caSecret, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return o, fmt.Errorf("--identity-ca-secret %q: want <namespace>/<name>", caSecret)
		}
		o.CASecret = types.NamespacedName{Namespace: ns, Name: name}
		return o, nil
	}
	if podNamespace == "" {
		return o, errors.New("the manager's namespace is unknown: set POD_NAMESPACE (config/manager sets it from the downward API) or --identity-ca-secret")
	}
	o.CASecret = types.NamespacedName{Namespace: podNamespace, Name: controllers.DefaultCASecretName}
	o.GenerateCA = true
	return o, nil
}

// xdsFlags are the ADS server's flags.
type xdsFlags struct {
	bindAddress, service, host, serviceAccount, replica string
	port                                                int
}

// defaultReplica is the pod's name (the downward API's POD_NAME), else the
// host's: unique per replica either way.
func defaultReplica() string {
	if name := os.Getenv("POD_NAME"); name != "" {
		return name
	}
	host, _ := os.Hostname()
	return strings.ToLower(host)
}

// options are the flags as the manager takes them: the Service lives in the
// manager's own namespace.
func (f xdsFlags) options(podNamespace string) controllers.XDSOptions {
	return controllers.XDSOptions{
		BindAddress:    f.bindAddress,
		Service:        types.NamespacedName{Namespace: podNamespace, Name: f.service},
		Port:           int32(min(f.port, 1<<16)), // XDSOptions.validate names a bad port
		Host:           f.host,
		ServiceAccount: f.serviceAccount,
		Replica:        f.replica,
	}
}

// namespaceList turns "a, b" into [a b]; empty means every namespace, which is
// what the AllNamespaces install mode asks for.
func namespaceList(list string) []string {
	var out []string
	for _, ns := range strings.Split(list, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}
