package prober

import (
	"context"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/event"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// notifier hands changed owners to the controller without ever blocking a sweep and without losing
// a change: an owner goes straight into the buffered events channel when there is room, and
// otherwise waits in pending, a set that coalesces repeats, until feed delivers it.
type notifier struct {
	// kind is the Kind of the owners the events name.
	kind   string
	events chan event.GenericEvent
	// wake tells feed that pending has owners; its one-slot buffer keeps a wake-up sent while feed
	// is busy.
	wake chan struct{}

	mu      sync.Mutex
	pending map[types.NamespacedName]struct{}
}

func newNotifier(buffer int, kind string) *notifier {
	return &notifier{
		kind:    kind,
		events:  make(chan event.GenericEvent, buffer),
		wake:    make(chan struct{}, 1),
		pending: make(map[types.NamespacedName]struct{}),
	}
}

// enqueue raises one event per owner. It never blocks.
func (n *notifier) enqueue(owners map[types.NamespacedName]struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for owner := range owners {
		if _, ok := n.pending[owner]; ok {
			continue
		}
		select {
		case n.events <- ownerEvent(n.kind, owner):
		default:
			n.pending[owner] = struct{}{}
		}
	}
	if len(n.pending) > 0 {
		select {
		case n.wake <- struct{}{}:
		default:
		}
	}
}

// feed delivers pending owners until ctx ends, blocking on the events channel only here, outside
// any sweep.
func (n *notifier) feed(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		}
		for {
			owner, ok := n.pop()
			if !ok {
				break
			}
			select {
			case n.events <- ownerEvent(n.kind, owner):
			case <-ctx.Done():
				return
			}
		}
	}
}

func (n *notifier) pop() (types.NamespacedName, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for owner := range n.pending {
		delete(n.pending, owner)
		return owner, true
	}
	return types.NamespacedName{}, false
}

// ownerEvent names an owner of the given kind (MeshService or ServiceMesh). Metadata is all a
// handler such as EnqueueRequestForObject reads; the TypeMeta keeps logs and other handlers honest.
func ownerEvent(kind string, owner types.NamespacedName) event.GenericEvent {
	return event.GenericEvent{Object: &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: meshv1alpha1.GroupVersion.String(), Kind: kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: owner.Namespace, Name: owner.Name},
	}}
}
