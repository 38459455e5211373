package bundle

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	scapiv1alpha3 "github.com/operator-framework/api/pkg/apis/scorecard/v1alpha3"
	apimanifests "github.com/operator-framework/api/pkg/manifests"
	apivalidation "github.com/operator-framework/api/pkg/validation"
	interfaces "github.com/operator-framework/api/pkg/validation/interfaces"
	registrybundle "github.com/operator-framework/operator-registry/pkg/lib/bundle"
	"github.com/sirupsen/logrus"
	logrustest "github.com/sirupsen/logrus/hooks/test"
	"sigs.k8s.io/yaml"
)

const (
	bundleRoot = "../../bundle"
	repoRoot   = "../.."
	// testedKubeVersion is the Kubernetes envtest and e2e run (K8S_VERSION in the
	// Makefile): the deprecated-API validators also check against it, not only
	// against the CSV's minKubeVersion.
	testedKubeVersion = "1.37.2"
)

// loadBundle reads the whole bundle directory as OLM's tooling does. Loading the
// root rather than manifests/ also reads metadata/annotations.yaml, so the
// validators see the package and channels, and the size check counts every file
// the bundle image carries.
func loadBundle(t *testing.T) *apimanifests.Bundle {
	t.Helper()
	b, err := apimanifests.GetBundleFromDir(bundleRoot)
	if err != nil {
		t.Fatalf("loading %s: %v", bundleRoot, err)
	}
	if b.CSV == nil {
		t.Fatalf("%s holds no ClusterServiceVersion", bundleRoot)
	}
	return b
}

// acceptedWarning reports whether a validator warning is one the bundle keeps on
// purpose, and why.
func acceptedWarning(validator, msg string) (bool, string) {
	// Issue #6 fixes the channel as "alpha"; GoodPractices recommends names that
	// start with candidate, fast or stable. Renaming it is `make bundle CHANNELS=...`.
	if validator == "GoodPractices" &&
		strings.Contains(msg, `channel(s) ["alpha"] are not following the recommended naming convention`) {
		return true, "channel name alpha is fixed by the issue"
	}
	return false, ""
}

// TestOperatorFrameworkValidators runs operator-framework/api's validators the way
// `operator-sdk bundle validate --select-optional suite=operatorframework` does,
// once with the CSV's minKubeVersion and once against testedKubeVersion, and
// requires no errors and no warnings beyond acceptedWarning.
func TestOperatorFrameworkValidators(t *testing.T) {
	b := loadBundle(t)
	for _, kubeVersion := range []string{"", testedKubeVersion} {
		for _, f := range runValidators(b, kubeVersion) {
			switch {
			case f.accepted != "":
				t.Logf("%s (k8s-version=%q): accepted warning (%s): %s", f.validator, kubeVersion, f.accepted, f.msg)
			case f.msg != "":
				t.Errorf("%s (k8s-version=%q): %s: %s", f.validator, kubeVersion, f.level, f.msg)
			default:
				t.Logf("%s (k8s-version=%q): %d errors, %d warnings", f.validator, kubeVersion, f.errors, f.warnings)
			}
		}
	}
}

// finding is one error or warning of a validator (msg set), or a validator's
// totals (msg empty); accepted warnings are not counted.
type finding struct {
	validator, level, msg, accepted string
	errors, warnings                int
}

var operatorFrameworkValidators = []struct {
	name string
	v    interfaces.Validator
}{
	{"ClusterServiceVersion", apivalidation.ClusterServiceVersionValidator},
	{"CustomResourceDefinition", apivalidation.CustomResourceDefinitionValidator},
	{"Bundle", apivalidation.BundleValidator},
	{"OperatorHubV2", apivalidation.OperatorHubV2Validator},
	{"StandardCapabilities", apivalidation.StandardCapabilitiesValidator},
	{"StandardCategories", apivalidation.StandardCategoriesValidator},
	{"AlphaDeprecatedAPIs", apivalidation.AlphaDeprecatedAPIsValidator},
	{"GoodPractices", apivalidation.GoodPracticesValidator},
	{"Object", apivalidation.ObjectValidator},
}

