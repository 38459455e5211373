package bundle

// The static scorecard tests of operator-sdk v1.42.2 (the basic and olm suites
// that bundle/tests/scorecard/config.yaml lists). Upstream runs them in the
// scorecard-test image inside a cluster; their code lives in operator-sdk's
// internal/scorecard/tests, which another module cannot import, so they are
// rebuilt here with the same inputs, the same pass/fail rules and the same
// messages, returning the same scorecard v1alpha3 results.

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	scapiv1alpha3 "github.com/operator-framework/api/pkg/apis/scorecard/v1alpha3"
	apimanifests "github.com/operator-framework/api/pkg/manifests"
	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	apivalidation "github.com/operator-framework/api/pkg/validation"
	registrybundle "github.com/operator-framework/operator-registry/pkg/lib/bundle"
	"github.com/sirupsen/logrus"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Scorecard test names, as in the scorecard-test entrypoints.
const (
	BasicCheckSpecTest        = "basic-check-spec"
	OLMBundleValidationTest   = "olm-bundle-validation"
	OLMCRDsHaveValidationTest = "olm-crds-have-validation"
	OLMCRDsHaveResourcesTest  = "olm-crds-have-resources"
	OLMSpecDescriptorsTest    = "olm-spec-descriptors"
	OLMStatusDescriptorsTest  = "olm-status-descriptors"
)

// ScorecardTests maps each test name to its implementation. bundleRoot is the
// directory holding manifests/ and metadata/; b is the bundle loaded from it.
var ScorecardTests = map[string]func(bundleRoot string, b *apimanifests.Bundle) scapiv1alpha3.TestResult{
	BasicCheckSpecTest:        func(_ string, b *apimanifests.Bundle) scapiv1alpha3.TestResult { return CheckSpec(b) },
	OLMBundleValidationTest:   func(root string, _ *apimanifests.Bundle) scapiv1alpha3.TestResult { return BundleValidation(root) },
	OLMCRDsHaveValidationTest: func(_ string, b *apimanifests.Bundle) scapiv1alpha3.TestResult { return CRDsHaveValidation(b) },
	OLMCRDsHaveResourcesTest:  func(_ string, b *apimanifests.Bundle) scapiv1alpha3.TestResult { return CRDsHaveResources(b) },
	OLMSpecDescriptorsTest:    func(_ string, b *apimanifests.Bundle) scapiv1alpha3.TestResult { return SpecDescriptors(b) },
	OLMStatusDescriptorsTest:  func(_ string, b *apimanifests.Bundle) scapiv1alpha3.TestResult { return StatusDescriptors(b) },
}

func newResult(name string) scapiv1alpha3.TestResult {
	return scapiv1alpha3.TestResult{Name: name, State: scapiv1alpha3.PassState, Errors: []string{}, Suggestions: []string{}}
}

// errored marks r as a test that could not run, as scorecard does when a bundle
// cannot be read.
func errored(r scapiv1alpha3.TestResult, err error) scapiv1alpha3.TestResult {
	r.Errors = append(r.Errors, err.Error())
	r.State = scapiv1alpha3.ErrorState
	return r
}

// ExampleCRs returns the custom resources of the CSV's alm-examples annotation.
func ExampleCRs(b *apimanifests.Bundle) ([]unstructured.Unstructured, error) {
	var crs []unstructured.Unstructured
	examples := b.CSV.GetAnnotations()["alm-examples"]
	if examples == "" {
		return nil, nil
	}
	if err := json.Unmarshal([]byte(examples), &crs); err != nil {
		return nil, fmt.Errorf("failed to parse alm-examples annotation: %v", err)
	}
	return crs, nil
}

// CheckSpec is basic-check-spec: every example has a spec. A missing spec is
// only a suggestion upstream, and so it is here.
func CheckSpec(b *apimanifests.Bundle) scapiv1alpha3.TestResult {
	r := newResult(BasicCheckSpecTest)
	crs, err := ExampleCRs(b)
	if err != nil {
		r.Errors = append(r.Errors, fmt.Sprintf("error getting custom resources: %s", err))
		r.State = scapiv1alpha3.FailState
	}
	for _, cr := range crs {
		if cr.Object["spec"] == nil {
			r.Suggestions = append(r.Suggestions, fmt.Sprintf("spec missing from [%+v]", cr.GetName()))
			break
		}
	}
	return r
}

