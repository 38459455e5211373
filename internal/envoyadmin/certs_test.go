package envoyadmin

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var update = flag.Bool("update", false, "rewrite testdata/certs.json from certsFixture")

// Times of the synthesized certs.json, as the operator's signer issues them (internal/identity:
// notBefore backdated a minute): a mesh CA valid for ten years and a 24-hour Pod Certificate,
// looked at on 2026-03-02 at 20:00 UTC (which only days_until_expiration shows).
var (
	fixtureCAFrom     = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	fixtureCAExpiry   = time.Date(2036, 3, 1, 0, 0, 0, 0, time.UTC)
	fixtureLeafFrom   = time.Date(2026, 3, 2, 8, 13, 5, 0, time.UTC)
	fixtureLeafExpiry = time.Date(2026, 3, 3, 8, 13, 5, 0, time.UTC)
)

const fixtureSPIFFEID = "spiffe://cluster.local/ns/shop/sa/cart"

// certsFixture is what a sidecar's Envoy reports in /certs, as envoy.admin.v3.Certificates: one
// entry per TLS context (the inbound listener's server context, then the client contexts of two
// egress clusters), each trusting the mesh's CA (ca.pem) and presenting the Pod Certificate
// (bundle.pem) through file-based SDS.
func certsFixture() *adminv3.Certificates {
	ca := &adminv3.CertificateDetails{
		Path:                "/var/run/envoymesh/identity/ca.pem",
		SerialNumber:        "5c0d3a9e41f7b2c86d1e09a4f3b27c15",
		DaysUntilExpiration: 3651,
		ValidFrom:           timestamppb.New(fixtureCAFrom),
		ExpirationTime:      timestamppb.New(fixtureCAExpiry),
	}
	leaf := &adminv3.CertificateDetails{
		Path:         "/var/run/envoymesh/identity/bundle.pem",
		SerialNumber: "1f4a7c2e9b3d5068a1c4e7f20b9d3a61",
		SubjectAltNames: []*adminv3.SubjectAlternateName{
			{Name: &adminv3.SubjectAlternateName_Uri{Uri: fixtureSPIFFEID}},
		},
		// Whole days, rounded down (ASN1_TIME_diff): 12 hours left is 0.
		DaysUntilExpiration: 0,
		ValidFrom:           timestamppb.New(fixtureLeafFrom),
		ExpirationTime:      timestamppb.New(fixtureLeafExpiry),
	}
	context := func() *adminv3.Certificate {
		return &adminv3.Certificate{
			CaCert:    []*adminv3.CertificateDetails{proto.Clone(ca).(*adminv3.CertificateDetails)},
			CertChain: []*adminv3.CertificateDetails{proto.Clone(leaf).(*adminv3.CertificateDetails)},
		}
	}
	return &adminv3.Certificates{Certificates: []*adminv3.Certificate{context(), context(), context()}}
}

// marshalCerts writes c as Envoy's admin handler does (MessageUtil::getJsonStringFromMessage with
// pretty printing and always_print_primitive_fields: proto field names, default scalars and empty
// lists written out), with json.Indent for stable bytes.
func marshalCerts(t *testing.T, c *adminv3.Certificates) []byte {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var compact, out bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		t.Fatal(err)
	}
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// TestCertsFixture keeps testdata/certs.json the marshalled certsFixture (go test -run
// TestCertsFixture -update rewrites it) and checks that it round-trips through the proto.
func TestCertsFixture(t *testing.T) {
	want := marshalCerts(t, certsFixture())
	path := filepath.Join("testdata", "certs.json")
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := fixture(t, "certs.json"); got != string(want) {
		t.Errorf("%s is not the marshalled certsFixture; rerun with -update and review the diff", path)
	}
	var back adminv3.Certificates
	if err := protojson.Unmarshal(want, &back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&back, certsFixture()) {
		t.Errorf("certs.json does not round-trip:\n%v", &back)
	}
	if err := back.ValidateAll(); err != nil {
		t.Errorf("certs.json fails the proto's validation: %v", err)
	}
}

