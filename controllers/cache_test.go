package controllers

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// The cache holds only what the operator writes, so its memory follows the
// mesh, not the cluster; a foreign object of one of our names is still found
// (by a live read) and never overwritten.

func TestCacheOptionsScopeWhatWeWriteByLabel(t *testing.T) {
	ours := labels.Set{objects.ManagedByLabel: objects.ManagedBy}
	for _, namespaces := range [][]string{nil, {"a", "b"}} {
		o := cacheOptions(namespaces, types.NamespacedName{Namespace: "envoymesh-system", Name: "ca"})
		for _, want := range []client.Object{
			&appsv1.Deployment{}, &corev1.Service{}, &corev1.ServiceAccount{}, &corev1.ConfigMap{},
			&networkingv1.NetworkPolicy{}, &policyv1.PodDisruptionBudget{}, &corev1.Pod{},
		} {
			var by *labels.Selector
			for obj, b := range o.ByObject {
				if reflect.TypeOf(obj) == reflect.TypeOf(want) {
					by = &b.Label
				}
			}
			switch {
			case by == nil || *by == nil:
				t.Errorf("namespaces %v: %T is cached without a label selector", namespaces, want)
			case !(*by).Matches(ours):
				t.Errorf("namespaces %v: %T: selector %q does not select what we write", namespaces, want, *by)
			case (*by).Matches(labels.Set{}) || (*by).Matches(labels.Set{objects.ManagedByLabel: "Helm"}):
				t.Errorf("namespaces %v: %T: selector %q selects objects we did not write", namespaces, want, *by)
			}
		}
		if len(namespaces) > 0 && len(o.DefaultNamespaces) != len(namespaces) {
			t.Errorf("namespaces %v: DefaultNamespaces %v", namespaces, o.DefaultNamespaces)
		}
	}
}

// Every object the operator writes carries the label the cache selects on, and
// is of a kind the cache scopes by it: an unlabelled one would be written and
// then never seen again, its owner reading it live on every reconcile.
func TestEverythingWeWriteCarriesTheManagedByLabel(t *testing.T) {
	ms := &meshv1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart", UID: "cart-uid"},
		Spec: meshv1alpha1.MeshServiceSpec{
			Mesh: "default", Port: 8080, ServicePort: 15006,
			Disruption: &meshv1alpha1.Disruption{MaxUnavailable: ptr.To(intstr.FromInt32(1))},
			Template:   corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/cart:1"}}}},
		},
	}
	mesh := &meshv1alpha1.ServiceMesh{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default", UID: "mesh-uid"},
		Spec:       meshv1alpha1.ServiceMeshSpec{Gateway: &meshv1alpha1.Gateway{Enabled: true}},
	}
	sc := objects.DefaultSidecar(testEnvoyImage)
	files := &envoyconfig.Output{}
	written := []client.Object{
		objects.ServiceAccount(ms), objects.ConfigMap(ms, files), objects.Service(ms),
		objects.Deployment(ms, sc, "hash", true), objects.NetworkPolicy(ms), objects.PodDisruptionBudget(ms),
		objects.GatewayServiceAccount(mesh), objects.GatewayConfigMap(mesh, files), objects.GatewayService(mesh),
		objects.GatewayDeployment(mesh, sc, "hash"), objects.GatewayNetworkPolicy(mesh), objects.GatewayPodDisruptionBudget(mesh),
	}
	for _, obj := range written {
		kind := reflect.TypeOf(obj).Elem().Name()
		if got := obj.GetLabels()[objects.ManagedByLabel]; got != objects.ManagedBy {
			t.Errorf("%s %s: %s=%q, want %q", kind, obj.GetName(), objects.ManagedByLabel, got, objects.ManagedBy)
		}
		if !cachedByLabel(obj) {
			t.Errorf("%s: not among the label-scoped kinds of the cache (labelScoped)", kind)
		}
		if dep, ok := obj.(*appsv1.Deployment); ok && dep.Spec.Template.Labels[objects.ManagedByLabel] != objects.ManagedBy {
			t.Errorf("Deployment %s: its pods lack %s, so the probers would never see them", dep.Name, objects.ManagedByLabel)
		}
	}
	// As the ConfigMaps are read: metadata only.
	if !cachedByLabel(configMapMeta()) {
		t.Error("a ConfigMap read as metadata is not counted as label-scoped")
	}
	if pm := objects.PodMonitor(mesh); pm.GetLabels()[objects.ManagedByLabel] != objects.ManagedBy || cachedByLabel(pm) {
		t.Errorf("PodMonitor: labels %v, label-scoped %v: want labelled, and read live as every unstructured object", pm.GetLabels(), cachedByLabel(pm))
	}
}

