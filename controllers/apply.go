package controllers

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/envoymesh/envoymesh-operator/internal/objects"
)

// FieldOwner is the server-side apply field manager of everything the operator writes.
const FieldOwner = "envoymesh-operator"

// errNotOwned means an object of the desired name exists and is not controlled by
// the resource we reconcile; we leave it as it was.
type errNotOwned struct {
	kind, name string
}

func (e *errNotOwned) Error() string {
	return fmt.Sprintf("%s %q already exists and is not managed by this resource; delete or rename it", e.kind, e.name)
}

// applyOwned server-side-applies desired unless an object of that name exists that
// owner does not control. existing is an empty object of the desired type used for
// the lookup. The apply sends only what the builders set (objects.ApplyBody).
func applyOwned(ctx context.Context, c client.Client, owner metav1.Object, desired, existing client.Object) error {
	err := c.Get(ctx, client.ObjectKeyFromObject(desired), existing)
	switch {
	case err == nil:
		if !metav1.IsControlledBy(existing, owner) {
			return &errNotOwned{kind: desired.GetObjectKind().GroupVersionKind().Kind, name: desired.GetName()}
		}
	case client.IgnoreNotFound(err) != nil:
		return err
	}

	body, err := objects.ApplyBody(desired)
	if err != nil {
		return err
	}
	return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(body), client.FieldOwner(FieldOwner), client.ForceOwnership)
}
