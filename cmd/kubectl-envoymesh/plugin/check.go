package plugin

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
	"github.com/envoymesh/envoymesh-operator/cmd/kubectl-envoymesh/crds"
)

// Names of the installation, as config/default installs it and main.go elects.
const (
	DefaultOperatorNamespace  = "envoymesh-system"
	DefaultOperatorDeployment = "envoymesh-controller-manager"
	LeaderElectionID          = "envoymesh-operator.mesh.envoymesh.io"
	// SignerName and BundleNamePrefix are internal/identity's.
	SignerName       = "mesh.envoymesh.io/identity"
	BundleNamePrefix = "mesh.envoymesh.io:identity:"
	DefaultCASecret  = "envoymesh-identity-ca"
	// pendingTooLong is how long a PodCertificateRequest may wait for the signer.
	pendingTooLong = time.Minute
)

// Verdicts.
const (
	VerdictOK   = "OK"
	VerdictWarn = "WARN"
	VerdictFail = "FAIL"
	VerdictSkip = "SKIP"
)

// Finding is one line of `check`: a verdict on one thing, and how to fix it.
type Finding struct {
	Verdict string `json:"verdict"`
	// Check names what was looked at: crd/<name>, operator/deployment,
	// operator/leader, servicemesh/<ns>/<name>, meshservice/<ns>/<name>,
	// identity/trust-bundle, identity/ca-secret, identity/signer.
	Check  string `json:"check"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// CheckReport is `check -o json|yaml`.
type CheckReport struct {
	Findings []Finding `json:"findings"`
	Failed   int       `json:"failed"`
	Warnings int       `json:"warnings"`
}

type checkOptions struct {
	*options
	operatorNamespace  string
	operatorDeployment string
}

func newCheckCommand(o *options) *cobra.Command {
	o = o.perCommand()
	co := &checkOptions{options: o}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "What is wrong with the installation: each line a verdict and a fix",
		Long: `Checks, each line a verdict (OK, WARN, FAIL, SKIP) and a fix:
  - the CRDs are installed, established and the same as this plugin's (same versions, same schema);
  - the operator Deployment is available and a leader holds the leader-election Lease;
  - every ServiceMesh and MeshService is Ready, its routes and upstreams resolved and authorized;
  - when a mesh uses mTLS: the signer's ClusterTrustBundle is published, its CA Secret exists,
    and no PodCertificateRequest waits over a minute or was denied.
ServiceMeshes and MeshServices of every namespace are checked unless --namespace is given.
Exits non-zero when anything FAILs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o, "table", "json", "yaml"); err != nil {
				return err
			}
			ctx, cancel := o.ctx(cmd)
			defer cancel()
			c, err := o.client()
			if err != nil {
				return err
			}
			report, err := co.run(ctx, c)
			if err != nil {
				return err
			}
			if o.output != "table" {
				err = printStructured(o.out(), o.output, report)
			} else {
				rows := make([][]string, 0, len(report.Findings))
				for _, f := range report.Findings {
					rows = append(rows, []string{f.Verdict, f.Check, f.Detail, f.Fix})
				}
				err = table(o.out(), []string{"VERDICT", "CHECK", "DETAIL", "FIX"}, rows)
			}
			if err != nil {
				return err
			}
			if report.Failed > 0 {
				return fmt.Errorf("%d check(s) failed", report.Failed)
			}
			return nil
		},
	}
	addOutputFlag(cmd, o, "table", "json", "yaml")
	cmd.Flags().StringVar(&co.operatorNamespace, "operator-namespace", DefaultOperatorNamespace, "Namespace the operator runs in")
	cmd.Flags().StringVar(&co.operatorDeployment, "operator-deployment", DefaultOperatorDeployment,
		"Name of the operator's Deployment (when absent, a Deployment labelled app.kubernetes.io/name=envoymesh-operator is looked for, as OLM installs it)")
	return cmd
}

