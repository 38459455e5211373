package kubeletdouble

import (
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	certlistersv1 "k8s.io/client-go/listers/certificates/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// refreshPassInterval is how often the kubelet redrives every projection (wait.JitterUntil with
// jitter factor 1.0: every 1 to 2 minutes). The double also rewrites every served volume then,
// as the kubelet's periodic pod sync remounts projected volumes.
const refreshPassInterval = time.Minute

// mirrorPodAnnotation marks static pods' mirrors, which the kubelet gives no pod certificates.
const mirrorPodAnnotation = "kubernetes.io/config.mirror"

// Options configure a Kubelet.
type Options struct {
	// Client is how the double talks to the API server. It creates PodCertificateRequests and
	// Events, reads ServiceAccounts and watches Pods, PodCertificateRequests and ClusterTrustBundles.
	Client kubernetes.Interface
	// NodeName and NodeUID are the node the double plays: it serves pods with spec.nodeName ==
	// NodeName and names the node in every request, as the kubelet does.
	NodeName string
	NodeUID  types.UID
	// Dir holds the volumes, at <Dir>/<podUID>/volumes/kubernetes.io~projected/<volumeName>/ as
	// the kubelet lays them out under /var/lib/kubelet/pods.
	Dir string
	// Clock decides when credentials are refreshed; tests pass a fake clock to reach beginRefreshAt.
	// Nil means the real clock.
	Clock clock.WithTicker
	// Jitter turns on the kubelet's random 0–5 minute delay added to beginRefreshAt and to the
	// abandonment of a request that does not show up, and its 1–2 minute refresh pass. Tests turn
	// it off so the fake clock decides alone.
	Jitter bool
	// Logger is optional.
	Logger logr.Logger
}

// Kubelet is the double. Create it with New and start it with Run.
type Kubelet struct {
	opts     Options
	client   kubernetes.Interface
	clock    clock.WithTicker
	log      logr.Logger
	recorder record.EventRecorder

	podIndexer cache.Indexer
	pcrLister  certlistersv1.PodCertificateRequestLister
	ctbLister  certlistersv1.ClusterTrustBundleLister

	projectionQueue workqueue.TypedRateLimitingInterface[projectionKey]
	volumeQueue     workqueue.TypedRateLimitingInterface[types.UID]

	// lock covers credStore and mountErrors; each record has its own lock.
	lock        sync.Mutex
	credStore   map[projectionKey]*projectionRecord
	mountErrors map[volumeKey]string
}

type volumeKey struct {
	PodUID     types.UID
	VolumeName string
}

// New returns a double that does nothing until Run.
func New(o Options) *Kubelet {
	k := &Kubelet{
		opts:            o,
		client:          o.Client,
		clock:           o.Clock,
		log:             o.Logger,
		projectionQueue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[projectionKey]()),
		volumeQueue:     workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[types.UID]()),
		credStore:       map[projectionKey]*projectionRecord{},
		mountErrors:     map[volumeKey]string{},
	}
	if k.clock == nil {
		k.clock = clock.RealClock{}
	}
	return k
}

