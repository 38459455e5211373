package envoyadmin

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture returns a file from testdata.
func fixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// truncated returns the first half of a fixture, as if the connection broke mid-body.
func truncated(t testing.TB, name string) string {
	s := fixture(t, name)
	return s[:len(s)/2]
}

// oversized is a valid JSON object one byte longer than MaxBodyBytes, so only the cap rejects it.
func oversized(prefix, suffix string) string {
	return prefix + strings.Repeat(" ", MaxBodyBytes+1-len(prefix)-len(suffix)) + suffix
}

// exactlyMax is a valid JSON object exactly MaxBodyBytes long, which must still be accepted.
func exactlyMax(prefix, suffix string) string {
	return prefix + strings.Repeat(" ", MaxBodyBytes-len(prefix)-len(suffix)) + suffix
}

// checkErr fails t unless err matches want: "" means no error, otherwise err must contain want.
// A want of "too large" also requires errors.Is(err, ErrBodyTooLarge).
func checkErr(t *testing.T, err error, want string) bool {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("want error containing %q, got none", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	case want == "too large" && !errors.Is(err, ErrBodyTooLarge):
		t.Fatalf("error %v is not ErrBodyTooLarge", err)
	}
	return err == nil
}
