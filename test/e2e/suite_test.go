//go:build e2e

// Package e2e runs the operator end to end against a local kwok cluster (real
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler; kwok fakes the
// kubelet) with the sidecar test double (test/sidecardouble) standing in for
// Envoy and the kubelet double (test/kubeletdouble) for the kubelet's Pod
// Certificate half. Run it with `make test-e2e`; it starts a fresh cluster in BeforeSuite
// through hack/local-cluster.sh and removes it in AfterSuite (E2E_KEEP=1 keeps it).
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

// The e2e cluster differs from the demo's in every name and address, so both can run at once.
const (
	clusterName    = "envoymesh-e2e"
	podCIDR        = "127.2.0.0/16"
	doubleControl  = "127.0.0.1:15030"
	xdsAddress     = "127.0.0.1:18030" // the manager's ADS server (the demo's is on 18000)
	probeInterval  = "1s"
	convergeWithin = 3 * time.Minute
)

var (
	root      string
	stateDir  string
	k8sClient client.Client
	scheme    = runtime.NewScheme()
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "envoymesh-operator e2e suite")
}

// cluster runs a hack/local-cluster.sh subcommand with the e2e cluster's settings.
func cluster(args ...string) {
	GinkgoHelper()
	clusterWith(nil, args...)
}

// clusterWith is cluster with more environment, e.g. DELIVERY=XDS for seed.
func clusterWith(env []string, args ...string) {
	GinkgoHelper()
	cmd := exec.Command(filepath.Join(root, "hack", "local-cluster.sh"), args...)
	cmd.Env = append(os.Environ(),
		"STATE_DIR="+stateDir,
		"CLUSTER_NAME="+clusterName,
		"POD_CIDR="+podCIDR,
		"DOUBLE_CONTROL_ADDRESS="+doubleControl,
		"XDS_ADDRESS="+xdsAddress,
		"PROBE_INTERVAL="+probeInterval,
		"LEADER_ELECT=false",
	)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
	Expect(cmd.Run()).To(Succeed(), "hack/local-cluster.sh %v", args)
}

var _ = BeforeSuite(func() {
	var err error
	root, err = filepath.Abs(filepath.Join("..", ".."))
	Expect(err).NotTo(HaveOccurred())
	stateDir = filepath.Join(root, "bin", "state", "e2e")
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(meshv1alpha1.AddToScheme(scheme)).To(Succeed())

	By("starting a fresh kwok cluster, the operator, the sidecar double and the kubelet double")
	cluster("down")
	cluster("up")
	cluster("install")
	cluster("start-operator")
	cluster("start-double")
	cluster("start-kubelet-double")

	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(stateDir, "kubeconfig"))
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
})

// failed records a failed spec, so AfterSuite can print the logs that explain it.
var failed bool

var _ = AfterEach(func() {
	if CurrentSpecReport().Failed() {
		failed = true
	}
})

var _ = AfterSuite(func() {
	if root == "" {
		return
	}
	if failed || os.Getenv("E2E_KEEP") != "" {
		dumpLogs()
	}
	if os.Getenv("E2E_KEEP") != "" {
		GinkgoWriter.Printf("E2E_KEEP set: cluster left running, KUBECONFIG=%s\n", filepath.Join(stateDir, "kubeconfig"))
		return
	}
	cluster("down")
})

// dumpLogs prints the tail of the operator's and the double's logs, for failures.
func dumpLogs() {
	for _, name := range []string{"manager", "sidecardouble", "kubeletdouble"} {
		b, err := os.ReadFile(filepath.Join(stateDir, "logs", name+".log"))
		if err != nil {
			continue
		}
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		GinkgoWriter.Printf("---- %s.log (tail) ----\n%s\n", name, b)
	}
}

// sidecarInfo is one entry of the double's GET /sidecars.
type sidecarInfo struct {
	Pod      string `json:"pod"`
	Owner    string `json:"owner"`
	Serving  bool   `json:"serving"`
	Version  string `json:"version"`
	Rejected uint64 `json:"rejected"`
}

func doubleSidecars(ctx context.Context) ([]sidecarInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+doubleControl+"/sidecars", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []sidecarInfo
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// setFault sets (mode != "") or clears a fault on every sidecar of ns/service in the double.
func setFault(ns, service, mode string) {
	GinkgoHelper()
	method, url := http.MethodDelete, fmt.Sprintf("http://%s/faults/%s/%s", doubleControl, ns, service)
	if mode != "" {
		method, url = http.MethodPut, url+"?mode="+mode
	}
	req, err := http.NewRequest(method, url, nil)
	Expect(err).NotTo(HaveOccurred())
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	Expect(resp.StatusCode).To(Equal(http.StatusNoContent))
}
