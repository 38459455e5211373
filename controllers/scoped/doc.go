// Package scoped tests the operator installed for some namespaces only (OLM's
// OwnNamespace and SingleNamespace modes, or --watch-namespaces): a manager
// whose cache holds only the watched namespaces, meeting upstreams and gateway
// routes that name another. Unlike the main controller suite it runs no
// all-namespace manager, which would reconcile the same objects.
package scoped