// certsJSON is a /certs body with one context per chain, each chain given as "expiry[,uri SAN...]"
// with expiry in RFC 3339, plus one ca_cert that expires before everything else.
func certsJSON(chains ...[]string) string {
	var contexts []string
	for _, chain := range chains {
		var details []string
		for _, c := range chain {
			parts := strings.Split(c, ",")
			var sans []string
			for _, uri := range parts[1:] {
				sans = append(sans, `{"uri":"`+uri+`"}`)
			}
			details = append(details, `{"path":"/id/bundle.pem","subject_alt_names":[`+strings.Join(sans, ",")+
				`],"expiration_time":"`+parts[0]+`"}`)
		}
		contexts = append(contexts, `{"ca_cert":[{"path":"/id/ca.pem","expiration_time":"2000-01-01T00:00:00Z"}],`+
			`"cert_chain":[`+strings.Join(details, ",")+`]}`)
	}
	return `{"certificates":[` + strings.Join(contexts, ",") + `]}`
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestParseCerts(t *testing.T) {
	const (
		a = "spiffe://cluster.local/ns/shop/sa/a"
		b = "spiffe://cluster.local/ns/shop/sa/b"
	)
	tests := []struct {
		name    string
		in      string
		want    Certificate
		wantErr string
	}{
		{
			name: "synthesized sidecar answer: three contexts, one Pod Certificate",
			in:   fixture(t, "certs.json"),
			want: Certificate{Expiry: fixtureLeafExpiry, URISANs: []string{fixtureSPIFFEID}},
		},
		{name: "mTLS off: no TLS context", in: `{"certificates":[]}`},
		{name: "no certificates field, as protojson omits an empty list", in: `{}`},
		{
			name: "only CA certificates: nothing presented",
			in:   `{"certificates":[{"ca_cert":[{"path":"/id/ca.pem","expiration_time":"2030-01-01T00:00:00Z"}],"cert_chain":[]}]}`,
		},
		{
			name: "one certificate, its CA expiring first is ignored",
			in:   certsJSON([]string{"2026-03-03T08:14:05Z," + a}),
			want: Certificate{Expiry: at("2026-03-03T08:14:05Z"), URISANs: []string{a}},
		},
		{
			name: "several contexts: the earliest wins, with its SANs only",
			in: certsJSON(
				[]string{"2026-03-03T12:00:00Z," + b},
				[]string{"2026-03-03T08:00:00Z," + a},
				[]string{"2026-03-04T08:00:00Z," + b},
			),
			want: Certificate{Expiry: at("2026-03-03T08:00:00Z"), URISANs: []string{a}},
		},
		{
			name: "several certificates in one chain",
			in:   certsJSON([]string{"2026-03-05T00:00:00Z," + b, "2026-03-04T00:00:00Z," + a}),
			want: Certificate{Expiry: at("2026-03-04T00:00:00Z"), URISANs: []string{a}},
		},
		{
			name: "a tie merges the SANs, sorted and once each",
			in: certsJSON(
				[]string{"2026-03-03T08:00:00Z," + b + "," + a},
				[]string{"2026-03-03T08:00:00Z," + a},
				[]string{"2026-03-03T09:00:00Z,spiffe://cluster.local/ns/shop/sa/later"},
			),
			want: Certificate{Expiry: at("2026-03-03T08:00:00Z"), URISANs: []string{a, b}},
		},
		{
			name: "a later context does not reset an earlier expiry's SANs",
			in: certsJSON(
				[]string{"2026-03-03T08:00:00Z," + a},
				[]string{"2026-03-03T09:00:00Z," + b},
			),
			want: Certificate{Expiry: at("2026-03-03T08:00:00Z"), URISANs: []string{a}},
		},
		{
			name: "sub-second expiry and an offset are kept exactly, in UTC",
			in:   certsJSON([]string{"2026-03-03T10:00:00.5+02:00"}),
			want: Certificate{Expiry: time.Date(2026, 3, 3, 8, 0, 0, 5e8, time.UTC)},
		},
		{
			name: "an entry without expiration_time is skipped",
			in: `{"certificates":[{"cert_chain":[{"path":"/id/other.pem","subject_alt_names":[{"uri":"` + b + `"}]},` +
				`{"path":"/id/bundle.pem","subject_alt_names":[{"uri":"` + a + `"}],"expiration_time":"2026-03-03T08:00:00Z"}]}]}`,
			want: Certificate{Expiry: at("2026-03-03T08:00:00Z"), URISANs: []string{a}},
		},
		{
			name: "DNS and IP SANs are not URI SANs",
			in: `{"certificates":[{"cert_chain":[{"subject_alt_names":[{"dns":"cart.shop.svc"},{"ip_address":"127.0.0.1"},{"uri":"` + a + `"}],` +
				`"expiration_time":"2026-03-03T08:00:00Z"}]}]}`,
			want: Certificate{Expiry: at("2026-03-03T08:00:00Z"), URISANs: []string{a}},
		},
		{
			name: "no chain entry has an expiry",
			in:   `{"certificates":[{"cert_chain":[{"path":"/id/bundle.pem","subject_alt_names":[{"uri":"` + a + `"}]}]}]}`,
		},
		{
			name: "fields a newer Envoy may add are discarded",
			in: `{"certificates":[{"cert_chain":[{"expiration_time":"2026-03-03T08:00:00Z","key_algorithm":"ECDSA",` +
				`"ocsp_details":{"valid_from":"2026-03-03T00:00:00Z","stapled":true}}],"context_name":"inbound"}],"generated_at":"now"}`,
			want: Certificate{Expiry: at("2026-03-03T08:00:00Z")},
		},
		{
			name: "JSON names as protojson also accepts",
			in:   `{"certificates":[{"certChain":[{"subjectAltNames":[{"uri":"` + a + `"}],"expirationTime":"2026-03-03T08:00:00Z"}]}]}`,
			want: Certificate{Expiry: at("2026-03-03T08:00:00Z"), URISANs: []string{a}},
		},
		{name: "empty", in: "", wantErr: "empty body"},
		{name: "whitespace", in: " \n", wantErr: "empty body"},
		{name: "truncated", in: truncated(t, "certs.json"), wantErr: "unexpected EOF"},
		{name: "garbage", in: "<html>upstream connect error</html>", wantErr: "not a JSON object"},
		{name: "null", in: "null", wantErr: "not a JSON object"},
		{name: "array", in: `[{"certificates":[]}]`, wantErr: "not a JSON object"},
		{name: "certificates not a list", in: `{"certificates":{}}`, wantErr: "parse certs: proto"},
		{name: "expiry not a timestamp", in: certsJSON([]string{"tomorrow"}), wantErr: "invalid google.protobuf.Timestamp"},
		{name: "expiry out of range", in: certsJSON([]string{"0000-01-01T00:00:00Z"}), wantErr: "out of range"},
		{name: "days_until_expiration negative", in: `{"certificates":[{"cert_chain":[{"days_until_expiration":-1}]}]}`, wantErr: "parse certs: proto"},
		{name: "oversized", in: oversized(`{"certificates":[`, "]}"), wantErr: "too large"},
		{
			name: "exactly the cap",
			in:   exactlyMax(`{"certificates":[{"cert_chain":[{"expiration_time":"2026-03-03T08:00:00Z"}]}`, "]}"),
			want: Certificate{Expiry: at("2026-03-03T08:00:00Z")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCerts(strings.NewReader(tt.in))
			if checkErr(t, err, tt.wantErr) && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), "parse certs") {
				t.Errorf("error %q does not name the endpoint", err)
			}
		})
	}
}