func runValidators(b *apimanifests.Bundle, kubeVersion string) []finding {
	var out []finding
	objs := b.ObjectsToValidate()
	if kubeVersion != "" {
		objs = append(objs, map[string]string{"k8s-version": kubeVersion})
	}
	for _, val := range operatorFrameworkValidators {
		total := finding{validator: val.name}
		for _, res := range val.v.Validate(objs...) {
			for _, e := range res.Errors {
				total.errors++
				out = append(out, finding{validator: val.name, level: "error", msg: e.Error()})
			}
			for _, w := range res.Warnings {
				f := finding{validator: val.name, level: "warning", msg: w.Error()}
				if ok, why := acceptedWarning(val.name, w.Error()); ok {
					f.accepted = why
				} else {
					total.warnings++
				}
				out = append(out, f)
			}
		}
		out = append(out, total)
	}
	return out
}

// TestRegistryBundleFormat runs operator-registry's checks of the bundle image
// layout (manifests/, metadata/, annotations that match the media type) and of its
// contents (supported kinds, kubectl-able objects, CSV and CRD validation, and the
// optional operatorhub and bundle-objects checks), failing on any logged warning.
func TestRegistryBundleFormat(t *testing.T) {
	logger, hook := logrustest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	val := registrybundle.NewImageValidator(nil, logrus.NewEntry(logger), "operatorhub,bundle-objects")
	if err := val.ValidateBundleFormat(bundleRoot); err != nil {
		t.Errorf("bundle format: %v", err)
	}
	if err := val.ValidateBundleContent(filepath.Join(bundleRoot, registrybundle.ManifestsDir)); err != nil {
		t.Errorf("bundle content: %v", err)
	}
	warns := 0
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.WarnLevel {
			warns++
			t.Errorf("operator-registry %s: %s", e.Level, e.Message)
		}
	}
	t.Logf("operator-registry: %d warnings", warns)
}

// TestScorecard runs every test bundle/tests/scorecard/config.yaml lists with the
// static implementations in scorecard.go, and requires that each passes with no
// errors and no suggestions other than olm-status-descriptors' note about
// examples without a status (examples are what a user writes; the operator fills
// in status).
func TestScorecard(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(bundleRoot, "tests", "scorecard", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg scapiv1alpha3.Configuration
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("scorecard config: %v", err)
	}
	b := loadBundle(t)
	listed := map[string]bool{}
	for _, stage := range cfg.Stages {
		for _, tc := range stage.Tests {
			if len(tc.Entrypoint) != 2 || tc.Entrypoint[0] != "scorecard-test" {
				t.Errorf("scorecard test %v: want entrypoint [scorecard-test <name>]", tc.Entrypoint)
				continue
			}
			name := tc.Entrypoint[1]
			listed[name] = true
			run, ok := ScorecardTests[name]
			if !ok {
				t.Errorf("scorecard test %s is configured but not implemented in scorecard.go", name)
				continue
			}
			r := run(bundleRoot, b)
			if r.Name != name {
				t.Errorf("scorecard test %s reported itself as %s", name, r.Name)
			}
			if r.State != scapiv1alpha3.PassState || len(r.Errors) > 0 {
				t.Errorf("scorecard %s: state %s, errors %q", name, r.State, r.Errors)
			}
			for _, s := range r.Suggestions {
				if name == OLMStatusDescriptorsTest && strings.Contains(s, StatusLessExampleSuggestion) {
					continue
				}
				t.Errorf("scorecard %s: suggestion: %s", name, s)
			}
			t.Logf("scorecard %s: %s (%d errors, %d suggestions)", name, r.State, len(r.Errors), len(r.Suggestions))
		}
	}
	var missing []string
	for name := range ScorecardTests {
		if !listed[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("scorecard config lists none of %v (config/scorecard/patches)", missing)
	}
}
