package agent

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/meshwaf/meshwaf/agentapi"
)

// TransactionIDHeader carries the Coraza transaction id on denials so that
// a blocked user's report can be matched to its audit line.
const TransactionIDHeader = "x-meshwaf-transaction-id"

// authzServer answers Envoy's ext_authz Check. It never returns a gRPC
// error: Envoy would then apply its failure mode, which is the operator's
// choice for an absent agent, not for a request the agent could not parse.
type authzServer struct {
	authv3.UnimplementedAuthorizationServer
	reg     *Registry
	audit   *AuditLog
	metrics *metrics
	log     *slog.Logger
	now     func() time.Time
}

func (s *authzServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	host := normalizeHost(req.GetAttributes().GetRequest().GetHttp().GetHost())
	e := s.reg.Lookup(gatewaysFrom(ctx), host)
	switch {
	case e == nil:
		s.metrics.requests.WithLabelValues(verdictNoPolicy).Inc()
		return allowResponse(), nil
	case e.Policy.GetMode() == agentapi.Mode_MODE_OFF || e.waf == nil:
		s.metrics.requests.WithLabelValues(verdictOff).Inc()
		return allowResponse(), nil
	}
	return s.checkWithPolicy(e, req), nil
}

// checkWithPolicy inspects one request. A panic anywhere in conversion or
// inspection is recovered into the verdict the policy's mode implies:
// Prevent fails closed with the block response, Detect allows.
func (s *authzServer) checkWithPolicy(e *Entry, req *authv3.CheckRequest) (resp *authv3.CheckResponse) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("inspection panicked", "policy", e.Name, "panic", fmt.Sprint(p))
			s.metrics.requests.WithLabelValues(verdictError).Inc()
			if e.Policy.GetMode() == agentapi.Mode_MODE_DETECT {
				resp = allowResponse()
				return
			}
			resp = denyResponse(e.Policy, verdict{status: int(e.Policy.GetBlockResponse().GetStatus())})
		}
	}()
	r := fromCheckRequest(req)
	v := inspect(e, &r)
	s.metrics.latency.Observe(time.Since(start).Seconds())
	s.metrics.requests.WithLabelValues(verdictLabel(v.action)).Inc()
	if shouldAudit(e.Policy.GetAudit(), v.action) {
		s.writeAudit(e, &r, &v)
	}
	if v.action == actionBlocked {
		return denyResponse(e.Policy, v)
	}
	return allowResponse()
}

func (s *authzServer) writeAudit(e *Entry, r *httpRequest, v *verdict) {
	rec := &AuditRecord{
		Time:          s.now().UTC(),
		TransactionID: v.txID,
		RequestID:     r.requestID,
		Gateway:       e.Policy.GetGateway(),
		Host:          r.host,
		Method:        r.method,
		Path:          truncate(r.uri, maxAuditPath),
		Client:        r.clientIP,
		Policy:        e.Policy.GetPolicy(),
		PolicyVersion: e.Policy.GetPolicyVersion(),
		Mode:          modeName(e.Policy.GetMode()),
		Action:        v.action,
		Status:        v.status,
		Reason:        v.reason,
		AnomalyScore:  v.score,
		Rules:         v.rules,
	}
	if err := s.audit.Write(rec); err != nil {
		s.log.Error("audit log write failed", "error", err)
	}
}

func verdictLabel(action string) string {
	switch action {
	case actionBlocked:
		return verdictBlocked
	case actionDetected:
		return verdictDetected
	default:
		return verdictAllowed
	}
}

// gatewaysFrom reads the calling gateways from the gRPC metadata. Envoy may
// send the key several times; a comma-joined value is split as well.
func gatewaysFrom(ctx context.Context) []string {
	md, _ := metadata.FromIncomingContext(ctx)
	var out []string
	for _, v := range md.Get(agentapi.GatewayMetadataKey) {
		for _, gw := range strings.Split(v, ",") {
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

// denyResponse builds the policy's block response. An empty policy body
// becomes meshwaf's JSON body carrying the transaction id.
func denyResponse(p *agentapi.HostPolicy, v verdict) *authv3.CheckResponse {
	br := p.GetBlockResponse()
	status := v.status
	if status == 0 {
		status = int(br.GetStatus())
	}
	body, ctype := br.GetBody(), br.GetContentType()
	if body == "" {
		body = fmt.Sprintf(`{"blocked":true,"transaction_id":%q}`, v.txID)
		ctype = "application/json"
	}
	headers := []*corev3.HeaderValueOption{
		setHeader("content-type", ctype),
		setHeader(TransactionIDHeader, v.txID),
	}
	if v.location != "" {
		headers = append(headers, setHeader("location", v.location))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
			Headers: headers,
			Body:    body,
		}},
	}
}

func setHeader(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: key, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