// BundleValidation is olm-bundle-validation: operator-registry's bundle format
// check on the directory, then operator-framework/api's default bundle validators
// on the bundle loaded from its manifests directory. Warnings become suggestions.
func BundleValidation(bundleRoot string) scapiv1alpha3.TestResult {
	r := newResult(OLMBundleValidationTest)
	logger := logrus.New()
	logger.SetOutput(&strings.Builder{})
	// The format check never touches the registry (scorecard passes one that
	// shells out to docker and is never called).
	val := registrybundle.NewImageValidator(nil, logrus.NewEntry(logger))
	if err := val.ValidateBundleFormat(bundleRoot); err != nil {
		r.State = scapiv1alpha3.FailState
		r.Errors = append(r.Errors, err.Error())
	}
	manifestsDir := registrybundle.ManifestsDir
	if meta, err := ReadAnnotations(bundleRoot); err == nil {
		if dir, ok := meta[registrybundle.ManifestsLabel]; ok {
			manifestsDir = dir
		}
	}
	b, err := apimanifests.GetBundleFromDir(filepath.Join(bundleRoot, manifestsDir))
	if err != nil {
		r.State = scapiv1alpha3.FailState
		r.Errors = append(r.Errors, err.Error())
		return r
	}
	objs := []any{b, b.CSV}
	for _, crd := range b.V1CRDs {
		objs = append(objs, crd)
	}
	for _, crd := range b.V1beta1CRDs {
		objs = append(objs, crd)
	}
	for _, res := range apivalidation.DefaultBundleValidators.Validate(objs...) {
		for _, e := range res.Errors {
			r.Errors = append(r.Errors, e.Error())
			r.State = scapiv1alpha3.FailState
		}
		for _, w := range res.Warnings {
			r.Suggestions = append(r.Suggestions, w.Error())
		}
	}
	return r
}

// CRDsHaveValidation is olm-crds-have-validation: every top-level spec and status
// field of every example is declared in its CRD version's schema.
func CRDsHaveValidation(b *apimanifests.Bundle) scapiv1alpha3.TestResult {
	r := newResult(OLMCRDsHaveValidationTest)
	crs, err := ExampleCRs(b)
	if err != nil {
		return errored(r, err)
	}
	if len(b.V1beta1CRDs) > 0 {
		return errored(r, errors.New("v1beta1 CRDs are not checked here"))
	}
	for _, cr := range crs {
		if !exampleHasValidation(cr, b.V1CRDs, &r) {
			r.State = scapiv1alpha3.FailState
		}
	}
	return r
}

func exampleHasValidation(cr unstructured.Unstructured, crds []*apiextv1.CustomResourceDefinition, r *scapiv1alpha3.TestResult) bool {
	gvk := cr.GroupVersionKind()
	for _, crd := range crds {
		for _, version := range crd.Spec.Versions {
			// Upstream compares kinds after singularizing them with an empty REST
			// mapper, which always fails and falls back to the kinds themselves.
			if !strings.EqualFold(gvk.Version, version.Name) || !strings.EqualFold(gvk.Kind, crd.Spec.Names.Kind) {
				continue
			}
			if version.Schema == nil {
				r.Suggestions = append(r.Suggestions, fmt.Sprintf("Add CRD validation for %s/%s", crd.Spec.Names.Kind, version.Name))
				continue
			}
			ok := true
			for _, block := range []string{"spec", "status"} {
				fields, _ := cr.Object[block].(map[string]any)
				for key := range fields {
					if _, declared := version.Schema.OpenAPIV3Schema.Properties[block].Properties[key]; !declared {
						ok = false
						r.Suggestions = append(r.Suggestions, fmt.Sprintf("Add CRD validation for %s field `%s` in %s/%s", block, key, gvk.Kind, gvk.Version))
					}
				}
			}
			if !ok {
				return false
			}
		}
	}
	return true
}

