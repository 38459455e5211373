package xds

import (
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
)

// watcher is go-control-plane's snapshot cache with two corrections to how it
// opens a watch for a SotW request. Both rest on versions being content
// hashes, and on the stream's subscription, which the server hands to every
// CreateWatch, remembering the resources last sent on the stream and the
// version they were sent at.
//
// NACK hold. A NACK carries the proxy's previous version, as the protocol
// says, not the rejected one; the cache compares that with the snapshot, finds
// them different and answers at once with the same rejected snapshot. Envoy
// rejects it again, and so on: thousands of round trips a second per proxy.
// For a NACK the watcher presents the rejected version instead, so the cache
// holds the watch until the node's snapshot moves to another version.
//
// Reconnect. On a new stream Envoy's first request carries the version it
// runs. The cache answers anyway when the stream has not been sent the
// resources yet, which on a new stream is always; so every reconnect, to this
// replica or another, would push the whole config again. When the first
// request's version is the snapshot's, the proxy already has exactly these
// resources, and the watcher says so to the cache.
type watcher struct {
	cachev3.SnapshotCache
}

func (w watcher) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	switch {
	case req.GetErrorDetail() != nil:
		if rejected, ok := lastSentVersion(sub); ok {
			held := proto.Clone(req).(*cachev3.Request)
			held.VersionInfo = rejected
			req = held
		}
	case req.GetResponseNonce() == "" && req.GetVersionInfo() != "" && len(sub.ReturnedResources()) == 0:
		sub = w.alreadyHeld(req, sub)
	}
	return w.SnapshotCache.CreateWatch(req, sub, out)
}

// lastSentVersion is the version of the last response of the request's type on
// the stream: the one a NACK rejects, since the server drops requests whose
// nonce is not the latest. In SotW every resource of a response carries the
// response's version. A response without resources leaves nothing to read it
// from; Envoy does not reject empty responses.
func lastSentVersion(sub cachev3.Subscription) (string, bool) {
	for _, v := range sub.ReturnedResources() {
		return v, true
	}
	return "", false
}

// alreadyHeld tells the cache that a reconnecting proxy has every resource of
// the snapshot at the version it presents, if that version is the snapshot's.
func (w watcher) alreadyHeld(req *cachev3.Request, sub cachev3.Subscription) cachev3.Subscription {
	snap, err := w.GetSnapshot(nodeKeyHash{}.ID(req.GetNode()))
	if err != nil || snap.GetVersion(req.GetTypeUrl()) != req.GetVersionInfo() {
		return sub
	}
	names := snap.GetResources(req.GetTypeUrl())
	held := make(map[string]string, len(names))
	for name := range names {
		held[name] = req.GetVersionInfo()
	}
	return heldSubscription{Subscription: sub, returned: held}
}

// heldSubscription is a subscription whose proxy already has returned.
type heldSubscription struct {
	cachev3.Subscription
	returned map[string]string
}

func (h heldSubscription) ReturnedResources() map[string]string { return h.returned }
