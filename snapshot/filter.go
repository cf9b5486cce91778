package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshwaf/meshwaf/agentapi"
)

// FilterName is the name of the HTTP filter, and of its ECDS resource, on
// every gateway meshwaf protects.
const FilterName = "meshwaf.waf"

// Node is how an Envoy proxy identifies itself: Istio proxies send their
// namespace and pod labels in node.metadata (NAMESPACE, LABELS).
type Node struct {
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels"`
}

// GatewaysFor lists the gateways whose selector matches node.
func (s *Snapshot) GatewaysFor(node Node) []Gateway {
	var out []Gateway
	for _, g := range s.Gateways {
		if g.selects(node) {
			out = append(out, g)
		}
	}
	return out
}

func (g Gateway) selects(node Node) bool {
	if g.NodeNamespace != "" && g.NodeNamespace != node.Namespace {
		return false
	}
	if len(g.NodeLabels) == 0 {
		return false
	}
	for k, v := range g.NodeLabels {
		if node.Labels[k] != v {
			return false
		}
	}
	return true
}

// FilterConfig is the ECDS resource for node. For the protected gateways
// the node serves, it is an ext_authz filter calling the node-local agent,
// or an ext_proc filter when a policy on them inspects responses, which
// only ext_proc delivers. When none is protected, it is an RBAC filter with
// no rules, which lets everything through without calling anyone.
func (s *Snapshot) FilterConfig(node Node) (*corev3.TypedExtensionConfig, error) {
	var protected []Gateway
	for _, g := range s.GatewaysFor(node) {
		if g.Protected {
			protected = append(protected, g)
		}
	}
	var filter proto.Message = &rbacv3.RBAC{}
	switch {
	case len(protected) == 0:
	case s.inspectsResponses(protected):
		filter = s.extProc(protected)
	default:
		filter = s.extAuthz(protected)
	}
	typed, err := anypb.New(filter)
	if err != nil {
		return nil, fmt.Errorf("encoding %s filter: %w", FilterName, err)
	}
	return &corev3.TypedExtensionConfig{Name: FilterName, TypedConfig: typed}, nil
}

// inspectsResponses reports whether a policy in force on one of gateways
// asks for response inspection.
func (s *Snapshot) inspectsResponses(gateways []Gateway) bool {
	ids := map[string]bool{}
	for _, g := range gateways {
		ids[g.ID] = true
	}
	for _, hp := range s.HostPolicies {
		if ids[hp.GetGateway()] && hp.GetMode() != agentapi.Mode_MODE_OFF && hp.GetResponseBody().GetInspect() {
			return true
		}
	}
	return false
}

// filterSettings fold what the gateways' policies need into the one filter
// they share: Envoy fails open only if every policy says so, and buffers
// request bodies up to the largest limit any policy inspects. The agent
// applies each host's own limit.
type filterSettings struct {
	failOpen, partial bool
	maxBody           int64
}

func settingsFor(gateways []Gateway) filterSettings {
	fs := filterSettings{failOpen: true}
	for _, g := range gateways {
		fs.failOpen = fs.failOpen && g.FailOpen
		fs.partial = fs.partial || g.AllowPartialBody
		fs.maxBody = max(fs.maxBody, g.MaxRequestBodyBytes)
	}
	return fs
}

// agentService is the gRPC service both filters call: the node-local agent,
// told through initial metadata which gateways ask and which policy set
// the gateway was configured for.
func (s *Snapshot) agentService(gateways []Gateway) *corev3.GrpcService {
	grpc := &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: s.config.AgentCluster},
		},
	}
	digest := sha256.New()
	for _, g := range gateways {
		grpc.InitialMetadata = append(grpc.InitialMetadata,
			&corev3.HeaderValue{Key: agentapi.GatewayMetadataKey, Value: g.ID})
		digest.Write([]byte(g.PolicyDigest))
	}
	grpc.InitialMetadata = append(grpc.InitialMetadata, &corev3.HeaderValue{
		Key: agentapi.PolicyDigestMetadataKey, Value: hex.EncodeToString(digest.Sum(nil))[:12],
	})
	return grpc
}

