package main

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestRunNeedsDir(t *testing.T) {
	if err := run("", "kwok-node-0", "", 0); err == nil || err.Error() != "--dir is required" {
		t.Fatalf("run without --dir = %v", err)
	}
}

func TestWaitForNode(t *testing.T) {
	cs := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "kwok-node-0", UID: "node-uid"}})
	node, err := waitForNode(context.Background(), cs, "kwok-node-0")
	if err != nil || node.UID != "node-uid" {
		t.Fatalf("waitForNode = %v, %v", node, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := waitForNode(ctx, cs, "missing"); err == nil {
		t.Fatal("waitForNode of a missing node returned no error when its context ended")
	}
}
