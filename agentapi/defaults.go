package agentapi

// What a HostPolicy field left at its zero value means. The WAFPolicy API
// (api/v1alpha1) defaults to the same values, and the agent applies them to
// any policy it receives, so a hand-built policy or one from an older
// control plane behaves the same.
const (
	DefaultParanoiaLevel            = 1
	DefaultInboundAnomalyThreshold  = 5
	DefaultOutboundAnomalyThreshold = 4
	DefaultRequestBodyLimitBytes    = 128 * 1024
	DefaultResponseBodyLimitBytes   = 128 * 1024
	DefaultBlockStatus              = 403
	DefaultBlockContentType         = "application/json"
)
