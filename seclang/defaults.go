package seclang

import (
	"google.golang.org/protobuf/proto"

	"github.com/meshwaf/meshwaf/agentapi"
)

// WithDefaults returns a copy of p with every zero field that has a default
// set to it. A missing request_body message means "inspect with the default
// limit"; a present one is taken as written, because proto3 cannot tell an
// explicit inspect=false from an absent one.
func WithDefaults(p *agentapi.HostPolicy) *agentapi.HostPolicy {
	out := &agentapi.HostPolicy{}
	if p != nil {
		out = proto.Clone(p).(*agentapi.HostPolicy)
	}
	if out.Mode == agentapi.Mode_MODE_UNSPECIFIED {
		out.Mode = agentapi.Mode_MODE_PREVENT
	}
	if out.Crs == nil {
		out.Crs = &agentapi.CoreRuleSet{}
	}
	if out.Crs.ParanoiaLevel <= 0 {
		out.Crs.ParanoiaLevel = agentapi.DefaultParanoiaLevel
	}
	if out.Crs.ParanoiaLevel > 4 {
		out.Crs.ParanoiaLevel = 4
	}
	if out.Crs.InboundAnomalyThreshold <= 0 {
		out.Crs.InboundAnomalyThreshold = agentapi.DefaultInboundAnomalyThreshold
	}
	if out.Crs.OutboundAnomalyThreshold <= 0 {
		out.Crs.OutboundAnomalyThreshold = agentapi.DefaultOutboundAnomalyThreshold
	}
	if out.RequestBody == nil {
		out.RequestBody = &agentapi.RequestBody{Inspect: true}
	}
	if out.RequestBody.LimitBytes <= 0 {
		out.RequestBody.LimitBytes = agentapi.DefaultRequestBodyLimitBytes
	}
	if out.RequestBody.OverLimit == agentapi.OverLimit_OVER_LIMIT_UNSPECIFIED {
		out.RequestBody.OverLimit = agentapi.OverLimit_OVER_LIMIT_REJECT
	}
	if out.ResponseBody == nil {
		out.ResponseBody = &agentapi.ResponseBody{}
	}
	if out.ResponseBody.LimitBytes <= 0 {
		out.ResponseBody.LimitBytes = agentapi.DefaultResponseBodyLimitBytes
	}
	if out.BlockResponse == nil {
		out.BlockResponse = &agentapi.BlockResponse{}
	}
	if out.BlockResponse.Status == 0 {
		out.BlockResponse.Status = agentapi.DefaultBlockStatus
	}
	if out.BlockResponse.ContentType == "" {
		out.BlockResponse.ContentType = agentapi.DefaultBlockContentType
	}
	if out.Audit == agentapi.AuditLevel_AUDIT_LEVEL_UNSPECIFIED {
		out.Audit = agentapi.AuditLevel_AUDIT_LEVEL_DETECTED
	}
	return out
}
