package agent

import (
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/meshwaf/meshwaf/agentapi"
)

// Audit actions.
const (
	actionBlocked  = "blocked"
	actionDetected = "detected"
	actionAllowed  = "allowed" // only written at audit level All
	// actionOverloaded: not inspected in time, answered by the failure
	// mode (503 when Closed, passed when Open); see deadline.go.
	actionOverloaded = "overloaded"
)

// AuditRecord is one line of the audit log (docs/architecture.md).
type AuditRecord struct {
	Time          time.Time `json:"time"`
	TransactionID string    `json:"transaction_id"`
	RequestID     string    `json:"request_id,omitempty"`
	Gateway       string    `json:"gateway"`
	Host          string    `json:"host"`
	Method        string    `json:"method"`
	Path          string    `json:"path"`
	Client        string    `json:"client"`
	// SourcePrincipal is the calling workload's identity as Envoy
	// authenticated it: the URI SAN of the peer certificate
	// (spiffe://<trust domain>/ns/<ns>/sa/<account> for an Istio sidecar
	// over mTLS). On a workload's inbound side it names the caller, whose
	// address is only a pod IP. Empty without a client certificate, and
	// always for ext_proc, which does not carry it.
	SourcePrincipal string `json:"source_principal,omitempty"`
	Policy          string `json:"policy"`
	PolicyVersion   string `json:"policy_version"`
	Mode            string `json:"mode"`
	// Shadow marks the findings of the policy's shadow configuration
	// (shadow.go): Action is then what the shadow would have done.
	Shadow bool   `json:"shadow,omitempty"`
	Action string `json:"action"`
	Status int    `json:"status,omitempty"`
	Reason string `json:"reason,omitempty"`
	// ResponseStatus is the upstream's status, when the response was
	// inspected (ext_proc).
	ResponseStatus int `json:"response_status,omitempty"`
	AnomalyScore   int `json:"anomaly_score"`
	// OutboundAnomalyScore is the CRS response score, when non-zero.
	OutboundAnomalyScore int         `json:"outbound_anomaly_score,omitempty"`
	Rules                []AuditRule `json:"rules"`
}

// AuditRule is a matched rule that carries a message.
type AuditRule struct {
	ID       int    `json:"id"`
	Msg      string `json:"msg"`
	Severity string `json:"severity,omitempty"`
	// Targets are the variables it matched ("ARGS_GET:id"), as a WAFPolicy
	// exclusion names them.
	Targets []string `json:"targets,omitempty"`
}

// AuditLog writes one JSON object per line. It is safe for concurrent use;
// each record reaches the writer in a single Write call so lines never
// interleave.
type AuditLog struct {
	mu sync.Mutex
	w  io.Writer
}

// NewAuditLog writes to w; nil discards.
func NewAuditLog(w io.Writer) *AuditLog {
	if w == nil {
		w = io.Discard
	}
	return &AuditLog{w: w}
}

// Write appends rec as one line.
func (a *AuditLog) Write(rec *AuditRecord) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err = a.w.Write(line)
	return err
}

// shouldAudit applies the policy's audit level to an action.
func shouldAudit(level agentapi.AuditLevel, action string) bool {
	switch level {
	case agentapi.AuditLevel_AUDIT_LEVEL_NONE:
		return false
	case agentapi.AuditLevel_AUDIT_LEVEL_ALL:
		return true
	case agentapi.AuditLevel_AUDIT_LEVEL_BLOCKED:
		// A request the WAF could not inspect is always worth a line.
		return action == actionBlocked || action == actionOverloaded
	default: // Detected, and unspecified which means Detected
		return action != actionAllowed
	}
}

// modeName is the WAFPolicy spelling of a mode, as the audit log and
// /debug/policies show it.
func modeName(m agentapi.Mode) string {
	switch m {
	case agentapi.Mode_MODE_DETECT:
		return "Detect"
	case agentapi.Mode_MODE_OFF:
		return "Off"
	default:
		return "Prevent"
	}
}
