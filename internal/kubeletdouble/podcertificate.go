package kubeletdouble

// The Pod Certificate half of the kubelet, after pkg/kubelet/podcertificate/podcertificatemanager.go
// (k8s.io/kubernetes v1.37.2): the same states, transitions, requests, events and bundle format.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	mathrand "math/rand/v2"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	k8serrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// After this long (plus jitter) a PCR we created that the informer does not show is taken to
// have been deleted.
const assumeDeletedThreshold = 10 * time.Minute

// After this long past beginRefreshAt a certificate is overdue for refresh.
const refreshOverdueDuration = 10 * time.Minute

type projectionKey struct {
	Namespace   string
	PodName     string
	PodUID      string
	VolumeName  string
	SourceIndex int
}

// projectionRecord is one podCertificate source's state machine:
//
//	initial ──► wait ──► fresh ──► waitRefresh ──► fresh ...
//	             │                     │
//	             ├──► denied ◄─────────┤
//	             └──► failed ◄─────────┘
type projectionRecord struct {
	lock     sync.Mutex
	curState credState

	// Bookkeeping for State; the kubelet keeps none of it.
	requests  int
	lastPCR   string
	issuedPCR string
}

type credState interface {
	getCredBundle() (privKey, certChain []byte, err error)
}

type credStateInitial struct{}

func (c *credStateInitial) getCredBundle() ([]byte, []byte, error) {
	return nil, nil, fmt.Errorf("credential bundle is not issued yet")
}

type credStateWait struct {
	privateKey   []byte
	pcrName      string
	pcrAbandonAt time.Time
}

func (c *credStateWait) getCredBundle() ([]byte, []byte, error) {
	return nil, nil, fmt.Errorf("credential bundle is not issued yet")
}

type credStateDenied struct{ Reason, Message string }

func (c *credStateDenied) getCredBundle() ([]byte, []byte, error) {
	return nil, nil, fmt.Errorf("PodCertificateRequest was permanently denied: reason=%q message=%q", c.Reason, c.Message)
}

type credStateFailed struct{ Reason, Message string }

func (c *credStateFailed) getCredBundle() ([]byte, []byte, error) {
	return nil, nil, fmt.Errorf("PodCertificateRequest was permanently failed: reason=%q message=%q", c.Reason, c.Message)
}

type credStateFresh struct {
	privateKey                       []byte
	certChain                        []byte
	beginRefreshAt                   time.Time
	notAfter                         time.Time
	eventEmittedForOverdueForRefresh bool
	eventEmittedForExpiration        bool
}

func (c *credStateFresh) getCredBundle() ([]byte, []byte, error) {
	return c.privateKey, c.certChain, nil
}

type credStateWaitRefresh struct {
	privateKey                       []byte
	certChain                        []byte
	beginRefreshAt                   time.Time
	notAfter                         time.Time
	eventEmittedForOverdueForRefresh bool
	eventEmittedForExpiration        bool

	refreshPrivateKey   []byte
	refreshPCRName      string
	refreshPCRAbandonAt time.Time
}

func (c *credStateWaitRefresh) getCredBundle() ([]byte, []byte, error) {
	return c.privateKey, c.certChain, nil
}

// queueAllProjectionsForPod queues every podCertificate source of the pod.
func (k *Kubelet) queueAllProjectionsForPod(uid types.UID) {
	pod, ok := k.getPodByUID(uid)
	if !ok {
		return
	}
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for i, source := range v.Projected.Sources {
			if source.PodCertificate == nil {
				continue
			}
			k.projectionQueue.Add(projectionKey{
				Namespace: pod.Namespace, PodName: pod.Name, PodUID: string(pod.UID),
				VolumeName: v.Name, SourceIndex: i,
			})
		}
	}
}

func (k *Kubelet) processNextProjection(ctx context.Context) bool {
	key, quit := k.projectionQueue.Get()
	if quit {
		return false
	}
	defer k.projectionQueue.Done(key)

	changed, err := k.handleProjection(ctx, key)
	if changed {
		// The credentials a volume would show may have changed: the kubelet shows them at
		// its next remount, the double now.
		k.volumeQueue.Add(types.UID(key.PodUID))
	}
	if err != nil {
		k.log.Error(err, "while handling podCertificate projected volume source", "namespace", key.Namespace, "pod", key.PodName, "volume", key.VolumeName, "sourceIndex", key.SourceIndex)
		k.projectionQueue.AddRateLimited(key)
		return true
	}
	k.projectionQueue.Forget(key)
	return true
}