func (co *checkOptions) run(ctx context.Context, c client.Client) (*CheckReport, error) {
	var fs []Finding
	crdFindings, err := checkCRDs(ctx, c)
	if err != nil {
		return nil, err
	}
	fs = append(fs, crdFindings...)
	deploy, opFindings, err := co.checkOperator(ctx, c)
	if err != nil {
		return nil, err
	}
	fs = append(fs, opFindings...)
	crdsServed := true
	for _, f := range crdFindings {
		if f.Verdict == VerdictFail && strings.Contains(f.Detail, "not installed") {
			crdsServed = false
		}
	}
	if crdsServed {
		meshFindings, needIdentity, err := checkResources(ctx, c, co.explicitNamespace())
		if err != nil {
			return nil, err
		}
		fs = append(fs, meshFindings...)
		if needIdentity {
			idFindings, err := co.checkIdentity(ctx, c, deploy)
			if err != nil {
				return nil, err
			}
			fs = append(fs, idFindings...)
		} else {
			fs = append(fs, Finding{Verdict: VerdictSkip, Check: "identity", Detail: "no MeshService uses mTLS (no MeshService, or every mesh has spec.mtls.mode Disabled): the signer is not needed"})
		}
	}
	r := &CheckReport{Findings: fs}
	for _, f := range fs {
		switch f.Verdict {
		case VerdictFail:
			r.Failed++
		case VerdictWarn:
			r.Warnings++
		}
	}
	return r, nil
}

// checkCRDs compares each served CRD with the one embedded in this binary: the
// same versions served and stored, and the same OpenAPI schema per version.
func checkCRDs(ctx context.Context, c client.Client) ([]Finding, error) {
	want, err := crds.Load()
	if err != nil {
		return nil, err
	}
	var fs []Finding
	for i := range want {
		w := &want[i]
		check := "crd/" + w.Name
		var got apiextensionsv1.CustomResourceDefinition
		err := c.Get(ctx, types.NamespacedName{Name: w.Name}, &got)
		switch {
		case apierrors.IsNotFound(err):
			fs = append(fs, Finding{VerdictFail, check, "not installed", "kubectl apply -k config/crd (or `make install`, or reinstall the operator)"})
			continue
		case apierrors.IsForbidden(err):
			fs = append(fs, forbidden(check, "CustomResourceDefinition "+w.Name))
			continue
		case err != nil:
			return nil, fmt.Errorf("reading CRD %s: %w", w.Name, err)
		}
		fs = append(fs, compareCRD(w, &got))
	}
	return fs, nil
}

func compareCRD(want, got *apiextensionsv1.CustomResourceDefinition) Finding {
	check := "crd/" + want.Name
	upgrade := "install the CRDs of this release: kubectl apply --server-side -k config/crd (or `make install`)"
	if !crdEstablished(got) {
		return Finding{VerdictFail, check, "installed but not Established: the API server does not serve it", "kubectl describe crd " + want.Name}
	}
	served := map[string]*apiextensionsv1.CustomResourceDefinitionVersion{}
	for i := range got.Spec.Versions {
		served[got.Spec.Versions[i].Name] = &got.Spec.Versions[i]
	}
	var problems []string
	older := false
	for _, wv := range want.Spec.Versions {
		gv, ok := served[wv.Name]
		delete(served, wv.Name)
		if !ok {
			problems = append(problems, fmt.Sprintf("version %s missing", wv.Name))
			older = true
			continue
		}
		if gv.Served != wv.Served || gv.Storage != wv.Storage {
			problems = append(problems, fmt.Sprintf("version %s served=%v storage=%v, this plugin expects served=%v storage=%v", wv.Name, gv.Served, gv.Storage, wv.Served, wv.Storage))
			older = true
		}
		ws, gs := schemaOf(&wv), schemaOf(gv)
		if equality.Semantic.DeepEqual(ws, gs) {
			continue
		}
		missing, extra := schemaFieldDiff(ws, gs)
		switch {
		case len(missing) > 0 || len(extra) > 0:
			if len(missing) > 0 {
				older = true
				problems = append(problems, fmt.Sprintf("%s lacks %s", wv.Name, limitList(missing, 5)))
			}
			if len(extra) > 0 {
				problems = append(problems, fmt.Sprintf("%s has fields this plugin does not know: %s", wv.Name, limitList(extra, 5)))
			}
		default:
			older = true
			problems = append(problems, fmt.Sprintf("%s schema differs (same fields, different validation)", wv.Name))
		}
	}
	for name := range served {
		problems = append(problems, fmt.Sprintf("serves version %s this plugin does not know", name))
	}
	switch {
	case len(problems) == 0:
		vs := make([]string, 0, len(want.Spec.Versions))
		for _, v := range want.Spec.Versions {
			vs = append(vs, v.Name)
		}
		return Finding{VerdictOK, check, fmt.Sprintf("established, %s schema same as this plugin's", strings.Join(vs, ",")), ""}
	case older:
		return Finding{VerdictFail, check, "outdated: " + strings.Join(problems, "; "), upgrade}
	default:
		return Finding{VerdictWarn, check, "newer than this plugin: " + strings.Join(problems, "; "), "upgrade kubectl-envoymesh to the operator's release"}
	}
}

