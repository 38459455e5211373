package controllers

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// applyOwned against the real API server, reading through a direct client (the
// manager reads its cache, which only ever lags). The owner is a ConfigMap, so no
// controller of the running manager touches what the test writes.
var _ = Describe("applyOwned", func() {
	var (
		ns      string
		owner   *corev1.ConfigMap
		c       client.Client
		writes  int
		applied *appliedVersions
	)

	BeforeEach(func() {
		ns = newNamespace()
		owner = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owner"}}
		Expect(k8sClient.Create(ctx, owner)).To(Succeed())
		direct, err := client.NewWithWatch(cfg, client.Options{Scheme: k8sClient.Scheme()})
		Expect(err).NotTo(HaveOccurred())
		writes, applied = 0, &appliedVersions{}
		// Every write applyOwned might send counts: an apply either way, or any patch.
		c = interceptor.NewClient(direct, interceptor.Funcs{
			Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
				writes++
				return c.Apply(ctx, obj, opts...)
			},
			Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
				writes++
				return c.Patch(ctx, obj, patch, opts...)
			},
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				writes++
				return c.Create(ctx, obj, opts...)
			},
			Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
				writes++
				return c.Update(ctx, obj, opts...)
			},
		})
	})

	desired := func(value string) *corev1.ConfigMap {
		cm := &corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owned"},
			Data:       map[string]string{"value": value},
		}
		Expect(controllerutil.SetControllerReference(owner, cm, k8sClient.Scheme())).To(Succeed())
		return cm
	}
	apply := func(value string) {
		GinkgoHelper()
		Expect(applyOwned(ctx, c, applied, owner, owned(desired(value), &corev1.ConfigMap{}))).To(Succeed())
	}
	live := func() string {
		GinkgoHelper()
		cm := &corev1.ConfigMap{}
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "owned"}, cm)).To(Succeed())
		return cm.Data["value"]
	}

	It("skips an apply that would change nothing, and only that", func() {
		apply("1")
		Expect(writes).To(Equal(1))
		Expect(live()).To(Equal("1"))

		By("the same body on an untouched object is not sent")
		apply("1")
		Expect(writes).To(Equal(1))

		By("a new body is sent")
		apply("2")
		Expect(writes).To(Equal(2))
		Expect(live()).To(Equal("2"))

		By("drift is repaired: someone else's write changed the resourceVersion")
		update(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owned"}},
			func(cm *corev1.ConfigMap) { cm.Data["value"] = "tampered" })
		apply("2")
		Expect(writes).To(Equal(3))
		Expect(live()).To(Equal("2"))
		apply("2")
		Expect(writes).To(Equal(3))

		By("a deleted object is created again")
		Expect(k8sClient.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owned"}})).To(Succeed())
		apply("2")
		Expect(writes).To(Equal(4))
		Expect(live()).To(Equal("2"))

		By("a forgotten owner writes again")
		applied.forget(client.ObjectKeyFromObject(owner))
		apply("2")
		Expect(writes).To(Equal(5))
	})

	It("neither builds nor sends an object whose version and resourceVersion are unchanged", func() {
		builds := 0
		versioned := func(version, value string) ownedObject {
			existing := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owned"}}
			return ownedVersioned("ConfigMap", existing, version, func() (client.Object, error) {
				builds++
				return desired(value), nil
			})
		}
		apply := func(version, value string) {
			GinkgoHelper()
			Expect(applyOwned(ctx, c, applied, owner, versioned(version, value))).To(Succeed())
		}
		apply("v1", "1")
		Expect(builds).To(Equal(1))
		Expect(writes).To(Equal(1))

		By("the same version on an untouched object is neither built nor sent")
		apply("v1", "1")
		Expect(builds).To(Equal(1))
		Expect(writes).To(Equal(1))

		By("a new version is built and sent")
		apply("v2", "2")
		Expect(builds).To(Equal(2))
		Expect(writes).To(Equal(2))
		Expect(live()).To(Equal("2"))

		By("drift is repaired although the version is the same")
		update(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owned"}},
			func(cm *corev1.ConfigMap) { cm.Data["value"] = "tampered" })
		apply("v2", "2")
		Expect(builds).To(Equal(3))
		Expect(writes).To(Equal(3))
		Expect(live()).To(Equal("2"))
	})

	It("sends nothing over an object the owner does not control", func() {
		Expect(k8sClient.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owned"}, Data: map[string]string{"value": "theirs"},
		})).To(Succeed())
		var notOwned *errNotOwned
		Expect(applyOwned(ctx, c, applied, owner, owned(desired("1"), &corev1.ConfigMap{}))).To(BeAssignableToTypeOf(notOwned))
		Expect(writes).To(Equal(0))
		Expect(live()).To(Equal("theirs"))
	})
})
