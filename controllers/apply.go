package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// FieldOwner is the server-side apply field manager of everything the operator writes.
const FieldOwner = "envoymesh-operator"

// errNotOwned means an object of the desired name exists and is not controlled by
// the resource we reconcile; we leave it as it was.
type errNotOwned struct {
	kind, name string
	// unseen: the cache holds its kind only with our label, so it may not be
	// cached, and no event need come when it is deleted (see retryBlocked).
	unseen bool
}

func (e *errNotOwned) Error() string {
	return fmt.Sprintf("%s %q already exists and is not managed by this resource; delete or rename it", e.kind, e.name)
}

// ownedObject is one object an owner controls: how to look up what exists under
// its name, and how to build what should be there.
type ownedObject struct {
	kind string
	// existing is an empty object of the kind, named as the desired one.
	existing client.Object
	// desired builds the object to apply. It runs only when an apply may be
	// needed, so an expensive body (a rendered Envoy config) is not built for a
	// reconcile that would send nothing.
	desired func() (client.Object, error)
	// version, when set, stands for everything desired depends on: while it and
	// the object are as the last apply left them, desired is not even built.
	// Without it, the body is built and its hash compared.
	version string
}

// owned is an object built before the reconcile applies it.
func owned(desired, existing client.Object) ownedObject {
	existing.SetNamespace(desired.GetNamespace())
	existing.SetName(desired.GetName())
	return ownedObject{
		kind:     desired.GetObjectKind().GroupVersionKind().Kind,
		existing: existing,
		desired:  func() (client.Object, error) { return desired, nil },
	}
}

// ownedVersioned is an object whose content version is known before it is
// built: build runs only when that version, or the object, changed.
func ownedVersioned(kind string, existing client.Object, version string, build func() (client.Object, error)) ownedObject {
	return ownedObject{kind: kind, existing: existing, desired: build, version: version}
}

func (o ownedObject) key() client.ObjectKey { return client.ObjectKeyFromObject(o.existing) }

// errConflicts lists every object of a desired name that the owner does not
// control. errors.As finds each *errNotOwned in it.
type errConflicts []*errNotOwned

