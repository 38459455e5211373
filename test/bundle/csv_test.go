package bundle

// What the validators and the scorecard do not check but this bundle promises:
// the CSV's descriptors cover the whole API, the install honors the
// OperatorGroup, the images are the operator's, and the bundle carries the API
// and the seed mesh of config/.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	apimanifests "github.com/operator-framework/api/pkg/manifests"
	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// decodeAll returns every YAML document of path as unstructured objects.
func decodeAll(t *testing.T, path string) []unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("%s: %v", path, err)
		}
		if len(m) > 0 {
			out = append(out, unstructured.Unstructured{Object: m})
		}
	}
}

func readInto(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func managerContainer(t *testing.T, csv *operatorsv1alpha1.ClusterServiceVersion) (operatorsv1alpha1.StrategyDeploymentSpec, int) {
	t.Helper()
	deps := csv.Spec.InstallStrategy.StrategySpec.DeploymentSpecs
	if len(deps) != 1 {
		t.Fatalf("CSV installs %d Deployments, want 1", len(deps))
	}
	for i, c := range deps[0].Spec.Template.Spec.Containers {
		if c.Name == "manager" {
			return deps[0], i
		}
	}
	t.Fatalf("Deployment %s has no container named manager", deps[0].Name)
	return operatorsv1alpha1.StrategyDeploymentSpec{}, 0
}

// defaultEnvoyImage is main.go's DefaultEnvoyImage, the sidecar image the
// manager uses when nothing overrides it.
func defaultEnvoyImage(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`DefaultEnvoyImage = "([^"]+)"`).FindSubmatch(src)
	if m == nil {
		t.Fatal("main.go declares no DefaultEnvoyImage")
	}
	return string(m[1])
}

func TestMetadata(t *testing.T) {
	meta, err := ReadAnnotations(bundleRoot)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"operators.operatorframework.io.bundle.package.v1":         "envoymesh-operator",
		"operators.operatorframework.io.bundle.channels.v1":        "alpha",
		"operators.operatorframework.io.bundle.channel.default.v1": "alpha",
		"operators.operatorframework.io.bundle.mediatype.v1":       "registry+v1",
		"operators.operatorframework.io.test.config.v1":            "tests/scorecard/",
	} {
		if meta[k] != want {
			t.Errorf("annotations.yaml %s = %q, want %q", k, meta[k], want)
		}
	}

	// The image's labels are what OLM reads from a bundle image; they must say
	// what metadata/annotations.yaml says.
	f, err := os.Open(filepath.Join(repoRoot, "bundle.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	labels := map[string]string{}
	var copies []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "LABEL "), "="); ok && strings.HasPrefix(line, "LABEL ") {
			labels[k] = v
		}
		if strings.HasPrefix(line, "COPY ") {
			copies = append(copies, line)
		}
	}
	if !reflect.DeepEqual(labels, meta) {
		t.Errorf("bundle.Dockerfile labels differ from metadata/annotations.yaml:\nlabels:      %v\nannotations: %v", labels, meta)
	}
	wantCopies := []string{
		"COPY bundle/manifests /manifests/",
		"COPY bundle/metadata /metadata/",
		"COPY bundle/tests/scorecard /tests/scorecard/",
	}
	if !reflect.DeepEqual(copies, wantCopies) {
		t.Errorf("bundle.Dockerfile copies %q, want %q", copies, wantCopies)
	}
}