// Run serves the node's pods until ctx is done: it watches the pods with spec.nodeName ==
// NodeName, their PodCertificateRequests and all ClusterTrustBundles, files and refreshes a
// request per podCertificate source and writes every projected volume that has podCertificate
// and/or clusterTrustBundle sources. Run can be called once.
func (k *Kubelet) Run(ctx context.Context) error {
	if k.client == nil || k.opts.NodeName == "" || k.opts.NodeUID == "" || k.opts.Dir == "" {
		return errors.New("kubeletdouble: Client, NodeName, NodeUID and Dir must be set")
	}
	defer k.projectionQueue.ShutDown()
	defer k.volumeQueue.ShutDown()
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: k.client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	k.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: k.opts.NodeName})

	// Pods and requests of this node only, through the kubelet's field selector.
	nodeFactory := informers.NewSharedInformerFactoryWithOptions(k.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.opts.NodeName).String()
		}))
	clusterFactory := informers.NewSharedInformerFactory(k.client, 0)
	podInformer := nodeFactory.Core().V1().Pods().Informer()
	pcrInformer := nodeFactory.Certificates().V1().PodCertificateRequests()
	ctbInformer := clusterFactory.Certificates().V1().ClusterTrustBundles()
	if err := podInformer.AddIndexers(cache.Indexers{"uid": func(obj any) ([]string, error) {
		return []string{string(obj.(*corev1.Pod).UID)}, nil
	}}); err != nil {
		return err
	}
	k.podIndexer = podInformer.GetIndexer()
	k.pcrLister = pcrInformer.Lister()
	k.ctbLister = ctbInformer.Lister()

	trackPod := func(obj any) {
		if pod, ok := obj.(*corev1.Pod); ok {
			k.queueAllProjectionsForPod(pod.UID)
			k.volumeQueue.Add(pod.UID)
		}
	}
	_, err := podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    trackPod,
		UpdateFunc: func(_, obj any) { trackPod(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				k.cleanupCredStoreForPod(string(pod.UID)) // ForgetPod
				k.volumeQueue.Add(pod.UID)                // tears the volumes down
			}
		},
	})
	if err != nil {
		return err
	}
	_, err = pcrInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.queueForPCR(obj) },
		UpdateFunc: func(_, obj any) { k.queueForPCR(obj) },
		DeleteFunc: func(obj any) { k.queueForPCR(obj) },
	})
	if err != nil {
		return err
	}
	// The kubelet reads trust anchors when it (re)mounts; the double rewrites on every change.
	_, err = ctbInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { k.queueAllVolumes() },
		UpdateFunc: func(_, _ any) { k.queueAllVolumes() },
		DeleteFunc: func(any) { k.queueAllVolumes() },
	})
	if err != nil {
		return err
	}

	nodeFactory.Start(ctx.Done())
	clusterFactory.Start(ctx.Done())
	defer nodeFactory.Shutdown()
	defer clusterFactory.Shutdown()
	for _, f := range []informers.SharedInformerFactory{nodeFactory, clusterFactory} {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return fmt.Errorf("kubeletdouble: cache of %v did not sync", typ)
			}
		}
	}
	k.log.Info("kubelet double running", "node", k.opts.NodeName, "dir", k.opts.Dir)

	var wg sync.WaitGroup
	wg.Go(func() {
		for k.processNextProjection(ctx) {
		}
	})
	wg.Go(func() {
		for k.processNextVolume() {
		}
	})
	wg.Go(func() { k.refreshLoop(ctx) })
	<-ctx.Done()
	k.projectionQueue.ShutDown()
	k.volumeQueue.ShutDown()
	wg.Wait()
	return nil
}

func (k *Kubelet) queueForPCR(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if pcr, ok := obj.(*certificatesv1.PodCertificateRequest); ok {
		k.queueAllProjectionsForPod(pcr.Spec.PodUID)
	}
}

// refreshLoop is the kubelet's refresh pass, on the double's clock, plus the periodic remount.
func (k *Kubelet) refreshLoop(ctx context.Context) {
	for {
		d := refreshPassInterval
		if k.opts.Jitter {
			d += time.Duration(mathrand.Int64N(int64(refreshPassInterval)))
		}
		t := k.clock.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		for _, pod := range k.pods() {
			k.queueAllProjectionsForPod(pod.UID)
			k.volumeQueue.Add(pod.UID)
		}
	}
}

func (k *Kubelet) queueAllVolumes() {
	for _, pod := range k.pods() {
		k.volumeQueue.Add(pod.UID)
	}
}

// pods are the non-mirror pods bound to the node.
func (k *Kubelet) pods() []*corev1.Pod {
	var out []*corev1.Pod
	for _, obj := range k.podIndexer.List() {
		if pod := obj.(*corev1.Pod); !isMirror(pod) {
			out = append(out, pod)
		}
	}
	return out
}

func (k *Kubelet) getPodByUID(uid types.UID) (*corev1.Pod, bool) {
	if k.podIndexer == nil {
		return nil, false
	}
	objs, err := k.podIndexer.ByIndex("uid", string(uid))
	if err != nil || len(objs) == 0 {
		return nil, false
	}
	pod := objs[0].(*corev1.Pod)
	if isMirror(pod) {
		return nil, false
	}
	return pod, true
}

func isMirror(pod *corev1.Pod) bool {
	_, ok := pod.Annotations[mirrorPodAnnotation]
	return ok
}

func (k *Kubelet) processNextVolume() bool {
	uid, quit := k.volumeQueue.Get()
	if quit {
		return false
	}
	defer k.volumeQueue.Done(uid)
	if err := k.syncVolumes(uid); err != nil {
		// The kubelet retries a failed mount with backoff too.
		k.volumeQueue.AddRateLimited(uid)
		return true
	}
	k.volumeQueue.Forget(uid)
	return true
}

