package envoyadmin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxBodyBytes caps every body a parser reads. The filtered answers we ask for are a few KiB; the cap
// keeps a misbehaving or hostile pod from making the operator buffer an unbounded response.
const MaxBodyBytes = 4 << 20

// ErrBodyTooLarge is returned (wrapped) when a body is longer than MaxBodyBytes.
var ErrBodyTooLarge = fmt.Errorf("envoyadmin: body too large (over %d bytes)", MaxBodyBytes)

// errEmptyBody is returned (wrapped) for a body with nothing but whitespace, which Envoy never sends.
var errEmptyBody = errors.New("empty body")

// readBody reads all of r, but never more than MaxBodyBytes+1 bytes, so a long body is detected
// without being buffered whole.
func readBody(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxBodyBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxBodyBytes {
		return nil, ErrBodyTooLarge
	}
	return b, nil
}

// decodeJSON reads a capped body that must be one JSON object. Checking for '{' first rejects
// `null`, arrays and scalars, which encoding/json would otherwise decode into a zero struct.
func decodeJSON(r io.Reader, v any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return errEmptyBody
	}
	if b[0] != '{' {
		return fmt.Errorf("not a JSON object (starts with %q)", b[0])
	}
	return json.Unmarshal(b, v)
}
