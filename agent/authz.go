package agent

import (
	"context"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/meshwaf/meshwaf/agentapi"
)

// authzServer answers Envoy's ext_authz Check: the request phases of one
// exchange, back to back. It never returns a gRPC error: Envoy would then
// apply its failure mode, which is the operator's choice for an absent
// agent, not for a request the agent could not parse.
type authzServer struct {
	authv3.UnimplementedAuthorizationServer
	in *inspector
}

func (s *authzServer) Check(ctx context.Context, req *authv3.CheckRequest) (resp *authv3.CheckResponse, _ error) {
	var x *exchange
	// The exchange recovers from Coraza panics itself; this is the last
	// line for a bug in the adapter, which must not cost the agent.
	defer func() {
		if p := recover(); p != nil {
			resp = recovered(s.in, x, p, allowResponse, func(v verdict) *authv3.CheckResponse { return denyResponse(x.policy, v) })
		}
	}()
	r := fromCheckRequest(req)
	x = s.in.begin(gatewaysFrom(ctx), &r, protocolExtAuthz)
	if x == nil {
		return allowResponse(), nil
	}
	x.deadline = authzDeadline(ctx)
	x.request(r.body, r.partial)
	v := x.finish()
	if v.denies() {
		return denyResponse(x.policy, v), nil
	}
	return allowResponse(), nil
}

// gatewaysFrom reads the calling gateways from the gRPC metadata. Envoy may
// send the key several times; a comma-joined value is split as well.
func gatewaysFrom(ctx context.Context) []string {
	var out []string
	// ValueFromIncomingContext copies only this key's values, not the
	// whole metadata as FromIncomingContext does, on every Check.
	for _, v := range metadata.ValueFromIncomingContext(ctx, agentapi.GatewayMetadataKey) {
		for gw := range strings.SplitSeq(v, ",") {
			if gw = strings.TrimSpace(gw); gw != "" {
				out = append(out, gw)
			}
		}
	}
	return out
}

func allowResponse() *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}
}

// denyResponse is the policy's block response as ext_authz sends it.
func denyResponse(p *agentapi.HostPolicy, v verdict) *authv3.CheckResponse {
	d := denialFor(p, v)
	headers := make([]*corev3.HeaderValueOption, 0, len(d.headers))
	for _, h := range d.headers {
		headers = append(headers, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.name, Value: h.value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.status)},
			Headers: headers,
			Body:    d.body,
		}},
	}
}
