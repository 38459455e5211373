package prober

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

// TestNotifierDeliversOverflow fills the events channel and checks that enqueue still returns, that
// repeats of a pending owner coalesce, and that feed later delivers every owner that did not fit.
func TestNotifierDeliversOverflow(t *testing.T) {
	n := newNotifier(1, "MeshService")
	owners := map[types.NamespacedName]struct{}{key(ns, "a"): {}, key(ns, "b"): {}, key(ns, "c"): {}}

	// The first enqueue buffers one owner and leaves two pending; the second coalesces those two and
	// adds the buffered one, so four events are owed in all.
	n.enqueue(owners)
	n.enqueue(owners)
	if len(n.events) != 1 || len(n.pending) != 3 {
		t.Fatalf("after two enqueues: %d events buffered, %d pending; want 1 and 3", len(n.events), len(n.pending))
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.feed(ctx)
	}()
	p := &Prober{notify: n}
	got := map[types.NamespacedName]int{}
	for range 4 {
		got[receive(t, p)]++
	}
	cancel()
	<-done

	twice := 0
	for owner := range owners {
		switch got[owner] {
		case 1:
		case 2:
			twice++
		default:
			t.Errorf("%s delivered %d times, want 1 or 2", owner, got[owner])
		}
	}
	if len(got) != len(owners) || twice != 1 {
		t.Errorf("delivered %v, want each owner once and the buffered one twice", got)
	}
	if len(n.events) != 0 || len(n.pending) != 0 {
		t.Errorf("%d events and %d pending owners left over, want none", len(n.events), len(n.pending))
	}
}