// countingReader counts the Gets that reach it.
func countingReader(objs ...client.Object) (client.Reader, *int) {
	var mu sync.Mutex
	n := new(int)
	return interceptor.NewClient(fake.NewClientBuilder().WithObjects(objs...).Build(), interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			mu.Lock()
			*n++
			mu.Unlock()
			return c.Get(ctx, key, obj, opts...)
		},
	}), n
}

// The API server is asked only when the cache misses, and only for the kinds the
// cache holds by label: a reconcile whose objects exist reads no more than before.
func TestLookupReadsLiveOnlyWhatTheCacheCannotKnow(t *testing.T) {
	ctx := context.Background()
	owner := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "owner", UID: "owner-uid"}}
	dep := func(name string, ours bool) *appsv1.Deployment {
		d := &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"}, ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		if ours {
			d.Labels = map[string]string{objects.ManagedByLabel: objects.ManagedBy}
			if err := controllerutil.SetControllerReference(owner, d, Scheme()); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	ours, theirs := dep("ours", true), dep("theirs", false)
	// The cache: what carries our label. The API server: everything.
	cached := fake.NewClientBuilder().WithObjects(ours.DeepCopy()).Build()
	live, gets := countingReader(ours.DeepCopy(), theirs.DeepCopy())
	deployment := func(name string) ownedObject { return owned(dep(name, true), &appsv1.Deployment{}) }

	t.Run("ours, cached: no live read", func(t *testing.T) {
		*gets = 0
		found, err := checkOwned(ctx, cached, live, owner, []ownedObject{deployment("ours")})
		if err != nil || !found[0] || *gets != 0 {
			t.Fatalf("found %v, err %v, %d live reads: want found, no error, none", found, err, *gets)
		}
	})
	t.Run("absent: one live read each", func(t *testing.T) {
		*gets = 0
		found, err := checkOwned(ctx, cached, live, owner, []ownedObject{deployment("absent"), deployment("ours"), deployment("also-absent")})
		if err != nil || !slices.Equal(found, []bool{false, true, false}) || *gets != 2 {
			t.Fatalf("found %v, err %v, %d live reads: want [false true false], no error, two", found, err, *gets)
		}
	})
	t.Run("foreign, unlabelled: found live, a conflict whose deletion goes unseen", func(t *testing.T) {
		*gets = 0
		_, err := checkOwned(ctx, cached, live, owner, []ownedObject{deployment("ours"), deployment("theirs")})
		var notOwned *errNotOwned
		if !errors.As(err, &notOwned) || notOwned.name != "theirs" || !notOwned.unseen || *gets != 1 {
			t.Fatalf("err %v, %d live reads: want theirs as an unseen conflict, one live read", err, *gets)
		}
		applied := &appliedVersions{live: live}
		if err := applyAllOwned(ctx, cached, applied, owner, []ownedObject{deployment("theirs")}); !errors.As(err, &notOwned) {
			t.Fatalf("applyAllOwned: %v, want the conflict", err)
		}
		if !applied.takeBlocked(client.ObjectKeyFromObject(owner)) {
			t.Fatal("the owner is not marked blocked: nothing would look again once theirs is deleted")
		}
	})
	t.Run("without a live reader the cache's word is final", func(t *testing.T) {
		*gets = 0
		found, err := checkOwned(ctx, cached, nil, owner, []ownedObject{deployment("theirs")})
		if err != nil || found[0] || *gets != 0 {
			t.Fatalf("found %v, err %v, %d live reads", found, err, *gets)
		}
	})
	t.Run("a miss of a kind the cache does not scope by label is final (PodMonitors: the client reads unstructured objects live)", func(t *testing.T) {
		*gets = 0
		pm := objects.PodMonitor(&meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "m", UID: "owner-uid"}})
		existing := &unstructured.Unstructured{}
		existing.SetGroupVersionKind(podMonitorGVK)
		missing := interceptor.NewClient(fake.NewClientBuilder().Build(), interceptor.Funcs{
			Get: func(_ context.Context, _ client.WithWatch, key client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
				return apierrors.NewNotFound(podMonitorGVK.GroupVersion().WithResource("podmonitors").GroupResource(), key.Name)
			},
		})
		found, err := lookup(ctx, missing, live, owned(pm, existing))
		if err != nil || found || *gets != 0 {
			t.Fatalf("found %v, err %v, %d live reads: want not found, no error, none", found, err, *gets)
		}
	})
}

