package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/store"
)

var (
	modes = map[v1alpha1.Mode]agentapi.Mode{
		v1alpha1.ModePrevent: agentapi.Mode_MODE_PREVENT,
		v1alpha1.ModeDetect:  agentapi.Mode_MODE_DETECT,
		v1alpha1.ModeOff:     agentapi.Mode_MODE_OFF,
	}
	overLimits = map[v1alpha1.OverLimit]agentapi.OverLimit{
		v1alpha1.OverLimitReject:         agentapi.OverLimit_OVER_LIMIT_REJECT,
		v1alpha1.OverLimitInspectPartial: agentapi.OverLimit_OVER_LIMIT_INSPECT_PARTIAL,
	}
	failureModes = map[v1alpha1.FailureMode]agentapi.FailureMode{
		v1alpha1.FailureModeClosed: agentapi.FailureMode_FAILURE_MODE_CLOSED,
		v1alpha1.FailureModeOpen:   agentapi.FailureMode_FAILURE_MODE_OPEN,
	}
	auditLevels = map[v1alpha1.AuditLog]agentapi.AuditLevel{
		v1alpha1.AuditBlocked:  agentapi.AuditLevel_AUDIT_LEVEL_BLOCKED,
		v1alpha1.AuditDetected: agentapi.AuditLevel_AUDIT_LEVEL_DETECTED,
		v1alpha1.AuditAll:      agentapi.AuditLevel_AUDIT_LEVEL_ALL,
		v1alpha1.AuditNone:     agentapi.AuditLevel_AUDIT_LEVEL_NONE,
	}
)

func coreRuleSet(c v1alpha1.CRS) *agentapi.CoreRuleSet {
	return &agentapi.CoreRuleSet{
		ParanoiaLevel:            c.ParanoiaLevel,
		InboundAnomalyThreshold:  c.InboundAnomalyThreshold,
		OutboundAnomalyThreshold: c.OutboundAnomalyThreshold,
		EarlyBlocking:            c.EarlyBlocking,
	}
}

func exclusions(in []v1alpha1.Exclusion) []*agentapi.Exclusion {
	var out []*agentapi.Exclusion
	for _, ex := range in {
		out = append(out, &agentapi.Exclusion{RuleIds: ex.RuleIDs, Tags: ex.Tags, Paths: ex.Paths, Targets: ex.Targets})
	}
	return out
}

// hostPolicyTemplate converts a policy's spec, with defaults applied, into
// the HostPolicy every one of its hosts gets (Gateway and Host left empty).
// PolicyVersion is a digest of that content, so agents and status can tell
// exactly which content was applied.
func hostPolicyTemplate(p *store.Policy) (*agentapi.HostPolicy, error) {
	spec := p.Spec.WithDefaults()
	hp := &agentapi.HostPolicy{
		Policy:      p.Ref.NamespacedName(),
		Mode:        modes[spec.Mode],
		Crs:         coreRuleSet(spec.CRS),
		Exclusions:  exclusions(spec.Exclusions),
		CustomRules: spec.CustomRules,
		RequestBody: &agentapi.RequestBody{
			Inspect:    *spec.RequestBody.Inspect,
			LimitBytes: spec.RequestBody.LimitBytes,
			OverLimit:  overLimits[spec.RequestBody.OverLimit],
		},
		ResponseBody: &agentapi.ResponseBody{
			Inspect:    spec.ResponseBody.Inspect,
			LimitBytes: spec.ResponseBody.LimitBytes,
		},
		BlockResponse: &agentapi.BlockResponse{
			Status:      spec.BlockResponse.Status,
			ContentType: spec.BlockResponse.ContentType,
			Body:        spec.BlockResponse.Body,
		},
		Audit:       auditLevels[spec.Audit.Log],
		FailureMode: failureModes[spec.FailureMode],
	}
	if spec.Shadow != nil {
		hp.Shadow = &agentapi.Shadow{Crs: coreRuleSet(spec.Shadow.CRS), Exclusions: exclusions(spec.Shadow.Exclusions)}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(hp)
	if err != nil {
		return nil, fmt.Errorf("encoding host policy: %w", err)
	}
	sum := sha256.Sum256(b)
	hp.PolicyVersion = hex.EncodeToString(sum[:])[:12]
	return hp, nil
}
