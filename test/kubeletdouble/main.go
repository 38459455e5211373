// Command kubeletdouble runs the TEST DOUBLE of the kubelet's Pod Certificate half
// (internal/kubeletdouble) for one node of the local kwok cluster of `make demo` and the e2e
// suite, where kwok fakes pods but handles no podCertificate or clusterTrustBundle volume. For
// every pod bound to --node-name it files and refreshes the PodCertificateRequests of the pod's
// podCertificate sources and writes those projected volumes, as the kubelet lays them out, under
// --dir/<podUID>/volumes/kubernetes.io~projected/<volume>/. It runs until SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/envoymesh/envoymesh-operator/internal/kubeletdouble"
)

func main() {
	var (
		kubeconfig, nodeName, dir string
		verbosity                 int
	)
	flag.StringVar(&kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "Kubeconfig of the cluster whose node to play.")
	flag.StringVar(&nodeName, "node-name", "kwok-node-0", "The node whose pods the double serves.")
	flag.StringVar(&dir, "dir", "", "Where pod volumes are written (required).")
	flag.IntVar(&verbosity, "v", 0, "Log verbosity (1 also logs each request created).")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	if err := run(kubeconfig, nodeName, dir, verbosity); err != nil {
		log.Fatal(err)
	}
}

func run(kubeconfig, nodeName, dir string, verbosity int) error {
	if dir == "" {
		return errors.New("--dir is required")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	node, err := waitForNode(ctx, cs, nodeName)
	if ctx.Err() != nil {
		return nil // stopped before the node showed up
	}
	if err != nil {
		return err
	}
	logger := funcr.New(func(prefix, args string) {
		if prefix != "" {
			args = prefix + " " + args
		}
		log.Println(args)
	}, funcr.Options{Verbosity: verbosity})
	log.Printf("kubelet double: node %s (uid %s), volumes under %s", node.Name, node.UID, dir)
	return kubeletdouble.New(kubeletdouble.Options{
		Client: cs, NodeName: node.Name, NodeUID: node.UID, Dir: dir, Jitter: true, Logger: logger,
	}).Run(ctx)
}

// waitForNode reads the Node for its UID, retrying while it cannot (the cluster script adds the
// node once the control plane is up).
func waitForNode(ctx context.Context, cs kubernetes.Interface, name string) (*corev1.Node, error) {
	for {
		node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return node, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("reading node %s: %w", name, ctx.Err())
		}
		log.Printf("reading node %s: %v", name, err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reading node %s: %w", name, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}
