package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

var scheme = runtime.NewScheme()

// managerNamespace is the manager's own namespace (its POD_NAMESPACE), where it
// generates the identity CA Secret.
const managerNamespace = "envoymesh-system"

func init() {
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := meshv1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
}

// plane is one fresh envtest control plane.
type plane struct {
	env        *envtest.Environment
	cfg        *rest.Config // admin, for the bench's own (unthrottled) client
	kubeconfig string       // a file for the manager subprocess
	client     client.Client
	dir        string
}

// startPlane starts kube-apiserver and etcd with the CRDs loaded, and writes a
// kubeconfig for a system:masters user.
func startPlane(o options) (*plane, error) {
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(o.repo, o.crdDir)},
		ErrorIfCRDPathMissing: true,
	}
	if o.cpuProfile > 0 {
		env.ControlPlane.GetAPIServer().Configure().Set("profiling", "true")
	}
	if o.serviceCIDR != "" {
		env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", o.serviceCIDR)
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	p := &plane{env: env}
	fail := func(err error) (*plane, error) {
		p.stop()
		return nil, err
	}
	user, err := env.AddUser(envtest.User{Name: "envoymesh-bench", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		return fail(fmt.Errorf("adding a user: %w", err))
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fail(err)
	}
	if p.dir, err = os.MkdirTemp("", "envoymesh-bench-kube-"); err != nil {
		return fail(err)
	}
	p.kubeconfig = filepath.Join(p.dir, "kubeconfig")
	if err := os.WriteFile(p.kubeconfig, kc, 0o600); err != nil {
		return fail(err)
	}
	// The bench's own client must never be the bottleneck: no client-side limit.
	p.cfg = rest.CopyConfig(cfg)
	p.cfg.QPS, p.cfg.Burst = -1, 0
	if p.client, err = client.New(p.cfg, client.Options{Scheme: scheme}); err != nil {
		return fail(err)
	}
	// The manager generates its identity CA in its own namespace, as deployed;
	// every scenario's objects live in benchNamespace.
	for _, ns := range []string{managerNamespace, benchNamespace} {
		if err := p.namespace(context.Background(), ns); err != nil {
			return fail(err)
		}
	}
	if err := warmUp(context.Background(), p, o); err != nil {
		return fail(fmt.Errorf("warming up the API server: %w", err))
	}
	return p, nil
}

func (p *plane) stop() {
	if p.env != nil {
		if err := p.env.Stop(); err != nil {
			logf("stopping envtest: %v", err)
		}
	}
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
}

func (p *plane) namespace(ctx context.Context, name string) error {
	return p.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
}

// managerProc is the real manager binary running against one plane.
type managerProc struct {
	cmd         *exec.Cmd
	metricsAddr string
	pprofAddr   string
	// xdsAddr is where its ADS server listens (127.0.0.1, a free port).
	xdsAddr string
	logPath string
	exited  chan struct{}
	waitErr error
}

// managerServiceAccount is the manager's ServiceAccount as deployed (its
// POD_SERVICE_ACCOUNT): the SPIFFE ID of its ADS server's certificate names it.
const managerServiceAccount = "envoymesh-controller-manager"

// startManager starts the manager and waits until the workers of the
// MeshService controller, and of the controllers named in waitFor, have started.
func startManager(o options, p *plane, label string, waitFor ...string) (*managerProc, error) {
	return launchManager(o, p, label, nil, nil, func(m *managerProc) (bool, error) { return m.workersStarted(waitFor...) })
}

// launchManager starts the manager with extra flags (after -manager-args, so
// they win) and environment, and waits until ready says it is up.
func launchManager(o options, p *plane, label string, extraArgs, extraEnv []string, ready func(*managerProc) (bool, error)) (*managerProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	m := &managerProc{
		metricsAddr: "127.0.0.1:" + strconv.Itoa(port),
		logPath:     filepath.Join(o.logDir, label+"-manager.log"),
		exited:      make(chan struct{}),
	}
	pprofPort, err := freePort()
	if err != nil {
		return nil, err
	}
	m.pprofAddr = "127.0.0.1:" + strconv.Itoa(pprofPort)
	xdsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	m.xdsAddr = "127.0.0.1:" + strconv.Itoa(xdsPort)
	args := append([]string{
		"--metrics-bind-address=" + m.metricsAddr,
		// Plain HTTP on loopback: a secure scrape would add the manager's own
		// TokenReview and SubjectAccessReview to the API requests it counts
		// (rest_client_requests_total), which the runs report.
		"--metrics-secure=false",
		"--pprof-bind-address=" + m.pprofAddr,
		"--health-probe-bind-address=0",
		"--leader-elect=false",
		"--kube-api-qps=" + strconv.FormatFloat(o.qps, 'f', -1, 64),
		"--kube-api-burst=" + strconv.Itoa(o.burst),
		"--max-concurrent-reconciles=" + strconv.Itoa(o.concurrency),
		"--envoy-image=" + o.envoyImage,
		// Every replica serves ADS, as deployed; on loopback, on a port of its own.
		"--xds-bind-address=" + m.xdsAddr,
		"--xds-host=127.0.0.1",
		"--xds-port=" + strconv.Itoa(xdsPort),
		// Each replica names its report of its ADS streams (its pod's name when
		// deployed); the default, the host name, is the same for every process here.
		"--xds-replica=" + label,
	}, o.managerArgs...)
	args = append(args, extraArgs...)
	logFile, err := os.Create(m.logPath)
	if err != nil {
		return nil, err
	}
	m.cmd = exec.Command(o.manager, args...)
	// POD_NAMESPACE is what the downward API gives the deployed manager: where it
	// keeps (and here generates) the identity CA Secret; POD_SERVICE_ACCOUNT is
	// its ServiceAccount, which its ADS server's certificate names.
	m.cmd.Env = append(os.Environ(), "KUBECONFIG="+p.kubeconfig, "POD_NAMESPACE="+managerNamespace, "POD_SERVICE_ACCOUNT="+managerServiceAccount)
	m.cmd.Env = append(m.cmd.Env, extraEnv...)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		logFile.Close()
		close(m.exited)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-m.exited:
			return nil, fmt.Errorf("manager exited early (%v); log: %s", m.waitErr, m.logPath)
		default:
		}
		if ok, err := ready(m); err == nil && ok {
			return m, nil
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, fmt.Errorf("manager not up after 60s; log: %s", m.logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// workersStarted reports whether the manager logged that the workers of the
// MeshService controller and of the other controllers named started, which each
// does once its caches have synced.
func (m *managerProc) workersStarted(controllers ...string) (bool, error) {
	b, err := os.ReadFile(m.logPath)
	if err != nil {
		return false, err
	}
	want := map[string]bool{"meshservice": true}
	for _, c := range controllers {
		want[c] = true
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, `"msg":"Starting workers"`) {
			continue
		}
		for c := range want {
			if strings.Contains(line, `"controller":"`+c+`"`) {
				delete(want, c)
			}
		}
	}
	return len(want) == 0, nil
}

// alive returns an error when the manager has exited.
func (m *managerProc) alive() error {
	select {
	case <-m.exited:
		return fmt.Errorf("manager exited (%v); log: %s", m.waitErr, m.logPath)
	default:
		return nil
	}
}

// memory reads the manager's peak and current resident set size in bytes.
func (m *managerProc) memory() (peak, current int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmHWM:":
			peak = kb * 1024
		case "VmRSS:":
			current = kb * 1024
		}
	}
	return peak, current, sc.Err()
}

