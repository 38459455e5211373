// Command manager runs the envoymesh operator: the MeshService and ServiceMesh
// controllers and the sidecar prober.
package main

import (
	"flag"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/controllers"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
)

// DefaultEnvoyImage is the sidecar image when neither the mesh nor the service set one.
const DefaultEnvoyImage = "envoyproxy/envoy:distroless-v1.40.0"

var (
	scheme   = runtime.NewScheme()
	setupLog = ctrl.Log.WithName("setup")
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(meshv1alpha1.AddToScheme(scheme))
}

func main() {
	var (
		metricsAddr, probeAddr      string
		pprofAddr                   string
		enableLeaderElection        bool
		envoyImage, clusterDomain   string
		maxConcurrentReconciles     int
		kubeAPIQPS                  float64
		kubeAPIBurst                int
		kubeAPICompression          bool
		watchNamespaces             string
		probeInterval, probeTimeout time.Duration
		probeConcurrency            int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "The address the metric endpoint binds to.")
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
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS = float32(kubeAPIQPS)
	cfg.Burst = kubeAPIBurst
	cfg.DisableCompression = !kubeAPICompression

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		PprofBindAddress:       pprofAddr,
		LeaderElection:         enableLeaderElection,
		LeaderElectionID:       "envoymesh-operator.mesh.envoymesh.io",
		Cache: cache.Options{
			DefaultNamespaces: namespaceConfig(watchNamespaces),
			// The prober only needs meshed pods; caching every pod would cost memory.
			ByObject:         map[client.Object]cache.ByObject{&corev1.Pod{}: {Label: meshedPods()}},
			DefaultTransform: stripForCache,
		},
	})
	if err != nil {
		setupLog.Error(err, "unable to create manager")
		os.Exit(1)
	}

	sidecars := prober.New(mgr.GetClient(), nil, prober.Options{
		Interval: probeInterval, Timeout: probeTimeout, Concurrency: probeConcurrency,
	})
	gateways := prober.New(mgr.GetClient(), nil, prober.Options{
		Interval: probeInterval, Timeout: probeTimeout, Concurrency: probeConcurrency, OwnerLabel: objects.GatewayLabel,
	})
	for _, p := range []*prober.Prober{sidecars, gateways} {
		if err := mgr.Add(p); err != nil {
			setupLog.Error(err, "unable to add a prober")
			os.Exit(1)
		}
	}

	if err := (&controllers.MeshServiceReconciler{
		Client:                  mgr.GetClient(),
		Recorder:                mgr.GetEventRecorder("envoymesh-operator"),
		ClusterDomain:           clusterDomain,
		DefaultSidecar:          objects.DefaultSidecar(envoyImage),
		MaxConcurrentReconciles: maxConcurrentReconciles,
		Sidecars:                sidecars,
		SidecarEvents:           sidecars.Events(),
	}).SetupWithManager(mgr); err != nil {
		setupLog.Error(err, "unable to create controller", "controller", "MeshService")
		os.Exit(1)
	}

	if err := (&controllers.ServiceMeshReconciler{
		Client:         mgr.GetClient(),
		Recorder:       mgr.GetEventRecorder("envoymesh-operator"),
		ClusterDomain:  clusterDomain,
		DefaultSidecar: objects.DefaultSidecar(envoyImage),
		Gateways:       gateways,
		GatewayEvents:  gateways.Events(),
	}).SetupWithManager(mgr); err != nil {
		setupLog.Error(err, "unable to create controller", "controller", "ServiceMesh")
		os.Exit(1)
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		setupLog.Error(err, "unable to set up health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		setupLog.Error(err, "unable to set up ready check")
		os.Exit(1)
	}

	setupLog.Info("starting manager", "envoyImage", envoyImage, "clusterDomain", clusterDomain, "watchNamespaces", watchNamespaces)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		setupLog.Error(err, "problem running manager")
		os.Exit(1)
	}
}

// meshedPods selects the pods the operator runs (MeshService and gateway pods),
// the only ones the probers need.
func meshedPods() labels.Selector {
	return labels.SelectorFromSet(labels.Set{objects.ManagedByLabel: objects.ManagedBy})
}

// stripForCache drops the managedFields of every object, which the operator never
// reads from its cache. ConfigMaps, whose data it never reads back either, are
// watched as metadata only (see the controllers), so their data does not reach
// the cache at all. Both cut peak RSS at scale (docs/benchmarks.md).
func stripForCache(obj any) (any, error) {
	if o, ok := obj.(client.Object); ok {
		o.SetManagedFields(nil)
	}
	return obj, nil
}

// namespaceConfig turns "a,b" into the cache's per-namespace config; empty means
// every namespace (nil), which is what AllNamespaces install mode asks for.
func namespaceConfig(list string) map[string]cache.Config {
	var out map[string]cache.Config
	for _, ns := range strings.Split(list, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			if out == nil {
				out = map[string]cache.Config{}
			}
			out[ns] = cache.Config{}
		}
	}
	return out
}