// blockingReconciler marks its owner blocked, as applyAllOwned does on an
// unseen conflict, when block is set.
type blockingReconciler struct {
	applied *appliedVersions
	block   bool
	result  reconcile.Result
	err     error
}

func (b *blockingReconciler) Reconcile(_ context.Context, req reconcile.Request) (reconcile.Result, error) {
	if b.block {
		b.applied.block(req.NamespacedName)
	}
	return b.result, b.err
}

func TestRetryBlockedRequeuesOnlyBlockedOwners(t *testing.T) {
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "x"}}
	for _, tc := range []struct {
		name  string
		inner blockingReconciler
		want  time.Duration
	}{
		{"not blocked: as the reconciler said", blockingReconciler{}, 0},
		{"not blocked, own requeue kept", blockingReconciler{result: reconcile.Result{RequeueAfter: time.Hour}}, time.Hour},
		{"blocked: looks again after the retry", blockingReconciler{block: true}, 30 * time.Second},
		{"blocked, a sooner requeue of its own wins", blockingReconciler{block: true, result: reconcile.Result{RequeueAfter: time.Second}}, time.Second},
		{"blocked, a later requeue of its own is brought forward", blockingReconciler{block: true, result: reconcile.Result{RequeueAfter: time.Hour}}, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			applied := &appliedVersions{}
			tc.inner.applied = applied
			r := retryBlocked{r: &tc.inner, applied: applied, retry: 30 * time.Second}
			res, err := r.Reconcile(context.Background(), req)
			if err != nil || res.RequeueAfter != tc.want {
				t.Fatalf("RequeueAfter %s, err %v: want %s", res.RequeueAfter, err, tc.want)
			}
			// Blocked once is not blocked for ever: the next reconcile decides afresh.
			tc.inner.block, tc.inner.result = false, reconcile.Result{}
			if res, _ := r.Reconcile(context.Background(), req); res.RequeueAfter != 0 {
				t.Fatalf("the next, unblocked reconcile requeues after %s", res.RequeueAfter)
			}
		})
	}
	t.Run("an error keeps controller-runtime's backoff", func(t *testing.T) {
		applied := &appliedVersions{}
		boom := errors.New("boom")
		r := retryBlocked{r: &blockingReconciler{applied: applied, block: true, err: boom}, applied: applied, retry: 30 * time.Second}
		if res, err := r.Reconcile(context.Background(), req); !errors.Is(err, boom) || res.RequeueAfter != 0 {
			t.Fatalf("RequeueAfter %s, err %v", res.RequeueAfter, err)
		}
	})
}

