package prober

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/envoymesh/envoymesh-operator/internal/envoyadmin/admintest"
	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// ns is the namespace of most test pods.
const ns = "shop"

// statusPort returns a port for every stub of one test. It holds 127.0.0.1:<port> until the test
// ends, so no other process can take that port on the wildcard address while the stubs, which
// bind other 127.0.0.x addresses, use it.
func statusPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// sidecar starts a stub status listener at ip:port that reports config version "v1".
func sidecar(t testing.TB, ip string, port int) *admintest.Sidecar {
	t.Helper()
	s := admintest.NewSidecar()
	s.SetVersion("v1")
	s.Start(t, net.JoinHostPort(ip, strconv.Itoa(port)))
	return s
}

// serve serves h at ip:port until the test ends.
func serve(t testing.TB, ip string, port int, h http.Handler) {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
}

// pod is a running pod of MeshService service (no label when service is "-") at ip.
func pod(namespace, name, service, ip string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip},
	}
	if service != "-" {
		p.Labels = map[string]string{objects.ServiceLabel: service}
	}
	return p
}

// newProber returns a Prober over a fake client holding objs, probing port.
func newProber(t testing.TB, port int, opts Options, objs ...client.Object) (*Prober, client.Client) {
	t.Helper()
	c := fake.NewClientBuilder().WithObjects(objs...).Build()
	opts.Port = port
	return New(c, nil, opts), c
}

func key(namespace, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: namespace, Name: name}
}

// drain returns the MeshServices named by the events already in the channel. Without Start
// running, Sweep sends straight into the channel's buffer, so after Sweep returns this is
// everything the sweep raised.
func drain(t testing.TB, p *Prober) []types.NamespacedName {
	t.Helper()
	return drainKind(t, p, "MeshService")
}

// drainKind is drain for events that must name owners of the given kind.
func drainKind(t testing.TB, p *Prober, kind string) []types.NamespacedName {
	t.Helper()
	var out []types.NamespacedName
	for {
		select {
		case ev := <-p.Events():
			out = append(out, eventOwner(t, ev.Object, kind))
		default:
			return out
		}
	}
}

// eventOwner checks an event names a mesh.envoymesh.io/v1alpha1 object of the given kind and
// returns which.
func eventOwner(t testing.TB, obj client.Object, kind string) types.NamespacedName {
	t.Helper()
	pom, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		t.Fatalf("event object is %T, want *metav1.PartialObjectMetadata", obj)
	}
	if pom.Kind != kind || pom.APIVersion != "mesh.envoymesh.io/v1alpha1" {
		t.Fatalf("event object is a %s %s, want a mesh.envoymesh.io/v1alpha1 %s", pom.APIVersion, pom.Kind, kind)
	}
	return client.ObjectKeyFromObject(obj)
}

// receive waits for one event, which must name a MeshService. The deadline only stops a broken
// test from hanging.
func receive(t testing.TB, p *Prober) types.NamespacedName {
	t.Helper()
	select {
	case ev := <-p.Events():
		return eventOwner(t, ev.Object, "MeshService")
	case <-time.After(30 * time.Second):
		t.Fatal("no event within 30s")
		return types.NamespacedName{}
	}
}

// only returns the single observation of ms, failing t if there is not exactly one.
func only(t testing.TB, p *Prober, ms types.NamespacedName) PodObservation {
	t.Helper()
	obs := p.Observations(ms)
	if len(obs) != 1 {
		t.Fatalf("Observations(%s) = %d pods, want 1: %+v", ms, len(obs), obs)
	}
	return obs[0]
}

func sweep(p *Prober) { p.Sweep(context.Background()) }