// metrics scrapes the manager's Prometheus endpoint and sums the series of the
// families asked for, by family and the values of the given label.
func (m *managerProc) metrics(families map[string]string) (map[string]float64, error) {
	resp, err := http.Get("http://" + m.metricsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	_ = os.WriteFile(strings.TrimSuffix(m.logPath, "-manager.log")+"-metrics.txt", body, 0o644)
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		labels := ""
		if rest != "" {
			labels, rest, _ = strings.Cut(rest, "}")
		} else {
			name, rest, _ = strings.Cut(line, " ")
		}
		label, ok := families[name]
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			continue
		}
		key := name
		if label != "" {
			var vals []string
			for _, l := range strings.Split(label, ",") {
				vals = append(vals, labelValue(labels, l))
			}
			key += "{" + strings.Join(vals, ",") + "}"
		}
		out[key] += v
	}
	return out, nil
}

func labelValue(labels, name string) string {
	for _, kv := range strings.Split(labels, ",") {
		k, v, _ := strings.Cut(kv, "=")
		if k == name {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

// profileCPU fetches a CPU profile over d from the pprof endpoints under base
// (the manager's, or the API server's) in the background, and writes it to path;
// the channel returned closes once it is written or has failed (which is logged).
func profileCPU(hc *http.Client, base string, d time.Duration, path string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		download(hc, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", strings.TrimSuffix(base, "/"), int(d.Seconds()+0.5)), path)
	}()
	return done
}

// download writes what GET url answers to path. Failures are logged, not
// returned: a missing profile or scrape is no reason to fail a run. With
// -cpu-profile, the API server's /metrics after a run tell manager and floor runs
// apart (requests by verb and resource, watch events).
func download(hc *http.Client, url, path string) {
	resp, err := hc.Get(url)
	if err != nil {
		logf("%s: %v", url, err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s", resp.Status)
	}
	if err == nil {
		err = os.WriteFile(path, body, 0o644)
	}
	if err != nil {
		logf("%s: %v", url, err)
	}
}

func (m *managerProc) stop() {
	if m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
