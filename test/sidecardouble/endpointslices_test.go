package main

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/envoymesh/envoymesh-operator/internal/envoyconfig"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

func TestSliceAddress(t *testing.T) {
	for in, want := range map[string]string{"127.2.0.5": "198.18.0.5", "127.1.3.250": "198.18.3.250", "127.0.0.1": "198.18.0.1"} {
		if got, ok := sliceAddress(in); !ok || got != want {
			t.Errorf("sliceAddress(%s) = %s, %v; want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "10.0.0.1", "::1", "garbage"} {
		if got, ok := sliceAddress(in); ok {
			t.Errorf("sliceAddress(%q) = %s, want none", in, got)
		}
	}
}

func meshedService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "b", UID: "svc-uid", Labels: map[string]string{
			objects.ServiceLabel: "b", "app.kubernetes.io/managed-by": "envoymesh-operator",
		}},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{objects.ServiceLabel: "b"},
			Ports:     []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 8789, TargetPort: intstr.FromInt32(8789), AppProtocol: ptr.To("http")}},
		},
	}
}

func pod(name, ip string, ready bool) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name), Labels: map[string]string{objects.ServiceLabel: "b"}},
		Spec:       corev1.PodSpec{NodeName: "kwok-node-0"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}},
	}
}

// TestDesiredSlice: what the EndpointSlice controller would write, with the addresses mapped: the
// Service's labels, ports at their target port, an endpoint per pod with an IP and its conditions.
func TestDesiredSlice(t *testing.T) {
	terminating := pod("b-3", "127.2.0.9", true)
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	other := pod("c-1", "127.2.0.4", true)
	other.Labels = map[string]string{objects.ServiceLabel: "c"}
	failed := pod("b-4", "127.2.0.10", false)
	failed.Status.Phase = corev1.PodFailed
	es := desiredSlice(meshedService(), []*corev1.Pod{
		pod("b-1", "127.2.0.7", true), pod("b-2", "127.2.0.8", false), terminating, other, failed, pod("b-5", "", false),
	})
	if es.Name != "b-sidecardouble" || es.Labels[discoveryv1.LabelServiceName] != "b" || es.Labels[discoveryv1.LabelManagedBy] != sliceManager ||
		es.Labels["app.kubernetes.io/managed-by"] != "envoymesh-operator" || es.OwnerReferences[0].UID != "svc-uid" {
		t.Errorf("slice meta %+v", es.ObjectMeta)
	}
	if len(es.Ports) != 1 || *es.Ports[0].Port != 8789 || *es.Ports[0].Name != "http" {
		t.Errorf("ports %+v", es.Ports)
	}
	type state struct {
		addr                        string
		ready, serving, terminating bool
	}
	var got []state
	for _, ep := range es.Endpoints {
		got = append(got, state{ep.Addresses[0], *ep.Conditions.Ready, *ep.Conditions.Serving, *ep.Conditions.Terminating})
	}
	want := []state{{"198.18.0.7", true, true, false}, {"198.18.0.8", false, false, false}, {"198.18.0.9", false, true, true}}
	if len(got) != len(want) {
		t.Fatalf("endpoints %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("endpoint %d: %+v, want %+v", i, got[i], want[i])
		}
	}

	// The operator's EDS reads it: one HEALTHY, two DRAINING, on the target port.
	cla := envoyconfig.ClusterLoadAssignment("out.b.ns", 8789, []discoveryv1.EndpointSlice{*es})
	if n := len(cla.GetEndpoints()); n != 1 || len(cla.GetEndpoints()[0].GetLbEndpoints()) != 3 {
		t.Errorf("EDS from the slice: %v", cla)
	}
}

// TestSliceWriter creates the slice, leaves it alone while nothing changes, and updates it when a
// pod comes; Services that are not meshed and headless get none.
func TestSliceWriter(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	w := &sliceWriter{cs: cs, get: func(ns, name string) *discoveryv1.EndpointSlice {
		es, err := cs.DiscoveryV1().EndpointSlices(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return es
	}}
	plain := meshedService()
	plain.Name, plain.Labels = "plain", nil
	clusterIP := meshedService()
	clusterIP.Name, clusterIP.Spec.ClusterIP = "gateway", "10.0.0.7"
	services := []*corev1.Service{meshedService(), plain, clusterIP}
	pods := []*corev1.Pod{pod("b-1", "127.2.0.7", true)}

	writes := func() int {
		n := 0
		for _, a := range cs.Actions() {
			if a.GetVerb() == "create" || a.GetVerb() == "update" {
				n++
			}
		}
		return n
	}
	w.sync(ctx, services, pods)
	w.sync(ctx, services, pods)
	list, err := cs.DiscoveryV1().EndpointSlices("ns").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != "b-sidecardouble" || len(list.Items[0].Endpoints) != 1 || writes() != 1 {
		t.Fatalf("after two syncs: %d slices (%+v), %d writes; want b's alone, written once", len(list.Items), list.Items, writes())
	}
	w.sync(ctx, services, append(pods, pod("b-2", "127.2.0.8", true)))
	es, err := cs.DiscoveryV1().EndpointSlices("ns").Get(ctx, "b-sidecardouble", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(es.Endpoints) != 2 || writes() != 2 {
		t.Errorf("after a pod came: %d endpoints, %d writes; want 2, 2", len(es.Endpoints), writes())
	}
}