func crdEstablished(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established {
			return c.Status == apiextensionsv1.ConditionTrue
		}
	}
	return false
}

func schemaOf(v *apiextensionsv1.CustomResourceDefinitionVersion) *apiextensionsv1.JSONSchemaProps {
	if v.Schema == nil {
		return nil
	}
	return v.Schema.OpenAPIV3Schema
}

// schemaFieldDiff lists the field paths (spec.tracing.collector) in want but
// not in got (missing) and in got but not in want (extra), outermost only.
func schemaFieldDiff(want, got *apiextensionsv1.JSONSchemaProps) (missing, extra []string) {
	var walk func(path string, w, g *apiextensionsv1.JSONSchemaProps)
	walk = func(path string, w, g *apiextensionsv1.JSONSchemaProps) {
		if w == nil || g == nil {
			return
		}
		join := func(k string) string {
			if path == "" {
				return k
			}
			return path + "." + k
		}
		for k := range w.Properties {
			gp, ok := g.Properties[k]
			wp := w.Properties[k]
			if !ok {
				missing = append(missing, join(k))
				continue
			}
			walk(join(k), &wp, &gp)
		}
		for k := range g.Properties {
			if _, ok := w.Properties[k]; !ok {
				extra = append(extra, join(k))
			}
		}
		if w.Items != nil && g.Items != nil && w.Items.Schema != nil && g.Items.Schema != nil {
			walk(path+"[]", w.Items.Schema, g.Items.Schema)
		}
	}
	walk("", want, got)
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

func limitList(s []string, n int) string {
	if len(s) <= n {
		return strings.Join(s, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(s[:n], ", "), len(s)-n)
}

// checkOperator: the Deployment available, and a live leader in the Lease.
func (co *checkOptions) checkOperator(ctx context.Context, c client.Client) (*appsv1.Deployment, []Finding, error) {
	ns := co.operatorNamespace
	var fs []Finding
	deploy, err := co.findDeployment(ctx, c)
	if err != nil && !apierrors.IsForbidden(err) {
		return nil, nil, err
	}
	install := "install it: kubectl apply -k config/default (or `make deploy`, or through OLM); pass --operator-namespace/--operator-deployment if it runs elsewhere"
	switch {
	case err != nil:
		fs = append(fs, forbidden("operator/deployment", "Deployments in "+ns))
	case deploy == nil:
		fs = append(fs, Finding{VerdictFail, "operator/deployment", fmt.Sprintf("no Deployment %s (nor one labelled app.kubernetes.io/name=envoymesh-operator) in namespace %s", co.operatorDeployment, ns), install})
	default:
		fs = append(fs, deploymentFinding(deploy))
	}

	var lease coordinationv1.Lease
	err = c.Get(ctx, types.NamespacedName{Namespace: ns, Name: LeaderElectionID}, &lease)
	switch {
	case apierrors.IsNotFound(err):
		fs = append(fs, Finding{VerdictFail, "operator/leader", fmt.Sprintf("no Lease %s/%s: no operator has ever been elected leader", ns, LeaderElectionID),
			"the operator must run with --leader-elect (config/manager does); check its logs: kubectl -n " + ns + " logs deploy/" + co.operatorDeployment})
	case apierrors.IsForbidden(err):
		fs = append(fs, forbidden("operator/leader", "Lease "+ns+"/"+LeaderElectionID))
	case err != nil:
		return nil, nil, fmt.Errorf("reading Lease %s/%s: %w", ns, LeaderElectionID, err)
	default:
		leader := leaseFinding(&lease, co.now(), ns, co.operatorDeployment)
		fs = append(fs, leader)
		if deploy == nil && err == nil && leader.Verdict == VerdictOK && fs[0].Verdict == VerdictFail {
			// No Deployment, yet a live leader: the operator runs outside the
			// cluster (make demo, make run). Worth knowing, not a failure.
			fs[0] = Finding{VerdictWarn, "operator/deployment", fmt.Sprintf("no Deployment %s in namespace %s, but a live leader renews the Lease: the operator runs outside the cluster", co.operatorDeployment, ns),
				"nothing to do for a local run; in a cluster: " + install}
		}
	}
	return deploy, fs, nil
}

func (co *checkOptions) findDeployment(ctx context.Context, c client.Client) (*appsv1.Deployment, error) {
	var d appsv1.Deployment
	err := c.Get(ctx, types.NamespacedName{Namespace: co.operatorNamespace, Name: co.operatorDeployment}, &d)
	if err == nil {
		return &d, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading Deployment %s/%s: %w", co.operatorNamespace, co.operatorDeployment, err)
	}
	var list appsv1.DeploymentList
	if err := c.List(ctx, &list, client.InNamespace(co.operatorNamespace), client.MatchingLabels{"app.kubernetes.io/name": "envoymesh-operator"}); err != nil {
		return nil, fmt.Errorf("listing Deployments in %s: %w", co.operatorNamespace, err)
	}
	if len(list.Items) == 0 {
		return nil, nil
	}
	return &list.Items[0], nil
}

func deploymentFinding(d *appsv1.Deployment) Finding {
	check := "operator/deployment"
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	available := false
	msg := ""
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			available = c.Status == corev1.ConditionTrue
			if !available {
				msg = ": " + c.Message
			}
		}
	}
	detail := fmt.Sprintf("%s/%s %d/%d ready", d.Namespace, d.Name, d.Status.ReadyReplicas, want)
	if available && d.Status.ReadyReplicas > 0 {
		return Finding{VerdictOK, check, detail + ", Available", ""}
	}
	return Finding{VerdictFail, check, detail + ", not Available" + msg,
		fmt.Sprintf("kubectl -n %s describe deploy/%s; kubectl -n %s logs deploy/%s", d.Namespace, d.Name, d.Namespace, d.Name)}
}

