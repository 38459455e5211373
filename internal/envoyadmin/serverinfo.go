package envoyadmin

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Server states as Envoy names them in /server_info and /ready (admin.v3.ServerInfo.State).
const (
	StateLive            = "LIVE"
	StateDraining        = "DRAINING"
	StatePreInitializing = "PRE_INITIALIZING"
	StateInitializing    = "INITIALIZING"
)

// states is indexed by the admin.v3.ServerInfo.State enum number, which is also the value of the
// server.state gauge.
var states = [...]string{StateLive, StateDraining, StatePreInitializing, StateInitializing}

// stateFromName validates a state name, so a body that is JSON but not Envoy's is an error rather
// than a pod in an unknown state.
func stateFromName(s string) (string, error) {
	for _, name := range states {
		if s == name {
			return s, nil
		}
	}
	return "", fmt.Errorf("unknown server state %.32q", s)
}

// stateFromNumber maps the server.state gauge (or a numeric proto-JSON enum) to its name.
func stateFromNumber(n uint64) (string, error) {
	if n >= uint64(len(states)) {
		return "", fmt.Errorf("unknown server state %d", n)
	}
	return states[n], nil
}

// ServerInfo is the part of /server_info the operator reports.
type ServerInfo struct {
	// State is one of the State* constants.
	State string
	// Version is the semantic version inside RawVersion, e.g. "1.15.0-dev"; empty when a build
	// reports a string without one.
	Version string
	// RawVersion is Envoy's full build string, e.g.
	// "093e2ffe046313242144d0431f1bb5cf18d82544/1.15.0-dev/Clean/RELEASE/BoringSSL".
	RawVersion string
}

type serverInfoJSON struct {
	Version *string         `json:"version"`
	State   json.RawMessage `json:"state"`
}

// ParseServerInfo parses the JSON body of GET /server_info.
func ParseServerInfo(r io.Reader) (ServerInfo, error) {
	var in serverInfoJSON
	if err := decodeJSON(r, &in); err != nil {
		return ServerInfo{}, fmt.Errorf("envoyadmin: parse server_info: %w", err)
	}
	if in.Version == nil || *in.Version == "" {
		return ServerInfo{}, fmt.Errorf("envoyadmin: parse server_info: no version")
	}
	if len(in.State) == 0 {
		return ServerInfo{}, fmt.Errorf("envoyadmin: parse server_info: no state")
	}
	state, err := decodeState(in.State)
	if err != nil {
		return ServerInfo{}, fmt.Errorf("envoyadmin: parse server_info: %w", err)
	}
	return ServerInfo{State: state, Version: semanticVersion(*in.Version), RawVersion: *in.Version}, nil
}

// decodeState accepts the enum name Envoy writes and, because proto-JSON allows it, the number.
func decodeState(raw json.RawMessage) (string, error) {
	var name string
	if err := json.Unmarshal(raw, &name); err == nil {
		return stateFromName(name)
	}
	n, err := counterValue(raw)
	if err != nil {
		return "", fmt.Errorf("state: %w", err)
	}
	return stateFromNumber(n)
}

// semverRE matches one "/"-separated field of Envoy's build string that is a semantic version.
var semverRE = regexp.MustCompile(`^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$`)

// semanticVersion finds the version in "<sha>/<version>/<Clean|Modified>/<build type>/<ssl>". It
// searches every field rather than taking the second so that distributors' builds that add or drop a
// field still report a version.
func semanticVersion(raw string) string {
	for field := range strings.SplitSeq(raw, "/") {
		if semverRE.MatchString(field) {
			return field
		}
	}
	return ""
}