var _ = Describe("The cache of what the operator writes", func() {
	var ns string

	BeforeEach(func() {
		SetDefaultEventuallyTimeout(20 * time.Second)
		SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
		SetDefaultConsistentlyDuration(3 * conflictRetry)
		SetDefaultConsistentlyPollingInterval(250 * time.Millisecond)
		ns = newNamespace()
	})

	// cachedNames lists the names the manager's cache holds of list's kind in ns.
	cachedNames := func(list client.ObjectList) func() ([]string, error) {
		return func() ([]string, error) {
			if err := suiteManager.GetCache().List(ctx, list, client.InNamespace(ns)); err != nil {
				return nil, err
			}
			items, err := apimeta.ExtractList(list)
			if err != nil {
				return nil, err
			}
			var names []string
			for _, o := range items {
				names = append(names, o.(metav1.Object).GetName())
			}
			slices.Sort(names)
			return names, nil
		}
	}
	foreignDeployment := func(name string) *appsv1.Deployment {
		theirs := map[string]string{"app": "theirs"}
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: theirs},
			Spec: appsv1.DeploymentSpec{
				Selector: &metav1.LabelSelector{MatchLabels: theirs},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: theirs},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.com/theirs:1"}}},
				},
			},
		}
	}
	foreignService := func(name string) *corev1.Service {
		return &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "theirs"}},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": "theirs"},
				Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
			},
		}
	}

	It("holds only the objects that carry our label", func() {
		Expect(k8sClient.Create(ctx, foreignDeployment("unrelated"))).To(Succeed())
		Expect(k8sClient.Create(ctx, foreignService("unrelated"))).To(Succeed())
		Expect(k8sClient.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unrelated"}, Data: map[string]string{"k": "v"}})).To(Succeed())
		Expect(k8sClient.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unrelated"}})).To(Succeed())
		Expect(k8sClient.Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unrelated"}})).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(ns, "ours", 8080, 15006))).To(Succeed())
		Eventually(func() int64 { return getMeshService(ns, "ours").Status.ObservedGeneration }).Should(BeEquivalentTo(1))

		// As the manager reads them: ConfigMaps as metadata only (a typed list
		// would start a second informer).
		configMaps := &metav1.PartialObjectMetadataList{}
		configMaps.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMapList"))
		Eventually(cachedNames(&appsv1.DeploymentList{})).Should(Equal([]string{"ours"}))
		Eventually(cachedNames(&corev1.ServiceList{})).Should(Equal([]string{"ours"}))
		Eventually(cachedNames(&corev1.ServiceAccountList{})).Should(Equal([]string{"ours"}))
		Eventually(cachedNames(&networkingv1.NetworkPolicyList{})).Should(Equal([]string{"ours"}))
		Eventually(cachedNames(configMaps)).Should(Equal([]string{"ours-envoy"}))
		// The API server has both.
		all := &appsv1.DeploymentList{}
		Expect(k8sClient.List(ctx, all, client.InNamespace(ns))).To(Succeed())
		Expect(all.Items).To(HaveLen(2))
	})

	It("detects an unlabelled Deployment and Service of its name, never overwrites them, and converges once they are deleted", func() {
		dep, svc := foreignDeployment("blocked"), foreignService("blocked")
		Expect(k8sClient.Create(ctx, dep)).To(Succeed())
		Expect(k8sClient.Create(ctx, svc)).To(Succeed())
		Expect(k8sClient.Create(ctx, meshService(ns, "blocked", 8080, 15006))).To(Succeed())

		Eventually(conditionOf(ns, "blocked", meshv1alpha1.ConditionReady)).Should(Equal("False/Conflict"))
		msg := condition(getMeshService(ns, "blocked"), meshv1alpha1.ConditionReady).Message
		Expect(msg).To(ContainSubstring(`Deployment "blocked"`))
		Expect(msg).To(ContainSubstring(`Service "blocked"`))
		Eventually(eventReasons(ns, "blocked")).Should(ContainElement("Warning/Conflict"))

		By("they are not in the cache: the API server told")
		for _, obj := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}} {
			err := suiteManager.GetCache().Get(ctx, client.ObjectKey{Namespace: ns, Name: "blocked"}, obj)
			Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%T blocked in the cache: %v", obj, err)
		}

		By("the owner looks again every conflictRetry, and still writes nothing")
		Consistently(func(g Gomega) {
			gotDep, err := get(&appsv1.Deployment{}, ns, "blocked")()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(gotDep.ResourceVersion).To(Equal(dep.ResourceVersion))
			g.Expect(gotDep.OwnerReferences).To(BeEmpty())
			gotSvc, err := get(&corev1.Service{}, ns, "blocked")()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(gotSvc.ResourceVersion).To(Equal(svc.ResourceVersion))
			g.Expect(gotSvc.OwnerReferences).To(BeEmpty())
			notFound(g, ns, named(&corev1.ConfigMap{}, "blocked-envoy"), named(&corev1.ServiceAccount{}, "blocked"))
		}).Should(Succeed())
		Expect(getMeshService(ns, "blocked").Status.ObservedGeneration).To(BeZero())

		By("with the Deployment gone, the Service alone still blocks")
		Expect(k8sClient.Delete(ctx, dep)).To(Succeed())
		Eventually(func() string {
			return condition(getMeshService(ns, "blocked"), meshv1alpha1.ConditionReady).Message
		}).ShouldNot(ContainSubstring("Deployment"))
		Expect(conditionOf(ns, "blocked", meshv1alpha1.ConditionReady)()).To(Equal("False/Conflict"))
		notFound(Default, ns, named(&appsv1.Deployment{}, "blocked"))

		By("with the Service gone too, everything converges")
		Expect(k8sClient.Delete(ctx, svc)).To(Succeed())
		Eventually(func(g Gomega) {
			ms := getMeshService(ns, "blocked")
			g.Expect(ms.Status.ObservedGeneration).To(BeEquivalentTo(1))
			controlledBy(g, ms, named(&appsv1.Deployment{}, "blocked"), named(&corev1.Service{}, "blocked"),
				named(&corev1.ConfigMap{}, "blocked-envoy"), named(&corev1.ServiceAccount{}, "blocked"))
		}).Should(Succeed())
		Eventually(cachedNames(&appsv1.DeploymentList{})).Should(Equal([]string{"blocked"}))
	})
})