// handleProjection is the kubelet's handleProjection; changed reports a new state.
func (k *Kubelet) handleProjection(ctx context.Context, key projectionKey) (changed bool, err error) {
	pod, ok := k.getPodByUID(types.UID(key.PodUID))
	if !ok {
		k.cleanupCredStoreForPod(key.PodUID)
		return false, nil
	}

	var source *corev1.PodCertificateProjection
	for _, vol := range pod.Spec.Volumes {
		if vol.Name == key.VolumeName && vol.Projected != nil {
			for i, s := range vol.Projected.Sources {
				if i == key.SourceIndex && s.PodCertificate != nil {
					source = s.PodCertificate
				}
			}
		}
	}
	if source == nil {
		k.log.Info("pod does not contain the named podCertificate projected volume source", "key", key)
		return false, nil
	}

	k.lock.Lock()
	rec := k.credStore[key]
	if rec == nil {
		rec = &projectionRecord{curState: &credStateInitial{}}
		k.credStore[key] = rec
	}
	k.lock.Unlock()

	rec.lock.Lock()
	defer rec.lock.Unlock()
	before := rec.curState
	defer func() { changed = rec.curState != before }()

	now := k.clock.Now()
	switch state := rec.curState.(type) {
	case *credStateInitial:
		privKey, pcr, err := k.createPodCertificateRequest(ctx, pod, source, rec)
		if err != nil {
			return false, fmt.Errorf("while creating initial PodCertificateRequest: %w", err)
		}
		rec.curState = &credStateWait{
			privateKey:   privKey,
			pcrName:      pcr.Name,
			pcrAbandonAt: now.Add(assumeDeletedThreshold + k.jitterDuration()),
		}
		k.log.V(1).Info("PodCertificateRequest created, waiting", "key", key, "pcr", pcr.Namespace+"/"+pcr.Name)
		return false, nil

	case *credStateWait:
		pcr, err := k.pcrLister.PodCertificateRequests(key.Namespace).Get(state.pcrName)
		if k8serrors.IsNotFound(err) && now.After(state.pcrAbandonAt) {
			rec.curState = &credStateInitial{}
			return false, fmt.Errorf("PodCertificateRequest %q appears to have been deleted", key.Namespace+"/"+state.pcrName)
		} else if err != nil {
			return false, fmt.Errorf("while getting PodCertificateRequest %q: %w", key.Namespace+"/"+state.pcrName, err)
		}
		if k.terminal(rec, pod, pcr) {
			return false, nil
		}
		if cond := issued(pcr); cond != nil {
			rec.curState = &credStateFresh{
				privateKey:     state.privateKey,
				certChain:      cleanCertificateChain([]byte(pcr.Status.CertificateChain)),
				beginRefreshAt: pcr.Status.BeginRefreshAt.Time.Add(k.jitterDuration()),
				notAfter:       pcr.Status.NotAfter.Time,
			}
			rec.issuedPCR = pcr.Name
			k.log.Info("PodCertificateRequest issued", "key", key, "pcr", pcr.Namespace+"/"+pcr.Name)
		}
		return false, nil

	case *credStateDenied, *credStateFailed:
		return false, nil // permanent for the pod

	case *credStateFresh:
		if now.Before(state.beginRefreshAt) {
			return false, nil
		}
		if now.After(state.beginRefreshAt.Add(refreshOverdueDuration)) && !state.eventEmittedForOverdueForRefresh {
			k.recorder.Eventf(pod, corev1.EventTypeWarning, "CertificateOverdueForRefresh", "PodCertificate refresh overdue")
			state.eventEmittedForOverdueForRefresh = true
		}
		if now.After(state.notAfter) && !state.eventEmittedForExpiration {
			k.recorder.Eventf(pod, corev1.EventTypeWarning, "CertificateExpired", "PodCertificate expired")
			state.eventEmittedForExpiration = true
		}
		privKey, pcr, err := k.createPodCertificateRequest(ctx, pod, source, rec)
		if err != nil {
			return false, fmt.Errorf("while creating refresh PodCertificateRequest: %w", err)
		}
		rec.curState = &credStateWaitRefresh{
			privateKey:                       state.privateKey,
			certChain:                        state.certChain,
			beginRefreshAt:                   state.beginRefreshAt,
			notAfter:                         state.notAfter,
			eventEmittedForOverdueForRefresh: state.eventEmittedForOverdueForRefresh,
			eventEmittedForExpiration:        state.eventEmittedForExpiration,
			refreshPrivateKey:                privKey,
			refreshPCRName:                   pcr.Name,
			refreshPCRAbandonAt:              now.Add(assumeDeletedThreshold + k.jitterDuration()),
		}
		k.log.Info("refresh PodCertificateRequest created", "key", key, "pcr", pcr.Namespace+"/"+pcr.Name)
		return false, nil

	case *credStateWaitRefresh:
		pcr, err := k.pcrLister.PodCertificateRequests(key.Namespace).Get(state.refreshPCRName)
		if k8serrors.IsNotFound(err) && now.After(state.refreshPCRAbandonAt) {
			rec.curState = &credStateFresh{
				privateKey:                       state.privateKey,
				certChain:                        state.certChain,
				beginRefreshAt:                   state.beginRefreshAt,
				notAfter:                         state.notAfter,
				eventEmittedForOverdueForRefresh: state.eventEmittedForOverdueForRefresh,
				eventEmittedForExpiration:        state.eventEmittedForExpiration,
			}
			return false, fmt.Errorf("PodCertificateRequest appears to have been deleted")
		} else if err != nil {
			return false, fmt.Errorf("while getting PodCertificateRequest %q: %w", key.Namespace+"/"+state.refreshPCRName, err)
		}
		if k.terminal(rec, pod, pcr) {
			return false, nil
		}
		if cond := issued(pcr); cond != nil {
			rec.curState = &credStateFresh{
				privateKey:     state.refreshPrivateKey,
				certChain:      cleanCertificateChain([]byte(pcr.Status.CertificateChain)),
				beginRefreshAt: pcr.Status.BeginRefreshAt.Time.Add(k.jitterDuration()),
				notAfter:       pcr.Status.NotAfter.Time,
			}
			rec.issuedPCR = pcr.Name
			k.log.Info("refresh PodCertificateRequest issued", "key", key, "pcr", pcr.Namespace+"/"+pcr.Name)
			return false, nil
		}
		if now.After(state.beginRefreshAt.Add(refreshOverdueDuration)) && !state.eventEmittedForOverdueForRefresh {
			k.recorder.Eventf(pod, corev1.EventTypeWarning, "CertificateOverdueForRefresh", "PodCertificate refresh overdue")
			state.eventEmittedForOverdueForRefresh = true
		}
		if now.After(state.notAfter) && !state.eventEmittedForExpiration {
			k.recorder.Eventf(pod, corev1.EventTypeWarning, "CertificateExpired", "PodCertificate expired")
			state.eventEmittedForExpiration = true
		}
		return false, nil
	}
	return false, nil
}