// CRDsHaveResources is olm-crds-have-resources: every owned CRD lists the
// resources its operator creates for it.
func CRDsHaveResources(b *apimanifests.Bundle) scapiv1alpha3.TestResult {
	r := newResult(OLMCRDsHaveResourcesTest)
	for _, owned := range b.CSV.Spec.CustomResourceDefinitions.Owned {
		if len(owned.Resources) == 0 {
			r.State = scapiv1alpha3.FailState
			r.Errors = append(r.Errors, "Owned CRDs do not have resources specified")
			break
		}
	}
	return r
}

func ownedFor(cr unstructured.Unstructured, csv *operatorsv1alpha1.ClusterServiceVersion) *operatorsv1alpha1.CRDDescription {
	for i, owned := range csv.Spec.CustomResourceDefinitions.Owned {
		if owned.Kind == cr.GetKind() && owned.Version == cr.GroupVersionKind().Version {
			return &csv.Spec.CustomResourceDefinitions.Owned[i]
		}
	}
	return nil
}

// SpecDescriptors is olm-spec-descriptors: every top-level spec field set in an
// example has a spec descriptor whose path is exactly that field.
func SpecDescriptors(b *apimanifests.Bundle) scapiv1alpha3.TestResult {
	r := newResult(OLMSpecDescriptorsTest)
	crs, err := ExampleCRs(b)
	if err != nil {
		return errored(r, err)
	}
	for _, cr := range crs {
		spec, ok := cr.Object["spec"].(map[string]any)
		if !ok {
			r.State = scapiv1alpha3.FailState
			return r
		}
		owned := ownedFor(cr, b.CSV)
		if owned == nil {
			r.Errors = append(r.Errors, fmt.Sprintf("Failed to find an owned CRD for CR %s with GVK %s", cr.GetName(), cr.GroupVersionKind()))
			r.State = scapiv1alpha3.FailState
			return r
		}
		for key := range spec {
			found := false
			for _, d := range owned.SpecDescriptors {
				if d.Path == key {
					found = true
					break
				}
			}
			if !found {
				r.Errors = append(r.Errors, fmt.Sprintf("%s does not have a spec descriptor", key))
				r.Suggestions = append(r.Suggestions, fmt.Sprintf("Add a spec descriptor for %s", key))
				r.State = scapiv1alpha3.FailState
			}
		}
	}
	return r
}

// StatusLessExampleSuggestion starts the suggestion olm-status-descriptors makes
// for every example without a status, which is every example written by hand.
const StatusLessExampleSuggestion = "does not have status spec"

// StatusDescriptors is olm-status-descriptors: an example's owned CRD exists and,
// when the example carries a status, has status descriptors.
func StatusDescriptors(b *apimanifests.Bundle) scapiv1alpha3.TestResult {
	r := newResult(OLMStatusDescriptorsTest)
	crs, err := ExampleCRs(b)
	if err != nil {
		return errored(r, err)
	}
	for _, cr := range crs {
		owned := ownedFor(cr, b.CSV)
		if owned == nil {
			r.Errors = append(r.Errors, fmt.Sprintf("Failed to find an owned CRD for CR %s with GVK %s", cr.GetName(), cr.GroupVersionKind()))
			r.State = scapiv1alpha3.FailState
			return r
		}
		status, _ := cr.Object["status"].(map[string]any)
		if len(status) == 0 {
			r.Suggestions = append(r.Suggestions, fmt.Sprintf("%s %s. Note that all objects that represent a physical resource "+
				"whose state may vary from the user's desired intent SHOULD have a spec and a status.", owned.Name, StatusLessExampleSuggestion))
			continue
		}
		if len(owned.StatusDescriptors) == 0 {
			r.Errors = append(r.Errors, fmt.Sprintf("%s does not have a status descriptor", owned.Name))
			r.State = scapiv1alpha3.FailState
		}
	}
	return r
}
