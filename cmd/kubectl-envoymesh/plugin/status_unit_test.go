package plugin

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	meshv1alpha1 "github.com/envoymesh/envoymesh-operator/api/v1alpha1"
)

var _ = Describe("a proxy's state", func() {
	DescribeTable("in an XDS mesh comes from its stream",
		func(p meshv1alpha1.ProxyStatus, state, reason string) {
			gotState, gotReason := proxyState(p, "v2")
			Expect(gotState).To(Equal(state))
			Expect(gotReason).To(ContainSubstring(reason))
		},
		Entry("synced", meshv1alpha1.ProxyStatus{State: "LIVE", Synced: true, XDS: &meshv1alpha1.XDSProxyStatus{Connected: true, AckedVersion: "v2"}},
			StateSynced, ""),
		Entry("a NACK with Envoy's reason", meshv1alpha1.ProxyStatus{State: "LIVE", Rejected: true, XDS: &meshv1alpha1.XDSProxyStatus{
			Connected: true, AckedVersion: "v1", RejectedVersion: "v2", RejectReason: "unknown field"}},
			StateRejected, "NACKed config v2 over xDS and keeps serving v1: unknown field"),
		Entry("no stream", meshv1alpha1.ProxyStatus{State: "LIVE", XDS: &meshv1alpha1.XDSProxyStatus{}},
			StateStale, "no ADS stream"),
		Entry("behind", meshv1alpha1.ProxyStatus{State: "LIVE", XDS: &meshv1alpha1.XDSProxyStatus{Connected: true, AckedVersion: "v1"}},
			StateStale, "ACKed v1 over xDS, current is v2"),
		Entry("file delivery: ConfigMap propagation", meshv1alpha1.ProxyStatus{State: "LIVE", ConfigVersion: "v1"},
			StateStale, "ConfigMap propagation"),
	)
})
