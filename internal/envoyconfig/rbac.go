package envoyconfig

import (
	"fmt"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetworkv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"

	"github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

const (
	httpRBACFilterName    = "envoy.filters.http.rbac"
	networkRBACFilterName = "envoy.filters.network.rbac"

	// callersPolicyName names the one policy: the callers the declared call graph
	// and spec.allowFrom admit.
	callersPolicyName = "callers"
)

// callerRules allow exactly principals, matched on the URI SAN of the client
// certificate, for any request. Without principals there is no policy, and an
// ALLOW rule set with no policy denies everything, which is what a service nobody
// may call needs.
func callerRules(principals []string) *rbacconfigv3.RBAC {
	rules := &rbacconfigv3.RBAC{Action: rbacconfigv3.RBAC_ALLOW}
	if len(principals) == 0 {
		return rules
	}
	policy := &rbacconfigv3.Policy{
		Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_Any{Any: true}}},
	}
	for _, p := range principals {
		policy.Principals = append(policy.Principals, &rbacconfigv3.Principal{
			Identifier: &rbacconfigv3.Principal_Authenticated_{Authenticated: &rbacconfigv3.Principal_Authenticated{
				PrincipalName: exactMatcher(p),
			}},
		})
	}
	rules.Policies = map[string]*rbacconfigv3.Policy{callersPolicyName: policy}
	return rules
}

// enforcedAndShadow splits callerRules by mode: Enforce denies with them, Audit
// only counts what they would deny (shadow_denied), Off has no rules at all.
func enforcedAndShadow(sec *Security) (rules, shadow *rbacconfigv3.RBAC) {
	switch sec.Authorization {
	case v1alpha1.AuthorizationEnforce:
		return callerRules(principals(sec)), nil
	case v1alpha1.AuthorizationAudit:
		return nil, callerRules(principals(sec))
	}
	return nil, nil
}

// httpRBAC is the HTTP filter that answers 403 (gRPC: PERMISSION_DENIED) to a
// caller sec does not admit, or nothing when authorization is Off. Its stats are
// http.inbound.rbac.*.
func httpRBAC(sec *Security) ([]*hcmv3.HttpFilter, error) {
	rules, shadow := enforcedAndShadow(sec)
	if rules == nil && shadow == nil {
		return nil, nil
	}
	f, err := httpFilter(httpRBACFilterName, &rbachttpv3.RBAC{Rules: rules, ShadowRules: shadow})
	if err != nil {
		return nil, err
	}
	return []*hcmv3.HttpFilter{f}, nil
}

// networkRBAC is httpRBAC for TCP, which closes the connection instead; it
// decides on the first bytes from the client, after tcp_proxy has connected to
// the app, so Enforce also restricts the handshake (see inboundMTLSChain).
// Its stats are inbound.rbac.*.
func networkRBAC(sec *Security) ([]*listenerv3.Filter, error) {
	rules, shadow := enforcedAndShadow(sec)
	if rules == nil && shadow == nil {
		return nil, nil
	}
	packed, err := pack(&rbacnetworkv3.RBAC{StatPrefix: inboundListenerName, Rules: rules, ShadowRules: shadow})
	if err != nil {
		return nil, fmt.Errorf("network filter %q: %w", networkRBACFilterName, err)
	}
	return []*listenerv3.Filter{{Name: networkRBACFilterName, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: packed}}}, nil
}
