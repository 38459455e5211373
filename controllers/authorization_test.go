package controllers

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

func callee(allow ...meshv1alpha1.AllowFrom) *meshv1alpha1.MeshService {
	return &meshv1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "payments"},
		Spec: meshv1alpha1.MeshServiceSpec{AllowFrom: allow}}
}

// TestAuthorizedPrincipalsFollowTheGraph: the caller set is the declared callers
// of the callee's namespace, plus those of other namespaces it consents to.
func TestAuthorizedPrincipalsFollowTheGraph(t *testing.T) {
	declared := []caller{
		{"shop", "cart"}, {"shop", "default-gateway"}, // same namespace: a MeshService and the gateway
		{"shop", "orders"}, {"shop", "orders"}, // two MeshServices sharing a ServiceAccount: one identity
		{"billing", "invoicer"}, {"billing", "auditor"}, // another namespace
		{"edge", "public-gateway"}, // another namespace's gateway
	}
	id := func(ns, sa string) string { return fmt.Sprintf("spiffe://td/ns/%s/sa/%s", ns, sa) }
	for _, tc := range []struct {
		name  string
		allow []meshv1alpha1.AllowFrom
		want  []string
	}{
		{"no consent: own namespace only", nil,
			[]string{id("shop", "cart"), id("shop", "default-gateway"), id("shop", "orders")}},
		{"a whole namespace", []meshv1alpha1.AllowFrom{{Namespace: "billing"}},
			[]string{id("billing", "auditor"), id("billing", "invoicer"), id("shop", "cart"), id("shop", "default-gateway"), id("shop", "orders")}},
		{"one ServiceAccount of a namespace", []meshv1alpha1.AllowFrom{{Namespace: "billing", ServiceAccount: "invoicer"}},
			[]string{id("billing", "invoicer"), id("shop", "cart"), id("shop", "default-gateway"), id("shop", "orders")}},
		{"another namespace's gateway", []meshv1alpha1.AllowFrom{{Namespace: "edge"}},
			[]string{id("edge", "public-gateway"), id("shop", "cart"), id("shop", "default-gateway"), id("shop", "orders")}},
		{"consent without a declaration adds nobody", []meshv1alpha1.AllowFrom{{Namespace: "elsewhere"}},
			[]string{id("shop", "cart"), id("shop", "default-gateway"), id("shop", "orders")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, authorizedPrincipals(callee(tc.allow...), declared, "td")); d != "" {
				t.Errorf("principals (-want +got):\n%s", d)
			}
		})
	}
	if got := authorizedPrincipals(callee(), nil, "td"); len(got) != 0 {
		t.Errorf("no declared callers, principals %v", got)
	}
}

func TestAuthorizedCallersStatusIsCapped(t *testing.T) {
	var ids []string
	for i := range 25 {
		ids = append(ids, fmt.Sprintf("spiffe://td/ns/a/sa/s%02d", i))
	}
	st := authorizedCallersStatus(ids)
	if st.Count != 25 || len(st.SPIFFEIDs) != 20 || st.SPIFFEIDs[0] != ids[0] {
		t.Errorf("status %+v", st)
	}
}

// TestRefusal covers what the caller side reports for each combination of
// modes and consent.
func TestRefusal(t *testing.T) {
	mesh := func(mtls meshv1alpha1.MTLSMode, authz meshv1alpha1.AuthorizationMode) *meshv1alpha1.ServiceMesh {
		return &meshv1alpha1.ServiceMesh{ObjectMeta: metav1.ObjectMeta{Name: "m"}, Spec: meshv1alpha1.ServiceMeshSpec{
			MTLS: &meshv1alpha1.MTLS{Mode: mtls}, Authorization: &meshv1alpha1.Authorization{Mode: authz}}}
	}
	sameNS := &meshv1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart"}}
	otherNS := &meshv1alpha1.MeshService{ObjectMeta: metav1.ObjectMeta{Namespace: "billing", Name: "invoicer"}}
	for _, tc := range []struct {
		name               string
		caller             *meshv1alpha1.MeshService
		callerMesh, target *meshv1alpha1.ServiceMesh
		callee             *meshv1alpha1.MeshService
		want               string // substring; "" means accepted
	}{
		{"same namespace", sameNS, nil, nil, callee(), ""},
		{"other namespace, no consent", otherNS, nil, nil, callee(), "does not consent to namespace billing"},
		{"other namespace, consent", otherNS, nil, nil, callee(meshv1alpha1.AllowFrom{Namespace: "billing"}), ""},
		{"other namespace, consent for another ServiceAccount", otherNS, nil, nil,
			callee(meshv1alpha1.AllowFrom{Namespace: "billing", ServiceAccount: "auditor"}), "does not consent"},
		{"callee audits", otherNS, nil, mesh(meshv1alpha1.MTLSStrict, meshv1alpha1.AuthorizationAudit), callee(), ""},
		{"callee authorization off", otherNS, nil, mesh(meshv1alpha1.MTLSStrict, meshv1alpha1.AuthorizationOff), callee(), ""},
		{"callee plaintext", otherNS, nil, mesh(meshv1alpha1.MTLSDisabled, ""), callee(), ""},
		{"caller has no identity, callee Strict", sameNS, mesh(meshv1alpha1.MTLSDisabled, ""), nil, callee(), "requires mTLS"},
		{"caller has no identity, callee Permissive", sameNS, mesh(meshv1alpha1.MTLSDisabled, ""),
			mesh(meshv1alpha1.MTLSPermissive, meshv1alpha1.AuthorizationEnforce), callee(), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := refusal(tc.caller, tc.callerMesh, tc.callee, tc.target)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("refusal %q, want %q", got, tc.want)
			}
		})
	}
}
