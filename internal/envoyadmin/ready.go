package envoyadmin

import (
	"fmt"
	"io"
	"strings"
)

// ParseReady parses the text body of GET /ready ("LIVE\n") and returns the state name. Envoy writes
// the same body with status 503 when not LIVE, so callers should parse both 200 and 503 answers.
func ParseReady(r io.Reader) (string, error) {
	b, err := readBody(r)
	if err != nil {
		return "", fmt.Errorf("envoyadmin: parse ready: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("envoyadmin: parse ready: %w", errEmptyBody)
	}
	state, err := stateFromName(s)
	if err != nil {
		return "", fmt.Errorf("envoyadmin: parse ready: %w", err)
	}
	return state, nil
}