func (e errConflicts) Error() string {
	msgs := make([]string, len(e))
	for i, c := range e {
		msgs[i] = c.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e errConflicts) Unwrap() []error {
	errs := make([]error, len(e))
	for i, c := range e {
		errs[i] = c
	}
	return errs
}

// lookup reads what exists under o's name into o.existing, and says whether
// anything does. It reads c (the cache) first. The cache holds the kinds we write
// only with objects.ManagedByLabel (cacheOptions), so for those a miss may hide a
// foreign object of our name: then, when live is set, the API server decides.
// While our objects exist and carry the label, reconciles read only the cache;
// an object not yet created costs one live GET, by the reconcile that creates it.
func lookup(ctx context.Context, c, live client.Reader, o ownedObject) (bool, error) {
	found, miss, err := lookupCached(ctx, c, live, o)
	if err != nil || !miss {
		return found, err
	}
	return lookupLive(ctx, live, o)
}

// lookupCached is lookup's cache read. miss means the cache does not know,
// and lookupLive must ask.
func lookupCached(ctx context.Context, c, live client.Reader, o ownedObject) (found, miss bool, err error) {
	err = c.Get(ctx, o.key(), o.existing)
	switch {
	case err == nil:
		return true, false, nil
	case !apierrors.IsNotFound(err):
		return false, false, err
	}
	return false, live != nil && cachedByLabel(o.existing), nil
}

// lookupLive is lookup's read of the API server.
func lookupLive(ctx context.Context, live client.Reader, o ownedObject) (bool, error) {
	err := live.Get(ctx, o.key(), o.existing)
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// checkOwned looks up every object before any is applied and returns
// errConflicts naming those that exist and owner does not control. The objects
// of one owner reference each other (a Deployment mounts its ConfigMap), so one
// foreign object must hold back all of them. Without a conflict, found tells for
// each object whether it exists (then its existing holds it).
//
// The cache misses are read from the API server at once, not one after the
// other: each kind has its own client-side token bucket, so under load (a
// thousand MeshServices created at once) the reads of a new MeshService's five
// objects wait for their buckets side by side instead of in a row, and add one
// wait, not five, to its first reconcile.
func checkOwned(ctx context.Context, c, live client.Reader, owner client.Object, objs []ownedObject) (found []bool, err error) {
	found = make([]bool, len(objs))
	var misses []int
	for i, o := range objs {
		var miss bool
		if found[i], miss, err = lookupCached(ctx, c, live, o); err != nil {
			return nil, err
		}
		if miss {
			misses = append(misses, i)
		}
	}
	errs := make([]error, len(misses))
	var wg sync.WaitGroup
	for j, i := range misses {
		wg.Go(func() { found[i], errs[j] = lookupLive(ctx, live, objs[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	var conflicts errConflicts
	for i, o := range objs {
		if found[i] && !metav1.IsControlledBy(o.existing, owner) {
			conflicts = append(conflicts, &errNotOwned{kind: o.kind, name: o.key().Name, unseen: cachedByLabel(o.existing)})
		}
	}
	if len(conflicts) > 0 {
		return nil, conflicts
	}
	return found, nil
}

// applyAllOwned applies every object, or none of them when checkOwned finds a
// conflict: the error then holds an *errNotOwned for each, and when one of them
// may be deleted unseen, owner is marked blocked in applied (see retryBlocked).
func applyAllOwned(ctx context.Context, c client.Client, applied *appliedVersions, owner client.Object, objs []ownedObject) error {
	found, err := checkOwned(ctx, c, applied.live, owner, objs)
	var conflicts errConflicts
	if errors.As(err, &conflicts) && slices.ContainsFunc(conflicts, func(e *errNotOwned) bool { return e.unseen }) {
		applied.block(client.ObjectKeyFromObject(owner))
	}
	if err != nil {
		return err
	}
	for i, o := range objs {
		if err := applyChecked(ctx, c, applied, owner, o, found[i]); err != nil {
			return fmt.Errorf("applying %s %s: %w", o.kind, o.key().Name, err)
		}
	}
	return nil
}

// applyOwned server-side-applies o unless an object of its name exists that
// owner does not control (lookup finds it).
func applyOwned(ctx context.Context, c client.Client, applied *appliedVersions, owner client.Object, o ownedObject) error {
	found, err := lookup(ctx, c, applied.live, o)
	if err != nil {
		return err
	}
	if found && !metav1.IsControlledBy(o.existing, owner) {
		return &errNotOwned{kind: o.kind, name: o.key().Name, unseen: cachedByLabel(o.existing)}
	}
	return applyChecked(ctx, c, applied, owner, o, found)
}

// applyChecked applies o, which lookup found (in o.existing, controlled by
// owner) or not. The apply sends only what the builders set (objects.ApplyBody),
// and is skipped when applied shows it would change nothing: by o's version,
// before o is built, or else by a hash of the body.
func applyChecked(ctx context.Context, c client.Client, applied *appliedVersions, owner client.Object, o ownedObject, found bool) error {
	existing := o.existing
	if !found {
		existing = nil
	}
	ownerKey, objKey := client.ObjectKeyFromObject(owner), appliedKey{kind: o.kind, name: o.key().Name}
	var hash [sha256.Size]byte
	if o.version != "" {
		hash = sha256.Sum256([]byte("version\x00" + o.version))
		if existing != nil && applied.unchanged(ownerKey, objKey, hash, existing.GetResourceVersion()) {
			return nil
		}
	}

	desired, err := o.desired()
	if err != nil {
		return err
	}
	body, err := objects.ApplyBody(desired)
	if err != nil {
		return err
	}
	sent, err := json.Marshal(body.Object)
	if err != nil {
		return err
	}
	if o.version == "" {
		hash = sha256.Sum256(sent)
		if existing != nil && applied.unchanged(ownerKey, objKey, hash, existing.GetResourceVersion()) {
			return nil
		}
	}
	// The hashed bytes are the body sent, and the answer is decoded into a typed
	// object (protobuf for built-in kinds): cheaper than c.Apply, which encodes the
	// body again and decodes the answer into a map.
	answer, ok := desired.DeepCopyObject().(client.Object)
	if !ok {
		return fmt.Errorf("%T is not a client.Object", desired)
	}
	if err := c.Patch(ctx, answer, client.RawPatch(types.ApplyPatchType, sent), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
		return err
	}
	applied.record(ownerKey, objKey, hash, answer.GetResourceVersion())
	return nil
}

// configMapMeta is an empty ConfigMap as the manager's cache holds them: metadata
// only (see the controllers' SetupWithManager). Reading a typed ConfigMap through
// the cache would start a second informer, holding every ConfigMap's data.
func configMapMeta() *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}}
}

// appliedVersions remembers, for every object an owner applied, a hash of the body
// sent and the resourceVersion the API server answered with. While the cache still
// shows that resourceVersion, the object is exactly what the apply left, so the same
// body again would change nothing. Any other writer (drift), a deletion, or a new
// body means applying again, and a restart forgets everything. It spares the API
// server the no-op applies of reconciles that change nothing we own: a Deployment's
// status moving, a sidecar report, an upstream that only changes the ConfigMap.
// The zero value is ready; it is safe for concurrent use.
//
// It also holds what the owners' applies share beyond the versions: live, where
// lookup checks a miss of the label-scoped cache (nil: the cache's word is
// final), and which owners a foreign object blocked (see retryBlocked).
type appliedVersions struct {
	mu      sync.Mutex
	byOwner map[types.NamespacedName]map[appliedKey]appliedVersion
	blocked map[types.NamespacedName]bool
	// live is set once, before the controller starts.
	live client.Reader
}

type appliedKey struct{ kind, name string }

type appliedVersion struct {
	body            [sha256.Size]byte
	resourceVersion string
}

func (a *appliedVersions) unchanged(owner types.NamespacedName, obj appliedKey, body [sha256.Size]byte, resourceVersion string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	v, ok := a.byOwner[owner][obj]
	return ok && v.body == body && v.resourceVersion == resourceVersion
}

func (a *appliedVersions) record(owner types.NamespacedName, obj appliedKey, body [sha256.Size]byte, resourceVersion string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byOwner == nil {
		a.byOwner = map[types.NamespacedName]map[appliedKey]appliedVersion{}
	}
	if a.byOwner[owner] == nil {
		a.byOwner[owner] = map[appliedKey]appliedVersion{}
	}
	a.byOwner[owner][obj] = appliedVersion{body: body, resourceVersion: resourceVersion}
}

// forget drops what owner applied, once owner is gone.
func (a *appliedVersions) forget(owner types.NamespacedName) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.byOwner, owner)
	delete(a.blocked, owner)
}

// block records that a foreign object held back owner's applies.
func (a *appliedVersions) block(owner types.NamespacedName) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.blocked == nil {
		a.blocked = map[types.NamespacedName]bool{}
	}
	a.blocked[owner] = true
}

// takeBlocked reports whether owner was blocked since the last call, and
// clears it.
func (a *appliedVersions) takeBlocked(owner types.NamespacedName) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	was := a.blocked[owner]
	delete(a.blocked, owner)
	return was
}

