package controllers

import (
	"context"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
)

// countingClient counts the writes that succeeded and failed, so a test can tell
// which of several managers did the work.
type countingClient struct {
	client.Client
	applied, failed *atomic.Int32
}

func (c countingClient) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	return c.count(c.Client.Apply(ctx, obj, opts...))
}

// Patch is how applyOwned sends its applies.
func (c countingClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	return c.count(c.Client.Patch(ctx, obj, patch, opts...))
}

func (c countingClient) count(err error) error {
	if err != nil {
		c.failed.Add(1)
	} else {
		c.applied.Add(1)
	}
	return err
}

type extraManager struct {
	applied, failed atomic.Int32
	cancel          context.CancelFunc
	done            chan struct{}
	elected         <-chan struct{}
}

// startManager runs a second operator, wired as main.go wires it, against the
// suite's API server, watching only ns, as the user behind restCfg.
func startManager(restCfg *rest.Config, ns string, leaderElect bool) *extraManager {
	m := &extraManager{done: make(chan struct{})}
	mgr, err := NewManager(restCfg, ManagerOptions{
		Manager: ctrl.Options{
			Scheme:                  scheme.Scheme,
			Metrics:                 metricsserver.Options{BindAddress: "0"},
			Controller:              config.Controller{SkipNameValidation: ptr.To(true)},
			LeaderElection:          leaderElect,
			LeaderElectionID:        "envoymesh-operator-test",
			LeaderElectionNamespace: ns,
			LeaseDuration:           ptr.To(2 * time.Second),
			RenewDeadline:           ptr.To(1 * time.Second),
			RetryPeriod:             ptr.To(200 * time.Millisecond),
		},
		Namespaces:    []string{ns},
		EnvoyImage:    testEnvoyImage,
		ClusterDomain: "cluster.local",
		Probe:         prober.Options{Port: statusPort},
		WrapClient: func(c client.Client) client.Client {
			return countingClient{Client: c, applied: &m.applied, failed: &m.failed}
		},
	})
	Expect(err).NotTo(HaveOccurred())
	m.elected = mgr.Elected()
	var mctx context.Context
	mctx, m.cancel = context.WithCancel(ctx)
	go func() {
		defer GinkgoRecover()
		defer close(m.done)
		Expect(mgr.Start(mctx)).To(Succeed())
	}()
	DeferCleanup(m.stop)
	return m
}

func (m *extraManager) stop() {
	m.cancel()
	<-m.done
}

var _ = Describe("Hardening", func() {
	BeforeEach(func() {
		SetDefaultEventuallyTimeout(30 * time.Second)
		SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	})

	It("works with only namespaced permissions when it watches one namespace", func() {
		ns := newNamespace()
		user, err := testEnv.AddUser(envtest.User{Name: "envoymesh-namespaced"}, cfg)
		Expect(err).NotTo(HaveOccurred())

		By("granting the ClusterRole's rules as a Role in the namespace only")
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "manager"}, Rules: loadClusterRole(GinkgoT()).Rules}
		Expect(k8sClient.Create(ctx, role)).To(Succeed())
		Expect(k8sClient.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "manager"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "manager"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "envoymesh-namespaced"}},
		})).To(Succeed())
		Expect(k8sClient.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "leases"},
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"},
				Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}}})).To(Succeed())

		m := startManager(user.Config(), ns, false)
		Expect(k8sClient.Create(ctx, meshService(ns, "web", 8080, 15006))).To(Succeed())
		Eventually(m.applied.Load).Should(BeNumerically(">=", 3), "ConfigMap, Service and Deployment applied")
		Consistently(m.failed.Load, 2*time.Second).Should(BeZero())

		By("and the same user is refused outside its namespace")
		other := newNamespace()
		c, err := client.New(user.Config(), client.Options{Scheme: scheme.Scheme})
		Expect(err).NotTo(HaveOccurred())
		err = c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "x"}})
		Expect(err).To(MatchError(ContainSubstring("forbidden")))
	})

	It("lets only the elected leader write, and fails over when it stops", func() {
		ns := newNamespace()
		a := startManager(cfg, ns, true)
		b := startManager(cfg, ns, true)
		var leader, follower *extraManager
		Eventually(func() bool {
			select {
			case <-a.elected:
				leader, follower = a, b
			case <-b.elected:
				leader, follower = b, a
			default:
				return false
			}
			return true
		}).Should(BeTrue())

		Expect(k8sClient.Create(ctx, meshService(ns, "web", 8080, 15006))).To(Succeed())
		Eventually(leader.applied.Load).Should(BeNumerically(">=", 3))
		Consistently(follower.applied.Load, 2*time.Second).Should(BeZero())

		By("the leader stops; the follower takes over and converges a change")
		leader.stop()
		Eventually(follower.elected, 15*time.Second).Should(BeClosed())
		update(meshServiceKey(ns, "web"), func(ms *meshv1alpha1.MeshService) { ms.Spec.Replicas = ptr.To[int32](2) })
		Eventually(follower.applied.Load).Should(BeNumerically(">=", 1))
	})
})
