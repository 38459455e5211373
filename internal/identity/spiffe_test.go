package identity

import (
	"strings"
	"testing"
)

func TestSPIFFEID(t *testing.T) {
	if got, want := SPIFFEID("cluster.local", "shop", "cart"), "spiffe://cluster.local/ns/shop/sa/cart"; got != want {
		t.Errorf("SPIFFEID = %q, want %q", got, want)
	}
}

func TestValidateTrustDomain(t *testing.T) {
	for _, tc := range []struct {
		td string
		ok bool
	}{
		{"cluster.local", true},
		{"a", true},
		{"my_td-1.example.org", true},
		{strings.Repeat("a", 255), true},
		{"", false},
		{strings.Repeat("a", 256), false},
		{"Cluster.local", false},
		{"td/path", false},
		{"td:8080", false},
		{"spiffe://td", false},
		{"user@td", false},
		{"tëst", false},
		{"td local", false},
	} {
		err := ValidateTrustDomain(tc.td)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateTrustDomain(%q) = %v, want ok=%v", tc.td, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), `"`+tc.td+`"`) {
			t.Errorf("error %q does not name the value %q", err, tc.td)
		}
	}
}
