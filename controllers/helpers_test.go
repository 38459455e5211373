package controllers

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/encoding/protojson"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
)

// newNamespace creates a namespace of its own for one test.
func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "t-" + rand.String(8)}}
	Expect(k8sClient.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

// meshService is a minimal valid MeshService.
func meshService(ns, name string, port, servicePort int32, upstreams ...meshv1alpha1.Upstream) *meshv1alpha1.MeshService {
	return &meshv1alpha1.MeshService{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: meshv1alpha1.MeshServiceSpec{
			Port:        port,
			ServicePort: servicePort,
			Upstreams:   upstreams,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "app", Image: "example.com/" + name + ":1",
			}}}},
		},
	}
}

// seedMesh reads the seed's three MeshServices from config/samples into namespace ns.
func seedMesh(ns string) []*meshv1alpha1.MeshService {
	data, err := os.ReadFile(filepath.Join("..", "config", "samples", "mesh_v1alpha1_meshservice.yaml"))
	Expect(err).NotTo(HaveOccurred())
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*meshv1alpha1.MeshService
	for {
		ms := &meshv1alpha1.MeshService{}
		if err := dec.Decode(ms); err != nil {
			break
		}
		ms.Namespace = ns
		out = append(out, ms)
	}
	Expect(out).To(HaveLen(3))
	return out
}

func get[T client.Object](obj T, ns, name string) func() (T, error) {
	return func() (T, error) {
		err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
		return obj, err
	}
}

func getMeshService(ns, name string) *meshv1alpha1.MeshService {
	ms := &meshv1alpha1.MeshService{}
	ExpectWithOffset(1, k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, ms)).To(Succeed())
	return ms
}

func condition(ms *meshv1alpha1.MeshService, t string) *metav1.Condition {
	for i := range ms.Status.Conditions {
		if ms.Status.Conditions[i].Type == t {
			return &ms.Status.Conditions[i]
		}
	}
	return nil
}

// conditionOf polls a MeshService's condition as "Status/Reason".
func conditionOf(ns, name, t string) func() string {
	return func() string {
		ms := &meshv1alpha1.MeshService{}
		if err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, ms); err != nil {
			return err.Error()
		}
		c := condition(ms, t)
		if c == nil {
			return "<none>"
		}
		return fmt.Sprintf("%s/%s", c.Status, c.Reason)
	}
}

// envoyConfig polls a MeshService's ConfigMap.
func envoyConfig(ns, name string) func() (*corev1.ConfigMap, error) {
	return get(&corev1.ConfigMap{}, ns, name+"-envoy")
}

func discoveryResponse(data string) *discoveryv3.DiscoveryResponse {
	js, err := yaml.YAMLToJSON([]byte(data))
	ExpectWithOffset(2, err).NotTo(HaveOccurred())
	dr := &discoveryv3.DiscoveryResponse{}
	ExpectWithOffset(2, protojson.Unmarshal(js, dr)).To(Succeed())
	return dr
}

// listeners parses lds.yaml of a sidecar ConfigMap, keyed by listener name.
func listeners(cm *corev1.ConfigMap) (string, map[string]*listenerv3.Listener) {
	dr := discoveryResponse(cm.Data[envoyconfig.ListenersFile])
	out := map[string]*listenerv3.Listener{}
	for _, a := range dr.Resources {
		l := &listenerv3.Listener{}
		ExpectWithOffset(1, a.UnmarshalTo(l)).To(Succeed())
		out[l.Name] = l
	}
	return dr.VersionInfo, out
}

// clusters parses cds.yaml of a sidecar ConfigMap, keyed by cluster name.
func clusters(cm *corev1.ConfigMap) (string, map[string]*clusterv3.Cluster) {
	dr := discoveryResponse(cm.Data[envoyconfig.ClustersFile])
	out := map[string]*clusterv3.Cluster{}
	for _, a := range dr.Resources {
		c := &clusterv3.Cluster{}
		ExpectWithOffset(1, a.UnmarshalTo(c)).To(Succeed())
		out[c.Name] = c
	}
	return dr.VersionInfo, out
}