// DefaultConflictRetry is how often an owner that a foreign object blocks
// looks again, unless ManagerOptions.ConflictRetry says otherwise.
const DefaultConflictRetry = 30 * time.Second

// retryBlocked reconciles with r and, when the reconcile found a foreign object
// holding one of its owner's names (applyAllOwned marked the owner blocked),
// asks for the owner again after retry. The cache holds only objects that carry
// our label, so the deletion of an unlabelled foreign object sends no event: the
// blocked owner converges at most retry after it is gone. (The deletion of a
// labelled one, such as the objects a MeshService deleted with
// --cascade=orphan left behind, is still seen at once: see deletedOnly.) An
// owner that is not blocked costs nothing.
type retryBlocked struct {
	r       reconcile.Reconciler
	applied *appliedVersions
	retry   time.Duration
}

func (b retryBlocked) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	b.applied.takeBlocked(req.NamespacedName) // what an earlier reconcile left
	res, err := b.r.Reconcile(ctx, req)
	if b.applied.takeBlocked(req.NamespacedName) && err == nil && (res.RequeueAfter == 0 || res.RequeueAfter > b.retry) {
		res.RequeueAfter = b.retry
	}
	return res, err
}

// withConflictRetry wires what applyAllOwned needs to tell a foreign object from
// an absent one (the manager's live reader) and wraps r in retryBlocked, every
// retry (0: DefaultConflictRetry).
func withConflictRetry(mgr ctrl.Manager, r reconcile.Reconciler, applied *appliedVersions, retry time.Duration) reconcile.Reconciler {
	if retry <= 0 {
		retry = DefaultConflictRetry
	}
	applied.live = mgr.GetAPIReader()
	return retryBlocked{r: r, applied: applied, retry: retry}
}

// deleteControlled deletes obj (its namespace and name set) when owner controls
// it; a missing or foreign object is left as it is. The UID precondition spares
// an object of that name created meanwhile.
func deleteControlled(ctx context.Context, c client.Client, owner, obj client.Object) error {
	err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case !metav1.IsControlledBy(obj, owner):
		return nil
	}
	return client.IgnoreNotFound(c.Delete(ctx, obj, client.Preconditions{UID: ptr.To(obj.GetUID())}))
}