// terminal moves rec to denied or failed when the PCR says so, with the kubelet's Warning Event.
// The kubelet passes the condition's reason as the event's format and its own sentence as an
// argument (record.EventRecorder.Eventf(pod, type, reason, messageFmt, args...)); the call is
// reproduced as it is, so the Event's message is the one a real kubelet posts.
func (k *Kubelet) terminal(rec *projectionRecord, pod *corev1.Pod, pcr *certificatesv1.PodCertificateRequest) bool {
	name := pcr.Namespace + "/" + pcr.Name
	for _, cond := range pcr.Status.Conditions {
		switch cond.Type {
		case certificatesv1.PodCertificateRequestConditionTypeDenied:
			rec.curState = &credStateDenied{Reason: cond.Reason, Message: cond.Message}
			k.log.Info("PodCertificateRequest denied", "pcr", name, "reason", cond.Reason, "message", cond.Message)
			eventMessage := fmt.Sprintf("PodCertificateRequest %s was denied, reason=%q, message=%q", name, cond.Reason, cond.Message)
			k.recorder.Eventf(pod, corev1.EventTypeWarning, certificatesv1.PodCertificateRequestConditionTypeDenied, cond.Reason, eventMessage)
			return true
		case certificatesv1.PodCertificateRequestConditionTypeFailed:
			rec.curState = &credStateFailed{Reason: cond.Reason, Message: cond.Message}
			k.log.Info("PodCertificateRequest failed", "pcr", name, "reason", cond.Reason, "message", cond.Message)
			eventMessage := fmt.Sprintf("PodCertificateRequest %s failed, reason=%q, message=%q", name, cond.Reason, cond.Message)
			k.recorder.Eventf(pod, corev1.EventTypeWarning, certificatesv1.PodCertificateRequestConditionTypeFailed, cond.Reason, eventMessage)
			return true
		case certificatesv1.PodCertificateRequestConditionTypeIssued:
			return false
		}
	}
	return false
}

// issued returns the Issued condition, nil while there is none. Like the kubelet, the first of
// Issued, Denied and Failed decides; the API server allows only one.
func issued(pcr *certificatesv1.PodCertificateRequest) *metav1.Condition {
	for i, cond := range pcr.Status.Conditions {
		switch cond.Type {
		case certificatesv1.PodCertificateRequestConditionTypeIssued:
			return &pcr.Status.Conditions[i]
		case certificatesv1.PodCertificateRequestConditionTypeDenied, certificatesv1.PodCertificateRequestConditionTypeFailed:
			return nil
		}
	}
	return nil
}