// leaseFinding: a holder, renewed within its lease duration.
func leaseFinding(l *coordinationv1.Lease, now time.Time, ns, deploy string) Finding {
	check := "operator/leader"
	logs := fmt.Sprintf("kubectl -n %s logs deploy/%s", ns, deploy)
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	if holder == "" {
		return Finding{VerdictFail, check, fmt.Sprintf("Lease %s has no holder: the last leader stepped down and none took over", l.Name), "check that an operator pod is running: " + logs}
	}
	duration := 15 * time.Second
	if l.Spec.LeaseDurationSeconds != nil {
		duration = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	if l.Spec.RenewTime == nil {
		return Finding{VerdictFail, check, fmt.Sprintf("Lease %s held by %s but never renewed", l.Name, holder), logs}
	}
	age := now.Sub(l.Spec.RenewTime.Time)
	if age > duration {
		return Finding{VerdictFail, check, fmt.Sprintf("leader %s last renewed %s ago (lease %s): it is gone or stuck", holder, human(age), duration),
			"check the operator pods and their logs: " + logs + "; another replica takes over once the lease expires"}
	}
	return Finding{VerdictOK, check, fmt.Sprintf("leader %s, renewed %s ago (lease %s)", holder, human(age), duration), ""}
}

// checkResources: every ServiceMesh and MeshService Ready, routes and
// upstreams resolved and authorized. It also says whether any MeshService
// needs the identity signer (its mesh, or the defaults, use mTLS).
func checkResources(ctx context.Context, c client.Client, ns string) ([]Finding, bool, error) {
	var meshes meshv1alpha1.ServiceMeshList
	if err := c.List(ctx, &meshes, client.InNamespace(ns)); err != nil {
		return nil, false, fmt.Errorf("listing ServiceMeshes: %w", err)
	}
	var services meshv1alpha1.MeshServiceList
	if err := c.List(ctx, &services, client.InNamespace(ns)); err != nil {
		return nil, false, fmt.Errorf("listing MeshServices: %w", err)
	}
	meshByKey := map[types.NamespacedName]*meshv1alpha1.ServiceMesh{}
	var fs []Finding
	readyMeshes := 0
	for i := range meshes.Items {
		m := &meshes.Items[i]
		meshByKey[types.NamespacedName{Namespace: m.Namespace, Name: m.Name}] = m
		bad := resourceFindings("servicemesh/"+m.Namespace+"/"+m.Name, m.Generation, m.Status.ObservedGeneration, m.Status.Conditions,
			[]string{meshv1alpha1.ConditionReady, "RoutesResolved"}, meshFix(m))
		if len(bad) == 0 {
			readyMeshes++
		}
		fs = append(fs, bad...)
	}
	needIdentity := false
	readyServices := 0
	for i := range services.Items {
		ms := &services.Items[i]
		if meshv1alpha1.HasIdentity(meshByKey[types.NamespacedName{Namespace: ms.Namespace, Name: ms.Spec.Mesh}]) {
			needIdentity = true
		}
		bad := resourceFindings("meshservice/"+ms.Namespace+"/"+ms.Name, ms.Generation, ms.Status.ObservedGeneration, ms.Status.Conditions,
			[]string{meshv1alpha1.ConditionReady, meshv1alpha1.ConditionUpstreamsResolved, meshv1alpha1.ConditionUpstreamsAuthorized}, serviceFix(ms))
		if len(bad) == 0 {
			readyServices++
		}
		fs = append(fs, bad...)
	}
	where := "in namespace " + ns
	if ns == "" {
		where = "in all namespaces"
	}
	summary := []Finding{
		summaryFinding("servicemeshes", readyMeshes, len(meshes.Items), where),
		summaryFinding("meshservices", readyServices, len(services.Items), where),
	}
	return append(summary, fs...), needIdentity, nil
}

func summaryFinding(kind string, ready, total int, where string) Finding {
	v := VerdictOK
	if ready < total {
		v = VerdictFail
	}
	if total == 0 {
		return Finding{VerdictOK, kind, "none " + where, ""}
	}
	fix := ""
	if ready < total {
		fix = "see the lines below"
	}
	return Finding{v, kind, fmt.Sprintf("%d/%d healthy %s", ready, total, where), fix}
}

// resourceFindings: one finding per condition of types that is not True (a
// missing condition means the operator has not reconciled it yet).
func resourceFindings(check string, generation, observed int64, conds []metav1.Condition, types []string, fix func(metav1.Condition) string) []Finding {
	var fs []Finding
	for _, t := range types {
		c := meta.FindStatusCondition(conds, t)
		switch {
		case c == nil && t == meshv1alpha1.ConditionReady:
			fs = append(fs, Finding{VerdictFail, check, "no Ready condition: the operator has not reconciled it",
				"check `kubectl envoymesh check`'s operator lines and the operator logs"})
		case c == nil || c.Status == metav1.ConditionTrue:
		default:
			fs = append(fs, Finding{VerdictFail, check, fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message), fix(*c)})
		}
	}
	if len(fs) == 0 && observed < generation {
		fs = append(fs, Finding{VerdictWarn, check, fmt.Sprintf("generation %d not reconciled yet (observed %d)", generation, observed),
			"wait; if it stays, check the operator logs"})
	}
	return fs
}

