package faults

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
	"github.com/envoymesh/envoymesh-operator/internal/prober"
)

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "f-" + rand.String(8)}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

// meshService i calls service i+1 (mod n), so every change fans out to a caller.
func meshService(ns string, i, n int) *meshv1alpha1.MeshService {
	return &meshv1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("svc-%03d", i)},
		Spec: meshv1alpha1.MeshServiceSpec{
			Port: 8080, ServicePort: 15006,
			Upstreams: []meshv1alpha1.Upstream{{Name: fmt.Sprintf("svc-%03d", (i+1)%n), LocalPort: 9000}},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "app", Image: "example.com/app:0",
			}}}},
		},
	}
}

// mismatches lists every MeshService in ns whose owned objects or status do not
// match its current spec: each one is a lost update.
func mismatches(ns string) []string {
	var list meshv1alpha1.MeshServiceList
	Expect(k8sClient.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
	var out []string
	for i := range list.Items {
		ms := &list.Items[i]
		key := client.ObjectKeyFromObject(ms)
		dep, svc, cm, sa := &appsv1.Deployment{}, &corev1.Service{}, &corev1.ConfigMap{}, &corev1.ServiceAccount{}
		switch {
		case k8sClient.Get(ctx, key, sa) != nil || !metav1.IsControlledBy(sa, ms):
			out = append(out, key.Name+": ServiceAccount missing or not owned by this MeshService")
		case k8sClient.Get(ctx, key, dep) != nil:
			out = append(out, key.Name+": no Deployment")
		case ptr.Deref(dep.Spec.Replicas, -1) != ptr.Deref(ms.Spec.Replicas, 1):
			out = append(out, fmt.Sprintf("%s: replicas %d, want %d", key.Name, ptr.Deref(dep.Spec.Replicas, -1), ptr.Deref(ms.Spec.Replicas, 1)))
		case dep.Spec.Template.Spec.Containers[0].Image != ms.Spec.Template.Spec.Containers[0].Image:
			out = append(out, key.Name+": stale image")
		case len(dep.OwnerReferences) != 1 || dep.OwnerReferences[0].UID != ms.UID:
			out = append(out, key.Name+": Deployment not owned by this MeshService")
		case k8sClient.Get(ctx, key, svc) != nil || svc.Spec.Ports[0].Port != ms.Spec.ServicePort:
			out = append(out, key.Name+": Service missing or stale")
		case k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: key.Name + "-envoy"}, cm) != nil:
			out = append(out, key.Name+": no ConfigMap")
		case cm.Annotations[objects.ConfigVersionAnnotation] != ms.Status.ConfigVersion:
			out = append(out, key.Name+": ConfigMap version differs from status")
		case ms.Status.ObservedGeneration != ms.Generation:
			out = append(out, key.Name+": observedGeneration behind")
		}
	}
	return out
}

// updateSpec changes a MeshService's spec, retrying the 409s that the
// operator's concurrent status writes cause.
func updateSpec(ns, name string, conflicts *atomic.Int32, mutate func(*meshv1alpha1.MeshService)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ms := &meshv1alpha1.MeshService{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, ms); err != nil {
			return err
		}
		mutate(ms)
		err := k8sClient.Update(ctx, ms)
		if apierrors.IsConflict(err) {
			conflicts.Add(1)
		}
		return err
	})
}

// parallel runs f(i) for i in [0,n) on 8 workers.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			defer GinkgoRecover()
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