// jitterDuration is the kubelet's 0–5 minute jitter on refresh and abandonment, or 0 when off.
func (k *Kubelet) jitterDuration() time.Duration {
	if !k.opts.Jitter {
		return 0
	}
	return time.Duration(mathrand.Int64N(int64(5 * time.Minute)))
}

func (k *Kubelet) cleanupCredStoreForPod(podUID string) {
	k.lock.Lock()
	defer k.lock.Unlock()
	for key := range k.credStore {
		if key.PodUID == podUID {
			delete(k.credStore, key)
		}
	}
}

// createPodCertificateRequest files a PCR for source with a fresh key, as the kubelet does. The
// ServiceAccount's UID is read from the API each time, as the kubelet does.
func (k *Kubelet) createPodCertificateRequest(ctx context.Context, pod *corev1.Pod, source *corev1.PodCertificateProjection, rec *projectionRecord) ([]byte, *certificatesv1.PodCertificateRequest, error) {
	sa, err := k.client.CoreV1().ServiceAccounts(pod.Namespace).Get(ctx, pod.Spec.ServiceAccountName, metav1.GetOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("while fetching service account: %w", err)
	}
	privateKey, pkcs10Req, err := generateKeyAndProof(source.KeyType)
	if err != nil {
		return nil, nil, fmt.Errorf("while generating keypair: %w", err)
	}
	keyPEM, err := pemEncodeKey(privateKey)
	if err != nil {
		return nil, nil, fmt.Errorf("while PEM-encoding private key: %w", err)
	}
	req := &certificatesv1.PodCertificateRequest{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    pod.Namespace,
			GenerateName: "req-",
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1",
				Kind:       "Pod",
				Name:       pod.Name,
				UID:        pod.UID,
			}},
		},
		Spec: certificatesv1.PodCertificateRequestSpec{
			SignerName:                source.SignerName,
			PodName:                   pod.Name,
			PodUID:                    pod.UID,
			ServiceAccountName:        pod.Spec.ServiceAccountName,
			ServiceAccountUID:         sa.UID,
			NodeName:                  types.NodeName(k.opts.NodeName),
			NodeUID:                   k.opts.NodeUID,
			MaxExpirationSeconds:      source.MaxExpirationSeconds,
			StubPKCS10Request:         pkcs10Req,
			UnverifiedUserAnnotations: source.UserAnnotations,
		},
	}
	req, err = k.client.CertificatesV1().PodCertificateRequests(pod.Namespace).Create(ctx, req, metav1.CreateOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("while creating on API: %w", err)
	}
	rec.requests++
	rec.lastPCR = req.Name
	return keyPEM, req, nil
}

// generateKeyAndProof makes a key of keyType and the stub PKCS#10 request (empty template) proving it.
func generateKeyAndProof(keyType string) (crypto.PrivateKey, []byte, error) {
	var privKey crypto.PrivateKey
	var err error
	switch keyType {
	case "RSA3072":
		privKey, err = rsa.GenerateKey(rand.Reader, 3072)
	case "RSA4096":
		privKey, err = rsa.GenerateKey(rand.Reader, 4096)
	case "ECDSAP256":
		privKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ECDSAP384":
		privKey, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ECDSAP521":
		privKey, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "ED25519":
		_, privKey, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, nil, fmt.Errorf("unknown key type %q", keyType)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("while generating %s key: %w", keyType, err)
	}
	pkcs10Req, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, privKey)
	if err != nil {
		return nil, nil, fmt.Errorf("while generating stub PKCS#10 request: %w", err)
	}
	return privKey, pkcs10Req, nil
}

func pemEncodeKey(key crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("while marshaling key to PKCS#8: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// cleanCertificateChain re-encodes every PEM block as a bare CERTIFICATE block, dropping headers
// and whatever text lies between blocks.
func cleanCertificateChain(in []byte) []byte {
	var out bytes.Buffer
	rest := in
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		out.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes}))
	}
	return out.Bytes()
}

// getPodCertificateCredentialBundle is what the projected volume asks for one podCertificate source.
func (k *Kubelet) getPodCertificateCredentialBundle(key projectionKey) ([]byte, []byte, error) {
	k.lock.Lock()
	rec := k.credStore[key]
	k.lock.Unlock()
	if rec == nil {
		return nil, nil, fmt.Errorf("no credentials yet for key=%v", key)
	}
	rec.lock.Lock()
	defer rec.lock.Unlock()
	return rec.curState.getCredBundle()
}