func meshFix(m *meshv1alpha1.ServiceMesh) func(metav1.Condition) string {
	ref := fmt.Sprintf("-n %s", m.Namespace)
	return func(c metav1.Condition) string {
		switch c.Reason {
		case "RouteNotFound":
			return "create the MeshService named, or remove its route from spec.gateway.routes"
		case "NotAllowed":
			return fmt.Sprintf("add spec.allowFrom {namespace: %s} to the MeshService named (or route elsewhere)", m.Namespace)
		case "Conflict":
			return "delete or rename the object named in the message (the operator does not own it)"
		case "InvalidConfig":
			return "fix the field the message names: kubectl edit servicemesh " + ref + " " + m.Name
		case "SidecarsNotReady":
			return "kubectl envoymesh status " + ref
		case "Progressing":
			return "wait for the rollout; if it stays: kubectl describe deploy " + ref
		}
		return "kubectl describe servicemesh " + ref + " " + m.Name
	}
}

func serviceFix(ms *meshv1alpha1.MeshService) func(metav1.Condition) string {
	ref := fmt.Sprintf("-n %s", ms.Namespace)
	return func(c metav1.Condition) string {
		switch c.Reason {
		case "UpstreamNotFound":
			return "create the MeshService named, or correct spec.upstreams"
		case "Refused":
			return fmt.Sprintf("the callee adds spec.allowFrom {namespace: %s} (or enable mTLS in this mesh when it requires mTLS), or drop the upstream", ms.Namespace)
		case "Conflict":
			return "delete or rename the object named in the message (the operator does not own it)"
		case "InvalidConfig":
			return "fix the field the message names: kubectl edit ms " + ref + " " + ms.Name
		case "SidecarsNotReady", "Rejected", "Stale", "Unreachable":
			return "kubectl envoymesh status " + ref + " (per-pod state and reason)"
		case "Progressing", "DeploymentNotFound":
			return fmt.Sprintf("wait for the rollout; if it stays: kubectl describe deploy %s %s", ref, ms.Name)
		}
		return fmt.Sprintf("kubectl describe ms %s %s", ref, ms.Name)
	}
}

