package envoyadmin

import (
	"strings"
	"testing"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
)

func TestParseServerInfo(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    ServerInfo
		wantErr string
	}{
		{
			name: "recorded front-proxy",
			in:   fixture(t, "server_info.json"),
			want: ServerInfo{State: StateLive, Version: "1.15.0-dev", RawVersion: "093e2ffe046313242144d0431f1bb5cf18d82544/1.15.0-dev/Clean/RELEASE/BoringSSL"},
		},
		{
			name: "docs sample",
			in:   fixture(t, "server_info_docs_sample.json"),
			want: ServerInfo{State: StateLive, Version: "1.9.0-dev", RawVersion: "b050513e840aa939a01f89b07c162f00ab3150eb/1.9.0-dev/Modified/DEBUG"},
		},
		{
			name: "draining",
			in:   `{"version":"abc/1.36.2/Clean/RELEASE/BoringSSL","state":"DRAINING"}`,
			want: ServerInfo{State: StateDraining, Version: "1.36.2", RawVersion: "abc/1.36.2/Clean/RELEASE/BoringSSL"},
		},
		{
			name: "pre-initializing",
			in:   `{"version":"abc/1.36.2/Clean/RELEASE/BoringSSL","state":"PRE_INITIALIZING"}`,
			want: ServerInfo{State: StatePreInitializing, Version: "1.36.2", RawVersion: "abc/1.36.2/Clean/RELEASE/BoringSSL"},
		},
		{
			name: "initializing",
			in:   `{"version":"abc/1.36.2/Clean/RELEASE/BoringSSL","state":"INITIALIZING"}`,
			want: ServerInfo{State: StateInitializing, Version: "1.36.2", RawVersion: "abc/1.36.2/Clean/RELEASE/BoringSSL"},
		},
		{
			name: "numeric state as proto-JSON allows",
			in:   `{"version":"abc/1.36.2/Clean/RELEASE/BoringSSL","state":1}`,
			want: ServerInfo{State: StateDraining, Version: "1.36.2", RawVersion: "abc/1.36.2/Clean/RELEASE/BoringSSL"},
		},
		{
			name: "version with build metadata and an extra field",
			in:   `{"version":"abc/extra/1.30.1+distro.2/Clean/RELEASE/BoringSSL","state":"LIVE"}`,
			want: ServerInfo{State: StateLive, Version: "1.30.1+distro.2", RawVersion: "abc/extra/1.30.1+distro.2/Clean/RELEASE/BoringSSL"},
		},
		{
			name: "build string without a semantic version keeps the raw string",
			in:   `{"version":"custom-build","state":"LIVE"}`,
			want: ServerInfo{State: StateLive, RawVersion: "custom-build"},
		},
		{name: "empty", in: "", wantErr: "empty body"},
		{name: "whitespace", in: " \n\t", wantErr: "empty body"},
		{name: "truncated", in: truncated(t, "server_info.json"), wantErr: "unexpected end of JSON input"},
		{name: "garbage", in: "<html>bad gateway</html>", wantErr: "not a JSON object"},
		{name: "null", in: "null", wantErr: "not a JSON object"},
		{name: "array", in: `[{"state":"LIVE"}]`, wantErr: "not a JSON object"},
		{name: "trailing data", in: `{"version":"a/1.2.3","state":"LIVE"} {}`, wantErr: "invalid character"},
		{name: "no state", in: `{"version":"a/1.2.3"}`, wantErr: "no state"},
		{name: "unknown state", in: `{"version":"a/1.2.3","state":"SLEEPING"}`, wantErr: `unknown server state "SLEEPING"`},
		{name: "lower-case state", in: `{"version":"a/1.2.3","state":"live"}`, wantErr: "unknown server state"},
		{name: "state number out of range", in: `{"version":"a/1.2.3","state":4}`, wantErr: "unknown server state 4"},
		{name: "state of the wrong type", in: `{"version":"a/1.2.3","state":true}`, wantErr: "state: not a non-negative integer"},
		{name: "no version", in: `{"state":"LIVE"}`, wantErr: "no version"},
		{name: "empty version", in: `{"version":"","state":"LIVE"}`, wantErr: "no version"},
		{name: "version of the wrong type", in: `{"version":115,"state":"LIVE"}`, wantErr: "cannot unmarshal number"},
		{name: "oversized", in: oversized(`{"version":"a/1.2.3","state":"LIVE"`, "}"), wantErr: "too large"},
		{name: "exactly the cap", in: exactlyMax(`{"version":"a/1.2.3","state":"LIVE"`, "}"), want: ServerInfo{State: StateLive, Version: "1.2.3", RawVersion: "a/1.2.3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseServerInfo(strings.NewReader(tt.in))
			if checkErr(t, err, tt.wantErr) && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "envoyadmin: parse server_info: ") {
				t.Errorf("error %q does not name the endpoint", err)
			}
		})
	}
}

// TestStatesMatchEnvoyEnum guards the mapping of the server.state gauge: its value is the
// admin.v3.ServerInfo.State enum number.
func TestStatesMatchEnvoyEnum(t *testing.T) {
	if len(states) != len(adminv3.ServerInfo_State_name) {
		t.Fatalf("%d states, Envoy has %d", len(states), len(adminv3.ServerInfo_State_name))
	}
	for i, name := range states {
		if got := adminv3.ServerInfo_State_name[int32(i)]; got != name {
			t.Errorf("state %d: have %q, Envoy says %q", i, name, got)
		}
	}
}
