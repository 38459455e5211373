package controllers

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/identity"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
)

// These tests run the real controllers against a real kube-apiserver and etcd
// (envtest). There is no kubelet or controller-manager: the tests play their part
// (Deployment status, pods) where a scenario needs it.

const (
	testEnvoyImage = "envoyproxy/envoy:distroless-v1.40.0"
	// probeInterval is short so sidecar changes show within seconds.
	probeInterval = 300 * time.Millisecond
)

// managerNamespace holds the identity CA Secret, as the manager's own namespace would.
const managerNamespace = "envoymesh-system"

// suiteManager is the manager the suite runs: specs may look into its cache.
var suiteManager ctrl.Manager

// conflictRetry is how often a MeshService or ServiceMesh that a foreign object
// blocks looks again.
const conflictRetry = time.Second

// bundlePropagation is how long a new CA waits for its bundle to reach the pods
// before it signs: short, so the CA change spec sees the switch.
const bundlePropagation = 3 * time.Second

// suiteCA is the CA the suite gave the manager.
var suiteCA *identity.CA

// statusPort is where the stub sidecars listen, on each pod's loopback IP. A free
// port rather than 15021 keeps parallel test runs on one machine apart.
var statusPort int

var (
	cfg       *rest.Config
	k8sClient client.Client
	testEnv   *envtest.Environment
	ctx       context.Context
	cancel    context.CancelFunc
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controller Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.Background())

	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases"), filepath.Join("testdata", "crds")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	Expect(cfg).NotTo(BeNil())

	Expect(meshv1alpha1.AddToScheme(scheme.Scheme)).To(Succeed())
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme.Scheme})
	Expect(err).NotTo(HaveOccurred())

	// The CA Secret exists before the manager starts, as a CA someone else made
	// would: the manager must use it, not generate its own.
	Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}})).To(Succeed())
	suiteCA, err = identity.GenerateCA("cluster.local", time.Now())
	Expect(err).NotTo(HaveOccurred())
	caData, err := suiteCA.SecretData()
	Expect(err).NotTo(HaveOccurred())
	Expect(k8sClient.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: DefaultCASecretName}, Type: corev1.SecretTypeTLS, Data: caData,
	})).To(Succeed())

	statusPort = freePort()
	xdsPort, health := freePort(), freePort()
	suiteXDSTarget = fmt.Sprintf("127.0.0.1:%d", xdsPort)
	mgr, err := NewManager(cfg, ManagerOptions{
		Manager: ctrl.Options{Scheme: scheme.Scheme, Metrics: metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: fmt.Sprintf("127.0.0.1:%d", health)},
		EnvoyImage:    testEnvoyImage,
		ClusterDomain: "cluster.local",
		Probe:         prober.Options{Interval: probeInterval, Timeout: 2 * time.Second, Concurrency: 8, Port: statusPort},
		// A blocked owner looks again this often (no event comes when an
		// unlabelled foreign object is deleted): well inside the specs' timeouts.
		ConflictRetry: conflictRetry,
		Identity: IdentityOptions{
			TrustDomain: "cluster.local", GenerateCA: true, BundlePropagation: bundlePropagation,
			CASecret: suiteCASecret(),
		},
		XDS: suiteXDSOptions(xdsPort),
	})
	Expect(err).NotTo(HaveOccurred())
	suiteManager = mgr

	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	// Ready: among others the xDS server has its certificate, so a simulated
	// proxy (which, unlike Envoy, does not retry) is not refused a handshake.
	waitReady(health)
})

// waitReady waits until a manager's readiness endpoint on 127.0.0.1:port says so.
func waitReady(port int) {
	EventuallyWithOffset(1, func(g Gomega) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port))
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	}, "60s").Should(Succeed())
}

// suiteXDSTarget is where the suite's manager serves ADS.
var suiteXDSTarget string

// xdsManagerServiceAccount is the manager's ServiceAccount, as the suite tells it.
const xdsManagerServiceAccount = "envoymesh-controller-manager"

func suiteCASecret() types.NamespacedName {
	return types.NamespacedName{Namespace: managerNamespace, Name: DefaultCASecretName}
}

// suiteXDSOptions serve ADS on 127.0.0.1:port, which bootstraps dial.
func suiteXDSOptions(port int) XDSOptions {
	return XDSOptions{
		BindAddress: fmt.Sprintf("127.0.0.1:%d", port), Host: "127.0.0.1", Port: int32(port),
		Service:        types.NamespacedName{Namespace: managerNamespace, Name: "envoymesh-xds"},
		ServiceAccount: xdsManagerServiceAccount,
		Replica:        fmt.Sprintf("replica-%d", port),
	}
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var _ = AfterSuite(func() {
	cancel()
	Expect(testEnv.Stop()).To(Succeed())
})
