package faults

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/controllers"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
)

var (
	cfg       *rest.Config
	k8sClient client.Client
	testEnv   *envtest.Environment
	ctx       context.Context
	cancel    context.CancelFunc
)

func TestFaults(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Fault Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.Background())
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	Expect(meshv1alpha1.AddToScheme(scheme.Scheme)).To(Succeed())
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme.Scheme})
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	cancel()
	Expect(testEnv.Stop()).To(Succeed())
})

// operator is one run of the manager, as main.go wires it, on namespace ns.
type operator struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startOperator runs the MeshService controller (and, with probe set, the
// sidecar prober with those options) until stopped.
func startOperator(ns string, probe *prober.Options) *operator {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:     scheme.Scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Cache:      cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	Expect(err).NotTo(HaveOccurred())
	r := &controllers.MeshServiceReconciler{
		Client:                  mgr.GetClient(),
		Recorder:                mgr.GetEventRecorder("envoymesh-operator"),
		ClusterDomain:           "cluster.local",
		DefaultSidecar:          objects.DefaultSidecar("envoy:test"),
		MaxConcurrentReconciles: 4,
	}
	if probe != nil {
		p := prober.New(mgr.GetClient(), nil, *probe)
		Expect(mgr.Add(p)).To(Succeed())
		r.Sidecars, r.SidecarEvents = p, p.Events()
	}
	Expect(r.SetupWithManager(mgr)).To(Succeed())
	op := &operator{done: make(chan struct{})}
	var mctx context.Context
	mctx, op.cancel = context.WithCancel(ctx)
	go func() {
		defer GinkgoRecover()
		defer close(op.done)
		Expect(mgr.Start(mctx)).To(Succeed())
	}()
	DeferCleanup(op.stop)
	return op
}

func (o *operator) stop() {
	o.cancel()
	select {
	case <-o.done:
	case <-time.After(30 * time.Second):
		Fail("manager did not stop")
	}
}
