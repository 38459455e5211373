package envoyadmin

import (
	"strings"
	"testing"
)

func TestParseReady(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{name: "recorded", in: fixture(t, "ready.txt"), want: StateLive},
		{name: "no newline", in: "LIVE", want: StateLive},
		{name: "draining (sent with 503)", in: "DRAINING\n", want: StateDraining},
		{name: "pre-initializing with CRLF", in: "PRE_INITIALIZING\r\n", want: StatePreInitializing},
		{name: "initializing", in: "INITIALIZING\n", want: StateInitializing},
		{name: "empty", in: "", wantErr: "empty body"},
		{name: "newline only", in: "\n", wantErr: "empty body"},
		{name: "lower case", in: "live\n", wantErr: "unknown server state"},
		{name: "not a state", in: "no healthy upstream", wantErr: "unknown server state"},
		{name: "JSON", in: `{"state":"LIVE"}`, wantErr: "unknown server state"},
		{name: "truncated", in: "LI", wantErr: "unknown server state"},
		{name: "oversized", in: oversized("LIVE", ""), wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseReady(strings.NewReader(tt.in))
			if checkErr(t, err, tt.wantErr) && got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
