package bundle

// The checks above must be able to fail: each is run here on a copy of the
// bundle broken in one way, and must report exactly that.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	scapiv1alpha3 "github.com/operator-framework/api/pkg/apis/scorecard/v1alpha3"
	apimanifests "github.com/operator-framework/api/pkg/manifests"
	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
)

// brokenBundle returns the bundle with its CSV changed by breakCSV.
func brokenBundle(t *testing.T, breakCSV func(*operatorsv1alpha1.ClusterServiceVersion)) *apimanifests.Bundle {
	t.Helper()
	b := loadBundle(t)
	b.CSV = b.CSV.DeepCopy()
	breakCSV(b.CSV)
	return b
}

func owned(csv *operatorsv1alpha1.ClusterServiceVersion, kind string) *operatorsv1alpha1.CRDDescription {
	for i := range csv.Spec.CustomResourceDefinitions.Owned {
		if csv.Spec.CustomResourceDefinitions.Owned[i].Kind == kind {
			return &csv.Spec.CustomResourceDefinitions.Owned[i]
		}
	}
	panic("no owned CRD " + kind)
}

// setExamples rewrites alm-examples after edit has changed the parsed examples.
func setExamples(t *testing.T, csv *operatorsv1alpha1.ClusterServiceVersion, edit func([]map[string]any)) {
	t.Helper()
	var examples []map[string]any
	if err := json.Unmarshal([]byte(csv.Annotations["alm-examples"]), &examples); err != nil {
		t.Fatal(err)
	}
	edit(examples)
	data, err := json.Marshal(examples)
	if err != nil {
		t.Fatal(err)
	}
	csv.Annotations["alm-examples"] = string(data)
}

func requireFail(t *testing.T, r scapiv1alpha3.TestResult, wantError string) {
	t.Helper()
	if r.State == scapiv1alpha3.PassState {
		t.Errorf("%s passed on a broken bundle", r.Name)
	}
	if wantError != "" && !strings.Contains(strings.Join(r.Errors, "\n"), wantError) {
		t.Errorf("%s errors %q do not mention %q", r.Name, r.Errors, wantError)
	}
}

func TestScorecardChecksCanFail(t *testing.T) {
	t.Run(OLMSpecDescriptorsTest, func(t *testing.T) {
		b := brokenBundle(t, func(csv *operatorsv1alpha1.ClusterServiceVersion) {
			o := owned(csv, "MeshService")
			var kept []operatorsv1alpha1.SpecDescriptor
			for _, d := range o.SpecDescriptors {
				if d.Path != "port" {
					kept = append(kept, d)
				}
			}
			o.SpecDescriptors = kept
		})
		requireFail(t, SpecDescriptors(b), "port does not have a spec descriptor")
	})
	t.Run(OLMStatusDescriptorsTest, func(t *testing.T) {
		b := brokenBundle(t, func(csv *operatorsv1alpha1.ClusterServiceVersion) {
			owned(csv, "ServiceMesh").StatusDescriptors = nil
			setExamples(t, csv, func(ex []map[string]any) {
				for _, e := range ex {
					if e["kind"] == "ServiceMesh" {
						e["status"] = map[string]any{"services": 3}
					}
				}
			})
		})
		requireFail(t, StatusDescriptors(b), "servicemeshes.mesh.envoymesh.io does not have a status descriptor")
	})
	t.Run(OLMCRDsHaveValidationTest, func(t *testing.T) {
		b := brokenBundle(t, func(csv *operatorsv1alpha1.ClusterServiceVersion) {
			setExamples(t, csv, func(ex []map[string]any) {
				ex[0]["spec"].(map[string]any)["notInTheSchema"] = true
			})
		})
		r := CRDsHaveValidation(b)
		requireFail(t, r, "")
		if !strings.Contains(strings.Join(r.Suggestions, "\n"), "`notInTheSchema`") {
			t.Errorf("suggestions %q do not name the undeclared field", r.Suggestions)
		}
	})
	t.Run(OLMCRDsHaveResourcesTest, func(t *testing.T) {
		b := brokenBundle(t, func(csv *operatorsv1alpha1.ClusterServiceVersion) {
			owned(csv, "ServiceMesh").Resources = nil
		})
		requireFail(t, CRDsHaveResources(b), "Owned CRDs do not have resources specified")
	})
	t.Run(BasicCheckSpecTest, func(t *testing.T) {
		b := brokenBundle(t, func(csv *operatorsv1alpha1.ClusterServiceVersion) {
			setExamples(t, csv, func(ex []map[string]any) { delete(ex[0], "spec") })
		})
		// Upstream only suggests, and passes.
		if r := CheckSpec(b); len(r.Suggestions) != 1 || !strings.HasPrefix(r.Suggestions[0], "spec missing from") {
			t.Errorf("basic-check-spec suggestions %q, want one about the missing spec", r.Suggestions)
		}
	})
	t.Run(OLMBundleValidationTest, func(t *testing.T) {
		dir := t.TempDir()
		if err := os.CopyFS(filepath.Join(dir, "manifests"), os.DirFS(filepath.Join(bundleRoot, "manifests"))); err != nil {
			t.Fatal(err)
		}
		requireFail(t, BundleValidation(dir), "Unable to locate metadata directory")
	})
}

func TestValidatorsAndDescriptorChecksCanFail(t *testing.T) {
	b := brokenBundle(t, func(csv *operatorsv1alpha1.ClusterServiceVersion) {
		csv.Annotations["categories"] = "Networking,Not A Category"
		csv.Spec.Icon = nil
		o := owned(csv, "MeshService")
		o.StatusDescriptors = append(o.StatusDescriptors[1:], operatorsv1alpha1.StatusDescriptor{Path: "sidecars.nonexistent"})
	})
	want := map[string]string{
		"StandardCategories": `"Not A Category" is not in the set of standard categories`,
		"OperatorHubV2":      "csv.Spec.Icon not specified",
	}
	for _, f := range runValidators(b, "") {
		if w, ok := want[f.validator]; ok && strings.Contains(f.msg, w) {
			delete(want, f.validator)
		}
	}
	for v, msg := range want {
		t.Errorf("%s did not report %q", v, msg)
	}

	problems := strings.Join(descriptorProblems(b), "\n")
	for _, msg := range []string{
		"MeshService: status.observedGeneration has no status descriptor",
		`MeshService: status descriptor "sidecars.nonexistent" names no field of the CRD`,
	} {
		if !strings.Contains(problems, msg) {
			t.Errorf("descriptor checks did not report %q; got:\n%s", msg, problems)
		}
	}
}