// syncVolumes writes every served volume of the pod, or removes the pod's directory once the
// pod is gone.
func (k *Kubelet) syncVolumes(uid types.UID) error {
	pod, ok := k.getPodByUID(uid)
	if !ok {
		k.lock.Lock()
		for key := range k.mountErrors {
			if key.PodUID == uid {
				delete(k.mountErrors, key)
			}
		}
		k.lock.Unlock()
		return os.RemoveAll(filepath.Join(k.opts.Dir, string(uid)))
	}
	var errs []error
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if !servedVolume(v) {
			continue
		}
		err := k.setUpVolume(pod, v)
		msg := ""
		if err != nil {
			// As the kubelet's FailedMount event words it.
			msg = fmt.Sprintf("MountVolume.SetUp failed for volume %q : %v", v.Name, err)
			errs = append(errs, err)
		}
		key := volumeKey{PodUID: uid, VolumeName: v.Name}
		k.lock.Lock()
		prev, seen := k.mountErrors[key]
		k.mountErrors[key] = msg
		k.lock.Unlock()
		switch {
		case msg != "" && msg != prev:
			k.log.Info("volume not written", "pod", pod.Namespace+"/"+pod.Name, "volume", v.Name, "error", err.Error())
		case msg == "" && (prev != "" || !seen):
			k.log.Info("volume written", "pod", pod.Namespace+"/"+pod.Name, "volume", v.Name, "dir", k.VolumeDir(uid, v.Name))
		}
	}
	return errors.Join(errs...)
}

// VolumeDir is where the double writes the pod's projected volume, as the kubelet would under
// /var/lib/kubelet/pods.
func (k *Kubelet) VolumeDir(podUID types.UID, volumeName string) string {
	return filepath.Join(k.opts.Dir, string(podUID), "volumes", "kubernetes.io~projected", volumeName)
}

// Phase is where a podCertificate source is in the kubelet's state machine.
type Phase string

const (
	// PhaseUnknown: the double has not (yet) handled such a source.
	PhaseUnknown Phase = ""
	// PhaseWaiting: no credentials yet (states initial and wait).
	PhaseWaiting Phase = "Waiting"
	// PhaseIssued: credentials in place (states fresh and waitRefresh).
	PhaseIssued Phase = "Issued"
	// PhaseDenied and PhaseFailed are terminal for the pod's projection.
	PhaseDenied Phase = "Denied"
	PhaseFailed Phase = "Failed"
)

// State is one podCertificate source of a pod's volume, for assertions.
type State struct {
	Phase Phase
	// Reason and Message are the Denied or Failed condition's.
	Reason, Message string
	// Requests counts the PodCertificateRequests filed for the source.
	Requests int
	// CurrentPCR is the request filed last; IssuedPCR the one whose certificate is in place.
	CurrentPCR, IssuedPCR string
	// Refreshing: a refresh request is pending while the old credentials stay in place.
	Refreshing bool
	// NotAfter and BeginRefreshAt are those of the credentials in place; BeginRefreshAt includes
	// the jitter when it is on.
	NotAfter, BeginRefreshAt time.Time
	// MountError is why the volume was last not written (the kubelet's FailedMount message), or
	// empty once it was.
	MountError string
}

// State returns the first podCertificate source of the pod's volume.
func (k *Kubelet) State(podUID types.UID, volumeName string) State {
	k.lock.Lock()
	var rec *projectionRecord
	best := -1
	for key, r := range k.credStore {
		if key.PodUID == string(podUID) && key.VolumeName == volumeName && (best < 0 || key.SourceIndex < best) {
			rec, best = r, key.SourceIndex
		}
	}
	mountErr := k.mountErrors[volumeKey{PodUID: podUID, VolumeName: volumeName}]
	k.lock.Unlock()

	s := State{MountError: mountErr}
	if rec == nil {
		return s
	}
	rec.lock.Lock()
	defer rec.lock.Unlock()
	s.Requests, s.CurrentPCR, s.IssuedPCR = rec.requests, rec.lastPCR, rec.issuedPCR
	switch st := rec.curState.(type) {
	case *credStateInitial, *credStateWait:
		s.Phase = PhaseWaiting
	case *credStateFresh:
		s.Phase, s.NotAfter, s.BeginRefreshAt = PhaseIssued, st.notAfter, st.beginRefreshAt
	case *credStateWaitRefresh:
		s.Phase, s.NotAfter, s.BeginRefreshAt, s.Refreshing = PhaseIssued, st.notAfter, st.beginRefreshAt, true
	case *credStateDenied:
		s.Phase, s.Reason, s.Message = PhaseDenied, st.Reason, st.Message
	case *credStateFailed:
		s.Phase, s.Reason, s.Message = PhaseFailed, st.Reason, st.Message
	}
	return s
}