// checkIdentity: the signer's trust bundle published, its CA Secret present,
// and its PodCertificateRequests answered.
func (co *checkOptions) checkIdentity(ctx context.Context, c client.Client, deploy *appsv1.Deployment) ([]Finding, error) {
	var fs []Finding
	logs := fmt.Sprintf("kubectl -n %s logs deploy/%s", co.operatorNamespace, co.operatorDeployment)

	var bundles certificatesv1.ClusterTrustBundleList
	err := c.List(ctx, &bundles)
	switch {
	case meta.IsNoMatchError(err) || apierrors.IsNotFound(err):
		fs = append(fs, Finding{VerdictFail, "identity/trust-bundle", "the API server does not serve certificates.k8s.io/v1 ClusterTrustBundles",
			"mTLS needs Kubernetes with ClusterTrustBundles and PodCertificateRequests (docs/security.md), or set spec.mtls.mode Disabled"})
	case apierrors.IsForbidden(err):
		fs = append(fs, forbidden("identity/trust-bundle", "ClusterTrustBundles"))
	case err != nil:
		return nil, fmt.Errorf("listing ClusterTrustBundles: %w", err)
	default:
		var names []string
		for _, b := range bundles.Items {
			if b.Spec.SignerName == SignerName {
				names = append(names, b.Name)
			}
		}
		if len(names) == 0 {
			fs = append(fs, Finding{VerdictFail, "identity/trust-bundle", "no ClusterTrustBundle of signer " + SignerName + ": pods cannot verify each other's certificates",
				"the operator publishes it once it has loaded its CA: check the CA Secret and " + logs})
		} else {
			sort.Strings(names)
			fs = append(fs, Finding{VerdictOK, "identity/trust-bundle", "published: " + strings.Join(names, ", "), ""})
		}
	}

	secret := caSecretOf(deploy, co.operatorNamespace)
	var s corev1.Secret
	err = c.Get(ctx, secret, &s)
	switch {
	case apierrors.IsNotFound(err):
		fs = append(fs, Finding{VerdictFail, "identity/ca-secret", fmt.Sprintf("CA Secret %s not found", secret),
			"the operator creates it at start unless --ca-secret names a Secret someone else (cert-manager) makes: check that one, and " + logs})
	case apierrors.IsForbidden(err):
		fs = append(fs, forbidden("identity/ca-secret", "Secret "+secret.String()))
	case err != nil:
		return nil, fmt.Errorf("reading Secret %s: %w", secret, err)
	default:
		if len(s.Data["tls.crt"]) == 0 || len(s.Data["tls.key"]) == 0 {
			fs = append(fs, Finding{VerdictFail, "identity/ca-secret", fmt.Sprintf("CA Secret %s lacks tls.crt or tls.key", secret), "give it the CA's tls.crt and tls.key, or delete it to let the operator generate one"})
		} else {
			fs = append(fs, Finding{VerdictOK, "identity/ca-secret", fmt.Sprintf("CA Secret %s present", secret), ""})
		}
	}

	var pcrs certificatesv1.PodCertificateRequestList
	err = c.List(ctx, &pcrs)
	switch {
	case meta.IsNoMatchError(err) || apierrors.IsNotFound(err):
		fs = append(fs, Finding{VerdictFail, "identity/signer", "the API server does not serve certificates.k8s.io/v1 PodCertificateRequests",
			"mTLS needs Kubernetes with Pod Certificates (docs/security.md), or set spec.mtls.mode Disabled"})
	case apierrors.IsForbidden(err):
		fs = append(fs, forbidden("identity/signer", "PodCertificateRequests"))
	case err != nil:
		return nil, fmt.Errorf("listing PodCertificateRequests: %w", err)
	default:
		fs = append(fs, signerFindings(pcrs.Items, co.now(), logs)...)
	}
	return fs, nil
}

