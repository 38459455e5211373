package main

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// The EndpointSlice double. kube-apiserver refuses EndpointSlice addresses in
// 127.0.0.0/8 ("may not be in the loopback range"), so in the local cluster,
// whose pods all have loopback IPs, the real EndpointSlice controller can write
// no endpoint for any Service: every slice stays empty, and XDS meshes, whose
// EDS comes from EndpointSlices, would see no upstream endpoint at all. With
// --endpointslices the double writes, beside the real controller's empty slice,
// one slice per meshed headless Service as that controller would (its labels
// copied from the Service, an endpoint per pod with an IP, its conditions from
// the pod, the Service's ports with their target ports, owned by the Service),
// except that each pod IP 127.a.b.c is written as 198.18.b.c (the RFC 2544
// benchmarking range, which the API server accepts). Nothing dials those
// addresses: the operator only turns them into EDS, and the double's Envoys
// only report them.

// sliceManager is the double's endpointslice.kubernetes.io/managed-by: the
// real controller leaves slices of another manager alone.
const sliceManager = "sidecardouble.envoymesh.io"

// sliceAddress maps a pod's loopback IP 127.a.b.c to 198.18.b.c; false for
// anything else.
func sliceAddress(podIP string) (string, bool) {
	ip, err := netip.ParseAddr(podIP)
	if err != nil || !ip.Is4() || !ip.IsLoopback() {
		return "", false
	}
	b := ip.As4()
	return netip.AddrFrom4([4]byte{198, 18, b[2], b[3]}).String(), true
}

// sliceName is the name of the double's slice of a Service.
func sliceName(service string) string { return service + "-sidecardouble" }

// desiredSlice is the slice the EndpointSlice controller would write for a
// meshed headless Service and its pods, with the pods' addresses mapped.
func desiredSlice(svc *corev1.Service, pods []*corev1.Pod) *discoveryv1.EndpointSlice {
	sliceLabels := map[string]string{}
	for k, v := range svc.Labels {
		sliceLabels[k] = v
	}
	sliceLabels[discoveryv1.LabelServiceName] = svc.Name
	sliceLabels[discoveryv1.LabelManagedBy] = sliceManager
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: svc.Namespace, Name: sliceName(svc.Name), Labels: sliceLabels,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID, Controller: ptr.To(true),
			}},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{},
		Ports:       []discoveryv1.EndpointPort{},
	}
	for _, p := range svc.Spec.Ports {
		if p.TargetPort.IntValue() == 0 {
			continue // a named target port: the operator's Services have none
		}
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{
			Name: ptr.To(p.Name), Protocol: ptr.To(p.Protocol), Port: ptr.To(int32(p.TargetPort.IntValue())), AppProtocol: p.AppProtocol,
		})
	}
	selector := labels.SelectorFromValidatedSet(svc.Spec.Selector)
	for _, p := range pods {
		if p.Namespace != svc.Namespace || !selector.Matches(labels.Set(p.Labels)) ||
			p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		addr, ok := sliceAddress(p.Status.PodIP)
		if !ok {
			continue
		}
		ready := podReady(p)
		terminating := p.DeletionTimestamp != nil
		ep := discoveryv1.Endpoint{
			Addresses: []string{addr},
			Conditions: discoveryv1.EndpointConditions{
				Ready: ptr.To(ready && !terminating), Serving: ptr.To(ready), Terminating: ptr.To(terminating),
			},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		}
		if p.Spec.NodeName != "" {
			ep.NodeName = ptr.To(p.Spec.NodeName)
		}
		es.Endpoints = append(es.Endpoints, ep)
	}
	slices.SortFunc(es.Endpoints, func(a, b discoveryv1.Endpoint) int { return strings.Compare(a.Addresses[0], b.Addresses[0]) })
	return es
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// sameSlice reports whether an existing slice already says what desired does.
func sameSlice(existing, desired *discoveryv1.EndpointSlice) bool {
	return existing.AddressType == desired.AddressType &&
		equality.Semantic.DeepEqual(existing.Labels, desired.Labels) &&
		equality.Semantic.DeepEqual(existing.OwnerReferences, desired.OwnerReferences) &&
		equality.Semantic.DeepEqual(nonNil(existing.Endpoints), desired.Endpoints) &&
		equality.Semantic.DeepEqual(nonNil(existing.Ports), desired.Ports)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// sliceWriter writes the double's EndpointSlices.
type sliceWriter struct {
	cs kubernetes.Interface
	// get returns the double's slice of a Service, nil when there is none.
	get func(namespace, name string) *discoveryv1.EndpointSlice
}

// sync writes, for every meshed headless Service, the slice its pods call for,
// when it differs from what is there.
func (w *sliceWriter) sync(ctx context.Context, services []*corev1.Service, pods []*corev1.Pod) {
	for _, svc := range services {
		if _, meshed := svc.Labels[objects.ServiceLabel]; !meshed || svc.Spec.ClusterIP != corev1.ClusterIPNone ||
			len(svc.Spec.Selector) == 0 || svc.DeletionTimestamp != nil {
			continue
		}
		desired := desiredSlice(svc, pods)
		existing := w.get(svc.Namespace, desired.Name)
		var err error
		switch {
		case existing == nil:
			_, err = w.cs.DiscoveryV1().EndpointSlices(svc.Namespace).Create(ctx, desired, metav1.CreateOptions{FieldManager: sliceManager})
			if apierrors.IsAlreadyExists(err) {
				err = nil // the informer has not seen it yet
			}
		case sameSlice(existing, desired):
			continue
		default:
			desired.ResourceVersion = existing.ResourceVersion
			_, err = w.cs.DiscoveryV1().EndpointSlices(svc.Namespace).Update(ctx, desired, metav1.UpdateOptions{FieldManager: sliceManager})
			if apierrors.IsConflict(err) {
				err = nil // the next tick sees the newer one
			}
		}
		if err != nil {
			log.Printf("EndpointSlice %s/%s: %v", svc.Namespace, desired.Name, err)
			continue
		}
		log.Printf("EndpointSlice %s/%s: %s", svc.Namespace, desired.Name, describeEndpoints(desired.Endpoints))
	}
}

func describeEndpoints(eps []discoveryv1.Endpoint) string {
	if len(eps) == 0 {
		return "no endpoints"
	}
	parts := make([]string, 0, len(eps))
	for _, ep := range eps {
		state := "ready"
		switch {
		case ptr.Deref(ep.Conditions.Terminating, false):
			state = "terminating"
		case !ptr.Deref(ep.Conditions.Ready, true):
			state = "not ready"
		}
		parts = append(parts, fmt.Sprintf("%s (%s, %s)", ep.Addresses[0], ep.TargetRef.Name, state))
	}
	return strings.Join(parts, ", ")
}
