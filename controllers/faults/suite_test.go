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
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/controllers"
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

// startOperator runs the operator as main.go wires it, watching ns (with probe
// set, its probers use those options) until stopped.
func startOperator(ns string, probe *prober.Options) *operator {
	o := controllers.ManagerOptions{
		Manager: ctrl.Options{
			Scheme:     scheme.Scheme,
			Metrics:    metricsserver.Options{BindAddress: "0"},
			Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		},
		Namespaces:              []string{ns},
		EnvoyImage:              "envoy:test",
		ClusterDomain:           "cluster.local",
		MaxConcurrentReconciles: 4,
	}
	if probe != nil {
		o.Probe = *probe
	} else {
		// Nothing answers on this port: the probers find no pods to probe
		// until a test runs some, and then see them unreachable.
		o.Probe = prober.Options{Interval: time.Hour}
	}
	mgr, err := controllers.NewManager(cfg, o)
	Expect(err).NotTo(HaveOccurred())
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