// caSecretOf is the --ca-secret the operator runs with, else the default.
func caSecretOf(deploy *appsv1.Deployment, ns string) types.NamespacedName {
	def := types.NamespacedName{Namespace: ns, Name: DefaultCASecret}
	if deploy == nil {
		return def
	}
	for _, ctr := range deploy.Spec.Template.Spec.Containers {
		args := append(append([]string{}, ctr.Command...), ctr.Args...)
		for i, a := range args {
			v, ok := strings.CutPrefix(a, "--ca-secret=")
			if !ok && a == "--ca-secret" && i+1 < len(args) {
				v, ok = args[i+1], true
			}
			if ok && v != "" {
				if n, name, found := strings.Cut(v, "/"); found {
					return types.NamespacedName{Namespace: n, Name: name}
				}
				return types.NamespacedName{Namespace: deploy.Namespace, Name: v}
			}
		}
	}
	return def
}

// signerFindings: pending requests older than a minute (the signer is not
// issuing), and denied or failed ones with their reasons.
func signerFindings(items []certificatesv1.PodCertificateRequest, now time.Time, logs string) []Finding {
	var issued, pending int
	var stuck, denied, failed []string
	for i := range items {
		p := &items[i]
		if p.Spec.SignerName != SignerName {
			continue
		}
		key := p.Namespace + "/" + p.Name + " (pod " + p.Spec.PodName + ")"
		switch c := concludedBy(p); {
		case c == nil:
			pending++
			if age := now.Sub(p.CreationTimestamp.Time); age > pendingTooLong {
				stuck = append(stuck, fmt.Sprintf("%s for %s", key, human(age)))
			}
		case c.Type == certificatesv1.PodCertificateRequestConditionTypeIssued:
			issued++
		case c.Type == certificatesv1.PodCertificateRequestConditionTypeDenied:
			denied = append(denied, fmt.Sprintf("%s: %s: %s", key, c.Reason, c.Message))
		default:
			failed = append(failed, fmt.Sprintf("%s: %s: %s", key, c.Reason, c.Message))
		}
	}
	sort.Strings(stuck)
	sort.Strings(denied)
	sort.Strings(failed)
	var fs []Finding
	if len(stuck) > 0 {
		fs = append(fs, Finding{VerdictFail, "identity/signer", fmt.Sprintf("%d PodCertificateRequest(s) pending over %s: %s", len(stuck), pendingTooLong, limitList(stuck, 3)),
			"the signer runs in the leader only: check operator/leader above, the CA Secret, and " + logs})
	}
	if len(denied) > 0 {
		fs = append(fs, Finding{VerdictWarn, "identity/signer", fmt.Sprintf("%d denied: %s", len(denied), limitList(denied, 3)),
			"the pod is not one the operator gives an identity (not of a MeshService, or asks for something it may not have): see the reason; kubectl get pcr -A"})
	}
	if len(failed) > 0 {
		fs = append(fs, Finding{VerdictWarn, "identity/signer", fmt.Sprintf("%d failed: %s", len(failed), limitList(failed, 3)), logs})
	}
	if len(stuck) == 0 {
		detail := fmt.Sprintf("issuing: %d issued, %d pending (none over %s)", issued, pending, pendingTooLong)
		if issued+pending+len(denied)+len(failed) == 0 {
			detail = "no PodCertificateRequests of signer " + SignerName + " yet (none pending)"
		}
		fs = append([]Finding{{VerdictOK, "identity/signer", detail, ""}}, fs...)
	}
	return fs
}

func concludedBy(p *certificatesv1.PodCertificateRequest) *metav1.Condition {
	for i := range p.Status.Conditions {
		c := &p.Status.Conditions[i]
		switch c.Type {
		case certificatesv1.PodCertificateRequestConditionTypeIssued, certificatesv1.PodCertificateRequestConditionTypeDenied, certificatesv1.PodCertificateRequestConditionTypeFailed:
			if c.Status == metav1.ConditionTrue {
				return c
			}
		}
	}
	return nil
}

// forbidden is the SKIP line of a check the user may not read for.
func forbidden(check, what string) Finding {
	return Finding{VerdictSkip, check, "not allowed to read " + what, "run as a user who may (kubectl auth can-i), or ignore this line"}
}
