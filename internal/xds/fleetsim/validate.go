package fleetsim

import (
	"fmt"

	"google.golang.org/protobuf/types/known/anypb"
)

// Validate is an Accept that rejects what Envoy's config ingestion rejects
// first: a resource of another type than the response's, one that does not
// decode, or one that fails its protoc-gen-validate rules (the constraints
// Envoy checks before applying anything). It cannot know what only a running
// Envoy would refuse (a port in use, an unknown extension).
func Validate(typeURL string, resources []*anypb.Any) error {
	for _, r := range resources {
		if r.GetTypeUrl() != typeURL {
			return fmt.Errorf("%s does not match the message-wide type URL %s", r.GetTypeUrl(), typeURL)
		}
		m, err := r.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: %w", typeURL, err)
		}
		if v, ok := m.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				return fmt.Errorf("%s: %w", typeURL, err)
			}
		}
	}
	return nil
}
