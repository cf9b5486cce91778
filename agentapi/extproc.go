package agentapi

// ExtProcRequestAttributes are the Envoy attributes the control plane
// configures the ext_proc filter to send with request headers
// (request_attributes), and the agent reads: ext_proc carries nothing about
// the connection otherwise, and the WAF and the audit log need the client
// address. Envoy puts them under the filter's name,
// "envoy.filters.http.ext_proc", in ProcessingRequest.attributes.
var ExtProcRequestAttributes = []string{
	"source.address", "source.port",
	"destination.address", "destination.port",
	"request.protocol",
}

// MessageTimeoutMetadataKey is the gRPC metadata key with which the
// control plane tells the agent the ext_proc filter's message_timeout (a
// Go duration, "500ms"). An ext_proc stream has no gRPC deadline, and the
// agent must answer each message before Envoy stops waiting.
const MessageTimeoutMetadataKey = "x-meshwaf-message-timeout"
