package scoped

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
	// watched is the one namespace the manager watches; unwatched exists, and
	// the manager does not see it.
	watched, unwatched string
	managerDone        chan struct{}
	// managerLog holds everything the manager logged, reconcile errors included.
	managerLog syncBuffer
)

// syncBuffer is a bytes.Buffer safe for the manager's goroutines to write to
// while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Since is what was written after the first n bytes.
func (b *syncBuffer) Since(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()[n:]
}

// Len is how much was written.
func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

func TestScoped(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Namespace-scoped Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(GinkgoWriter, &managerLog)), zap.UseDevMode(true)))
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

	watched, unwatched = "watched-"+rand.String(6), "other-"+rand.String(6)
	for _, ns := range []string{watched, unwatched} {
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}

	// The operator as OLM's OwnNamespace mode runs it: WATCH_NAMESPACE=watched.
	// One worker, so that requests are served in the order they were queued.
	mgr, err := controllers.NewManager(cfg, controllers.ManagerOptions{
		Manager:                 ctrl.Options{Scheme: scheme.Scheme, Metrics: metricsserver.Options{BindAddress: "0"}},
		Namespaces:              []string{watched},
		EnvoyImage:              "envoy:test",
		ClusterDomain:           "cluster.local",
		MaxConcurrentReconciles: 1,
		// Nothing answers: no sidecar runs here.
		Probe: prober.Options{Interval: time.Hour},
	})
	Expect(err).NotTo(HaveOccurred())
	managerDone = make(chan struct{})
	go func() {
		defer GinkgoRecover()
		defer close(managerDone)
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
})

var _ = AfterSuite(func() {
	cancel()
	if managerDone != nil {
		Eventually(managerDone).WithTimeout(30 * time.Second).Should(BeClosed())
	}
	Expect(testEnv.Stop()).To(Succeed())
})