func TestCSVListing(t *testing.T) {
	csv := loadBundle(t).CSV
	ann := csv.GetAnnotations()
	for k, want := range map[string]string{
		"capabilities": "Basic Install",
		"categories":   "Networking",
	} {
		if ann[k] != want {
			t.Errorf("annotation %s = %q, want %q", k, ann[k], want)
		}
	}
	if _, err := time.Parse(time.RFC3339, ann["createdAt"]); err != nil {
		t.Errorf("createdAt %q: %v", ann["createdAt"], err)
	}
	if csv.Spec.DisplayName == "" || len(csv.Spec.Keywords) == 0 || len(csv.Spec.Maintainers) == 0 ||
		csv.Spec.Provider.Name == "" || len(csv.Spec.Links) == 0 {
		t.Errorf("CSV lacks displayName, keywords, maintainers, provider or links")
	}
	if !strings.Contains(csv.Spec.Description, "seed mesh") || !strings.Contains(csv.Spec.Description, "kubectl apply") {
		t.Errorf("CSV description does not say how to start with the seed mesh")
	}
	if csv.Spec.Maturity != "alpha" {
		t.Errorf("maturity %q, want alpha", csv.Spec.Maturity)
	}
	// Pod Certificates (certificates.k8s.io/v1 PodCertificateRequest, the
	// podCertificate projection) are GA, and served as v1, from 1.37; native
	// sidecars need only 1.29.
	if csv.Spec.MinKubeVersion != "1.37.0" {
		t.Errorf("minKubeVersion %q, want 1.37.0", csv.Spec.MinKubeVersion)
	}

	svg, err := os.ReadFile(filepath.Join(repoRoot, "config", "manifests", "icon.svg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(csv.Spec.Icon) != 1 {
		t.Fatalf("CSV has %d icons, want 1", len(csv.Spec.Icon))
	}
	icon, err := base64.StdEncoding.DecodeString(csv.Spec.Icon[0].Data)
	if err != nil {
		t.Fatalf("icon: %v", err)
	}
	if !bytes.Equal(icon, svg) || csv.Spec.Icon[0].MediaType != "image/svg+xml" {
		t.Errorf("CSV icon is not config/manifests/icon.svg as image/svg+xml (regenerate with base64 -w0)")
	}
}

// TestInstallHonorsOperatorGroup: every install mode is offered, the manager
// watches what OLM says the OperatorGroup targets, and it is granted permissions
// only there (namespaced permissions, which OLM grants in each target namespace
// and cluster-wide only for AllNamespaces). The one cluster-wide grant is the
// metrics endpoint's (config/rbac/metrics_auth_role.yaml): TokenReviews and
// SubjectAccessReviews are cluster-scoped kinds.
func TestInstallHonorsOperatorGroup(t *testing.T) {
	csv := loadBundle(t).CSV
	modes := map[operatorsv1alpha1.InstallModeType]bool{}
	for _, m := range csv.Spec.InstallModes {
		modes[m.Type] = m.Supported
	}
	for _, m := range []operatorsv1alpha1.InstallModeType{
		operatorsv1alpha1.InstallModeTypeOwnNamespace, operatorsv1alpha1.InstallModeTypeSingleNamespace,
		operatorsv1alpha1.InstallModeTypeMultiNamespace, operatorsv1alpha1.InstallModeTypeAllNamespaces,
	} {
		if !modes[m] {
			t.Errorf("install mode %s is not supported", m)
		}
	}

	dep, i := managerContainer(t, csv)
	c := dep.Spec.Template.Spec.Containers[i]
	watch := false
	for _, e := range c.Env {
		if e.Name == "WATCH_NAMESPACE" {
			watch = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil &&
				e.ValueFrom.FieldRef.FieldPath == "metadata.annotations['olm.targetNamespaces']"
		}
	}
	if !watch {
		t.Errorf("manager has no WATCH_NAMESPACE from metadata.annotations['olm.targetNamespaces']")
	}

	perms := csv.Spec.InstallStrategy.StrategySpec
	var metricsAuth rbacv1.ClusterRole
	readInto(t, filepath.Join(repoRoot, "config", "rbac", "metrics_auth_role.yaml"), &metricsAuth)
	wantCluster := []operatorsv1alpha1.StrategyDeploymentPermissions{{
		ServiceAccountName: dep.Spec.Template.Spec.ServiceAccountName, Rules: metricsAuth.Rules,
	}}
	if !equality.Semantic.DeepEqual(perms.ClusterPermissions, wantCluster) {
		t.Errorf("CSV asks for cluster-wide permissions %v; the manager needs only config/rbac/metrics_auth_role.yaml's %v",
			perms.ClusterPermissions, wantCluster)
	}
	var granted []rbacv1.PolicyRule
	for _, p := range perms.Permissions {
		if p.ServiceAccountName == dep.Spec.Template.Spec.ServiceAccountName {
			granted = append(granted, p.Rules...)
		}
	}
	for _, file := range []string{"role.yaml", "leader_election_role.yaml"} {
		var role rbacv1.ClusterRole
		readInto(t, filepath.Join(repoRoot, "config", "rbac", file), &role)
		for _, want := range role.Rules {
			found := false
			for _, got := range granted {
				if equality.Semantic.DeepEqual(got, want) {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("config/rbac/%s rule %v is not granted to %s in the CSV", file, want, dep.Spec.Template.Spec.ServiceAccountName)
			}
		}
	}
}

func TestImages(t *testing.T) {
	csv := loadBundle(t).CSV
	envoy := defaultEnvoyImage(t)
	dep, i := managerContainer(t, csv)
	c := dep.Spec.Template.Spec.Containers[i]

	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["RELATED_IMAGE_ENVOY"] != envoy {
		t.Errorf("RELATED_IMAGE_ENVOY = %q, want main.go's DefaultEnvoyImage %q", env["RELATED_IMAGE_ENVOY"], envoy)
	}
	if !contains(c.Args, "--envoy-image=$(RELATED_IMAGE_ENVOY)") {
		t.Errorf("manager args %q do not pass RELATED_IMAGE_ENVOY as --envoy-image", c.Args)
	}
	if env["RELATED_IMAGE_OPERATOR"] != c.Image {
		t.Errorf("RELATED_IMAGE_OPERATOR = %q, want the manager image %q", env["RELATED_IMAGE_OPERATOR"], c.Image)
	}
	if got := csv.GetAnnotations()["containerImage"]; got != c.Image {
		t.Errorf("containerImage = %q, want the manager image %q", got, c.Image)
	}
	related := map[string]string{}
	for _, ri := range csv.Spec.RelatedImages {
		related[ri.Name] = ri.Image
	}
	want := map[string]string{"envoy": envoy, "operator": c.Image}
	if !reflect.DeepEqual(related, want) {
		t.Errorf("relatedImages = %v, want %v", related, want)
	}
}

// TestDescriptorsCoverTheAPI is stricter than olm-spec-descriptors, which only
// looks at the fields the examples set: every top-level spec and status field of
// every owned CRD has a descriptor, and every descriptor names a field that
// exists, so a renamed or removed field cannot leave a stale one behind.
func TestDescriptorsCoverTheAPI(t *testing.T) {
	for _, p := range descriptorProblems(loadBundle(t)) {
		t.Error(p)
	}
}

func descriptorProblems(b *apimanifests.Bundle) []string {
	var problems []string
	crds := map[string]*apiextv1.CustomResourceDefinition{}
	for _, crd := range b.V1CRDs {
		crds[crd.Name] = crd
	}
	for _, owned := range b.CSV.Spec.CustomResourceDefinitions.Owned {
		crd, ok := crds[owned.Name]
		if !ok {
			problems = append(problems, fmt.Sprintf("owned CRD %s is not in the bundle", owned.Name))
			continue
		}
		if owned.DisplayName == "" || owned.Description == "" {
			problems = append(problems, fmt.Sprintf("%s: owned CRD needs a displayName and a description", owned.Name))
		}
		var schema *apiextv1.JSONSchemaProps
		for _, v := range crd.Spec.Versions {
			if v.Name == owned.Version && v.Schema != nil {
				schema = v.Schema.OpenAPIV3Schema
			}
		}
		if schema == nil {
			problems = append(problems, fmt.Sprintf("%s has no schema for version %s", owned.Name, owned.Version))
			continue
		}
		var specPaths, statusPaths []string
		for _, d := range owned.SpecDescriptors {
			specPaths = append(specPaths, d.Path)
		}
		for _, d := range owned.StatusDescriptors {
			statusPaths = append(statusPaths, d.Path)
		}
		for _, block := range []string{"spec", "status"} {
			paths := map[string][]string{"spec": specPaths, "status": statusPaths}[block]
			root := schema.Properties[block]
			for _, field := range sortedKeys(root.Properties) {
				if !contains(paths, field) {
					problems = append(problems, fmt.Sprintf("%s: %s.%s has no %s descriptor: add one to "+
						"config/manifests/bases/envoymesh-operator.clusterserviceversion.yaml and run make bundle",
						owned.Kind, block, field, block))
				}
			}
			for _, p := range paths {
				if !schemaHasPath(root, p) {
					problems = append(problems, fmt.Sprintf("%s: %s descriptor %q names no field of the CRD", owned.Kind, block, p))
				}
			}
		}
	}
	return problems
}

// schemaHasPath follows a descriptor path ("a.b", "a[0].b") through a schema.
func schemaHasPath(s apiextv1.JSONSchemaProps, path string) bool {
	for _, seg := range strings.Split(path, ".") {
		name, _, _ := strings.Cut(seg, "[")
		next, ok := s.Properties[name]
		if !ok {
			return false
		}
		if next.Type == "array" && next.Items != nil && next.Items.Schema != nil && strings.Contains(seg, "[") {
			next = *next.Items.Schema
		}
		s = next
	}
	return true
}

// TestBundleHoldsTheAPIAndTheSeedMesh: the bundle carries exactly the CRDs of
// config/crd/bases and offers the seed mesh of config/samples as its examples.
// Whether their content is current is verify-generated's job (it reruns
// `make bundle` and compares), so that changing a field does not fail `make test`
// before the bundle is regenerated.
func TestBundleHoldsTheAPIAndTheSeedMesh(t *testing.T) {
	b := loadBundle(t)
	var inBundle, inConfig []string
	for _, crd := range b.V1CRDs {
		inBundle = append(inBundle, crd.Name)
	}
	files, err := filepath.Glob(filepath.Join(repoRoot, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	for _, f := range files {
		var crd apiextv1.CustomResourceDefinition
		readInto(t, f, &crd)
		inConfig = append(inConfig, crd.Name)
	}
	sort.Strings(inBundle)
	sort.Strings(inConfig)
	if !reflect.DeepEqual(inBundle, inConfig) {
		t.Errorf("bundle CRDs %v, config/crd/bases %v: run make bundle", inBundle, inConfig)
	}

	examples, err := ExampleCRs(b)
	if err != nil {
		t.Fatal(err)
	}
	key := func(u unstructured.Unstructured) string { return u.GetKind() + "/" + u.GetName() }
	var got, want []string
	for _, ex := range examples {
		got = append(got, key(ex))
	}
	samples, _ := filepath.Glob(filepath.Join(repoRoot, "config", "samples", "*.yaml"))
	for _, f := range samples {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		for _, u := range decodeAll(t, f) {
			want = append(want, key(u))
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	seed := []string{"MeshService/service-a", "MeshService/service-b", "MeshService/service-c", "ServiceMesh/default"}
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(got, seed) {
		t.Errorf("alm-examples %v, config/samples %v, want the seed mesh %v", got, want, seed)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]apiextv1.JSONSchemaProps) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