var _ = Describe("Faults", func() {
	BeforeEach(func() {
		SetDefaultEventuallyTimeout(3 * time.Minute)
		SetDefaultEventuallyPollingInterval(time.Second)
	})

	It("churns 200 MeshServices and ends with every object matching its spec", func() {
		const n, rounds = 200, 3
		ns := newNamespace()
		startOperator(ns, nil)
		collected := playGarbageCollector(ns)
		var conflicts, churned atomic.Int32
		parallel(n, func(i int) {
			Expect(k8sClient.Create(ctx, meshService(ns, i, n))).To(Succeed())
			churned.Add(1)
		})
		for round := 1; round <= rounds; round++ {
			parallel(n, func(i int) {
				name := fmt.Sprintf("svc-%03d", i)
				switch {
				case i%4 == round%4:
					// Delete, and recreate at once: the new object has a new UID.
					err := k8sClient.Delete(ctx, &meshv1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
					Expect(client.IgnoreNotFound(err)).To(Succeed())
					Eventually(func() error { return k8sClient.Create(ctx, meshService(ns, i, n)) }, 30*time.Second, 100*time.Millisecond).Should(Succeed())
				default:
					Expect(updateSpec(ns, name, &conflicts, func(ms *meshv1alpha1.MeshService) {
						ms.Spec.Replicas = ptr.To(int32(round % 3))
						ms.Spec.Template.Spec.Containers[0].Image = fmt.Sprintf("example.com/app:%d", round)
						ms.Spec.ServicePort = int32(15006 + round)
					})).To(Succeed())
				}
				churned.Add(1)
			})
		}
		Eventually(func() []string { return mismatches(ns) }).Should(BeEmpty())
		AddReportEntry("churn", fmt.Sprintf("%d MeshServices, %d creates/updates/deletes, %d conflicts (409) retried by the writer, %d orphans garbage-collected, 0 lost updates",
			n, churned.Load(), conflicts.Load(), collected.Load()))
	})

	It("converges with no duplicates when the manager is killed mid-reconcile and restarted", func() {
		const n = 60
		ns := newNamespace()
		// Every MeshService exists before the manager starts, so its queue starts full.
		parallel(n, func(i int) { Expect(k8sClient.Create(ctx, meshService(ns, i, n))).To(Succeed()) })
		first := startOperator(ns, nil)
		deployments := func() int {
			var deps appsv1.DeploymentList
			Expect(k8sClient.List(ctx, &deps, client.InNamespace(ns), client.HasLabels{objects.ServiceLabel})).To(Succeed())
			return len(deps.Items)
		}
		// Kill it as soon as its first Deployment shows that reconciles are under way.
		Eventually(deployments, time.Minute, 5*time.Millisecond).Should(BeNumerically(">", 0))
		first.stop()
		started, partial := deployments(), len(mismatches(ns))
		Expect(partial).To(BeNumerically(">", 0), "some MeshServices must be unconverged when the manager is killed, or the restart proves nothing")
		startOperator(ns, nil)
		Eventually(func() []string { return mismatches(ns) }).Should(BeEmpty())

		for _, list := range []client.ObjectList{&appsv1.DeploymentList{}, &corev1.ServiceList{}, &corev1.ConfigMapList{}} {
			Expect(k8sClient.List(ctx, list, client.InNamespace(ns), client.HasLabels{objects.ServiceLabel})).To(Succeed())
			Expect(meta(list)).To(HaveLen(n), "exactly one %T item per MeshService", list)
		}
		AddReportEntry("restart", fmt.Sprintf("%d MeshServices, %d unconverged (%d with a Deployment) when the first manager was killed, 0 after the restart, no duplicates",
			n, partial, started))
	})

	It("keeps reconciling while every sidecar probe hangs", func() {
		ns := newNamespace()
		port := hungListeners(ns, 100)
		startOperator(ns, &prober.Options{Interval: 100 * time.Millisecond, Timeout: 2 * time.Second, Concurrency: 4, Port: port})
		// 100 hung pods, 4 at a time, 2s each: a sweep takes about 50s. Reconciles
		// must not wait for it.
		parallel(20, func(i int) { Expect(k8sClient.Create(ctx, meshService(ns, i, 20))).To(Succeed()) })
		Eventually(func() []string { return mismatches(ns) }, 30*time.Second).Should(BeEmpty())
		AddReportEntry("probe flood", "20 MeshServices converged while 100 hung sidecars were being probed")
	})

	It("survives a MeshService deleted while its upstream keeps changing", func() {
		ns := newNamespace()
		startOperator(ns, nil)
		Expect(k8sClient.Create(ctx, meshService(ns, 0, 2))).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(ns, 1, 2))).To(Succeed())
		var conflicts atomic.Int32
		var wg sync.WaitGroup
		wg.Go(func() {
			defer GinkgoRecover()
			for port := int32(16000); port < 16020; port++ {
				Expect(updateSpec(ns, "svc-001", &conflicts, func(ms *meshv1alpha1.MeshService) { ms.Spec.ServicePort = port })).To(Succeed())
			}
		})
		Expect(k8sClient.Delete(ctx, meshService(ns, 0, 2))).To(Succeed())
		wg.Wait()
		Eventually(func() []string { return mismatches(ns) }).Should(BeEmpty())
		Expect(apierrors.IsNotFound(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "svc-000"}, &meshv1alpha1.MeshService{}))).To(BeTrue())
	})
})