// listenerOn finds the listener bound to addr:port.
func listenerOn(ls map[string]*listenerv3.Listener, addr string, port uint32) *listenerv3.Listener {
	for _, l := range ls {
		sa := l.GetAddress().GetSocketAddress()
		if sa.GetAddress() == addr && sa.GetPortValue() == port {
			return l
		}
	}
	return nil
}

// dnsEndpoints lists "host:port" of every endpoint of a cluster.
func dnsEndpoints(c *clusterv3.Cluster) []string {
	var out []string
	for _, le := range c.GetLoadAssignment().GetEndpoints() {
		for _, e := range le.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	return out
}

// eventReasons lists the reasons of the events regarding a MeshService.
func eventReasons(ns, name string) func() []string {
	return eventReasonsFor("MeshService", ns, name)
}

// markDeploymentAvailable plays the Deployment controller, which envtest does not run.
func markDeploymentAvailable(ns, name string) {
	dep := &appsv1.Deployment{}
	ExpectWithOffset(1, k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, dep)).To(Succeed())
	n := ptr.Deref(dep.Spec.Replicas, 1)
	dep.Status = appsv1.DeploymentStatus{
		ObservedGeneration: dep.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
		Conditions: []appsv1.DeploymentCondition{{
			Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable",
			LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}},
	}
	ExpectWithOffset(1, k8sClient.Status().Update(ctx, dep)).To(Succeed())
}

func ptrTo[T any](v T) *T { return &v }

// update changes the object named like obj through mutate, re-reading it and
// retrying on the 409s that the operator's concurrent status writes cause.
func update[T client.Object](obj T, mutate func(T)) {
	ExpectWithOffset(1, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		mutate(obj)
		return k8sClient.Update(ctx, obj)
	})).To(Succeed())
}

func meshServiceKey(ns, name string) *meshv1alpha1.MeshService {
	return &meshv1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

// eventReasonsFor lists the "Type/Reason" of the events regarding an object of
// the given kind.
func eventReasonsFor(kind, ns, name string) func() []string {
	return func() []string {
		var list eventsv1.EventList
		if err := k8sClient.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return []string{err.Error()}
		}
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Kind == kind && e.Regarding.Name == name {
				out = append(out, e.Type+"/"+e.Reason)
			}
		}
		return out
	}
}

// reconciledOnce deletes the headless Service a MeshService owns and waits
// until the operator has put it back: proof that a reconcile of that MeshService,
// started after the call, has run up to its applies. Reconciles of one object
// never overlap, so after two calls the first marker reconcile has finished,
// status write included.
func reconciledOnce(ns, name string) {
	svc := &corev1.Service{}
	ExpectWithOffset(1, k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc)).To(Succeed())
	ExpectWithOffset(1, k8sClient.Delete(ctx, svc)).To(Succeed())
	EventuallyWithOffset(1, func(g Gomega) {
		got := &corev1.Service{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, got)).To(Succeed())
		g.Expect(got.UID).NotTo(Equal(svc.UID))
	}).Should(Succeed())
}

// notFound asserts that none of objs exists in ns; each is an empty object of
// its kind carrying only the name to look up.
func notFound(g Gomega, ns string, objs ...client.Object) {
	for _, obj := range objs {
		name := obj.GetName()
		err := k8sClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
		g.ExpectWithOffset(1, apierrors.IsNotFound(err)).To(BeTrue(), "%T %s must not exist (got %v)", obj, name, err)
	}
}

// controlledBy asserts that every one of objs (named as for notFound) exists in
// owner's namespace and is controlled by owner.
func controlledBy(g Gomega, owner client.Object, objs ...client.Object) {
	for _, obj := range objs {
		name := obj.GetName()
		g.ExpectWithOffset(1, k8sClient.Get(ctx, client.ObjectKey{Namespace: owner.GetNamespace(), Name: name}, obj)).To(Succeed())
		g.ExpectWithOffset(1, metav1.IsControlledBy(obj, owner)).To(BeTrue(), "%T %s controlled by %s", obj, name, owner.GetName())
	}
}

// named is an empty object of obj's kind carrying only a name, for notFound and
// controlledBy.
func named[T client.Object](obj T, name string) T {
	obj.SetName(name)
	return obj
}