// unavailable is what a fail-closed gateway answers when no agent does (and
// what an agent answers for a request it has no time to inspect): 503, so
// that a WAF that is down or overloaded never looks like a block (403)
// to clients, dashboards or alerts.
var unavailable = &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}

func (s *Snapshot) extAuthz(gateways []Gateway) *extauthzv3.ExtAuthz {
	grpc := s.agentService(gateways)
	grpc.Timeout = durationpb.New(s.config.AgentTimeout)
	fs := settingsFor(gateways)
	authz := &extauthzv3.ExtAuthz{
		Services:            &extauthzv3.ExtAuthz_GrpcService{GrpcService: grpc},
		TransportApiVersion: corev3.ApiVersion_V3,
		FailureModeAllow:    fs.failOpen,
		StatusOnError:       unavailable,
		// Header values need not be UTF-8; raw bytes reach the agent intact.
		EncodeRawHeaders: true,
	}
	if fs.maxBody > 0 {
		authz.WithRequestBody = &extauthzv3.BufferSettings{
			MaxRequestBytes:     uint32(min(fs.maxBody, math.MaxUint32)),
			AllowPartialMessage: fs.partial,
			PackAsBytes:         true,
		}
	}
	return authz
}

// extProc configures ext_proc for gateways where responses are inspected.
//
//   - The gRPC service has no timeout: an ext_proc stream lives as long as
//     the HTTP request, upstream time included. message_timeout bounds each
//     answer of the agent instead, and the agent learns it from one more
//     initial metadata entry, so that it answers in time (agent/deadline.go).
//   - Request bodies are buffered, so the agent sees each whole (up to
//     Envoy's buffer limit) in one message before anything reaches the
//     upstream. A body Envoy cannot buffer is refused with 413 (BUFFERED)
//     unless a policy inspects partial bodies (BUFFERED_PARTIAL).
//   - Responses are not sent by default. The agent asks for them per
//     request (mode_override, hence allow_mode_override) when the host's
//     policy inspects responses: response headers, and the body buffered
//     partially, as a response over the limit passes after its first limit
//     bytes were inspected. Holding responses by default would also hold
//     the replies Envoy makes before any filter ran (a codec error's 400),
//     which then race with the connection Envoy is closing and are lost.
//     The same override drops the request body of hosts that ignore it.
//   - observability_mode is not used, not even for Detect-only gateways:
//     see docs/decisions.md.
func (s *Snapshot) extProc(gateways []Gateway) *extprocv3.ExternalProcessor {
	fs := settingsFor(gateways)
	requestBody := extprocv3.ProcessingMode_NONE
	switch {
	case fs.maxBody > 0 && fs.partial:
		requestBody = extprocv3.ProcessingMode_BUFFERED_PARTIAL
	case fs.maxBody > 0:
		requestBody = extprocv3.ProcessingMode_BUFFERED
	}
	svc := s.agentService(gateways)
	svc.InitialMetadata = append(svc.InitialMetadata, &corev3.HeaderValue{
		Key: agentapi.MessageTimeoutMetadataKey, Value: s.config.AgentTimeout.String(),
	})
	return &extprocv3.ExternalProcessor{
		GrpcService:      svc,
		FailureModeAllow: fs.failOpen,
		StatusOnError:    unavailable,
		ProcessingMode: &extprocv3.ProcessingMode{
			RequestHeaderMode:   extprocv3.ProcessingMode_SEND,
			RequestBodyMode:     requestBody,
			RequestTrailerMode:  extprocv3.ProcessingMode_SKIP,
			ResponseHeaderMode:  extprocv3.ProcessingMode_SKIP,
			ResponseBodyMode:    extprocv3.ProcessingMode_NONE,
			ResponseTrailerMode: extprocv3.ProcessingMode_SKIP,
		},
		RequestAttributes: agentapi.ExtProcRequestAttributes,
		MessageTimeout:    durationpb.New(s.config.AgentTimeout),
		AllowModeOverride: true,
	}
}