// playGarbageCollector stands in for kube-controller-manager, which envtest does
// not run: it deletes objects in ns whose controlling MeshService is gone (by
// UID), until the test ends (ServiceAccounts and NetworkPolicies included: a
// recreated MeshService finds its old ones in the way until they are collected). It returns the count of objects it collected.
func playGarbageCollector(ns string) *atomic.Int32 {
	var collected atomic.Int32
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			var owners meshv1alpha1.MeshServiceList
			if k8sClient.List(ctx, &owners, client.InNamespace(ns)) != nil {
				continue
			}
			live := map[types.UID]bool{}
			for _, o := range owners.Items {
				live[o.UID] = true
			}
			var deps appsv1.DeploymentList
			var svcs corev1.ServiceList
			var cms corev1.ConfigMapList
			var sas corev1.ServiceAccountList
			var nps networkingv1.NetworkPolicyList
			for _, list := range []client.ObjectList{&deps, &svcs, &cms, &sas, &nps} {
				_ = k8sClient.List(ctx, list, client.InNamespace(ns), client.HasLabels{objects.ServiceLabel})
			}
			var objs []client.Object
			for i := range deps.Items {
				objs = append(objs, &deps.Items[i])
			}
			for i := range svcs.Items {
				objs = append(objs, &svcs.Items[i])
			}
			for i := range cms.Items {
				objs = append(objs, &cms.Items[i])
			}
			for i := range sas.Items {
				objs = append(objs, &sas.Items[i])
			}
			for i := range nps.Items {
				objs = append(objs, &nps.Items[i])
			}
			for _, obj := range objs {
				if ref := metav1.GetControllerOf(obj); ref != nil && !live[ref.UID] {
					if k8sClient.Delete(ctx, obj, client.Preconditions{UID: ptr.To(obj.GetUID())}) == nil {
						collected.Add(1)
					}
				}
			}
		}
	}()
	DeferCleanup(func() { close(stop); <-done })
	return &collected
}

func meta(list client.ObjectList) []string {
	var names []string
	switch l := list.(type) {
	case *appsv1.DeploymentList:
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
	case *corev1.ServiceList:
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
	case *corev1.ConfigMapList:
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
	}
	return names
}

// hungListeners starts n pods of one MeshService on loopback IPs whose status
// port accepts connections and never answers; it returns the port.
func hungListeners(ns string, n int) int {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	port := probe.Addr().(*net.TCPAddr).Port
	Expect(probe.Close()).To(Succeed())
	for i := range n {
		ip := fmt.Sprintf("127.0.%d.%d", 60+i/250, 1+i%250)
		l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
		Expect(err).NotTo(HaveOccurred())
		var mu sync.Mutex
		var conns []net.Conn
		DeferCleanup(func() {
			_ = l.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				_ = c.Close()
			}
		})
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock() // hold the connection open, answer nothing
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("hung-%03d", i), Labels: map[string]string{objects.ServiceLabel: "hung"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
		}
		Expect(k8sClient.Create(ctx, pod)).To(Succeed())
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip}
		Expect(k8sClient.Status().Update(ctx, pod)).To(Succeed())
	}
	return port
}
