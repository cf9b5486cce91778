package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
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

// FilterConfig is the ECDS resource for node: an ext_authz filter calling
// the node-local agent on behalf of every protected gateway the node
// serves, or, when none is protected, an RBAC filter with no rules, which
// lets everything through without calling anyone.
func (s *Snapshot) FilterConfig(node Node) (*corev3.TypedExtensionConfig, error) {
	var protected []Gateway
	for _, g := range s.GatewaysFor(node) {
		if g.Protected {
			protected = append(protected, g)
		}
	}
	var filter proto.Message = &rbacv3.RBAC{}
	if len(protected) > 0 {
		filter = s.extAuthz(protected)
	}
	typed, err := anypb.New(filter)
	if err != nil {
		return nil, fmt.Errorf("encoding %s filter: %w", FilterName, err)
	}
	return &corev3.TypedExtensionConfig{Name: FilterName, TypedConfig: typed}, nil
}

func (s *Snapshot) extAuthz(gateways []Gateway) *extauthzv3.ExtAuthz {
	grpc := &corev3.GrpcService{
		TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: s.config.AgentCluster},
		},
		Timeout: durationpb.New(s.config.AgentTimeout),
	}
	failOpen, partial := true, false
	var maxBody int64
	digest := sha256.New()
	for _, g := range gateways {
		grpc.InitialMetadata = append(grpc.InitialMetadata,
			&corev3.HeaderValue{Key: agentapi.GatewayMetadataKey, Value: g.ID})
		digest.Write([]byte(g.PolicyDigest))
		failOpen = failOpen && g.FailOpen
		partial = partial || g.AllowPartialBody
		maxBody = max(maxBody, g.MaxRequestBodyBytes)
	}
	grpc.InitialMetadata = append(grpc.InitialMetadata, &corev3.HeaderValue{
		Key: agentapi.PolicyDigestMetadataKey, Value: hex.EncodeToString(digest.Sum(nil))[:12],
	})
	authz := &extauthzv3.ExtAuthz{
		Services:            &extauthzv3.ExtAuthz_GrpcService{GrpcService: grpc},
		TransportApiVersion: corev3.ApiVersion_V3,
		FailureModeAllow:    failOpen,
		// Header values need not be UTF-8; raw bytes reach the agent intact.
		EncodeRawHeaders: true,
	}
	if maxBody > 0 {
		authz.WithRequestBody = &extauthzv3.BufferSettings{
			MaxRequestBytes:     uint32(min(maxBody, math.MaxUint32)),
			AllowPartialMessage: partial,
			PackAsBytes:         true,
		}
	}
	return authz
}
