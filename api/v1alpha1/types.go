package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	Group   = "waf.meshwaf.io"
	Version = "v1alpha1"
	Kind    = "WAFPolicy"
)

// WAFPolicy attaches web application firewall protection to the hosts of
// Istio or Gateway API routing objects.
type WAFPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   WAFPolicySpec   `json:"spec"`
	Status WAFPolicyStatus `json:"status,omitempty"`
}

// WAFPolicySpec is what the user asks for.
type WAFPolicySpec struct {
	// TargetRefs name the routing objects whose hosts this policy protects:
	// Istio Gateway or VirtualService, Gateway API Gateway or HTTPRoute.
	TargetRefs []TargetRef `json:"targetRefs"`
	// Hosts optionally narrows the targets' hosts. Exact hosts and "*.suffix"
	// wildcards are allowed.
	Hosts []string `json:"hosts,omitempty"`
	// Mode is Prevent (block), Detect (log only) or Off. Default Prevent.
	Mode Mode `json:"mode,omitempty"`
	// FailureMode is what Envoy does when no agent answers: Closed (deny,
	// the default) or Open (allow).
	FailureMode FailureMode `json:"failureMode,omitempty"`
	// CRS tunes the OWASP Core Rule Set.
	CRS CRS `json:"crs,omitempty"`
	// Exclusions switch rules off, optionally for some paths or targets.
	Exclusions []Exclusion `json:"exclusions,omitempty"`
	// CustomRules are SecLang directives evaluated after the CRS.
	CustomRules string `json:"customRules,omitempty"`
	// RequestBody controls request body inspection.
	RequestBody RequestBody `json:"requestBody,omitempty"`
	// ResponseBody controls response inspection (headers are always
	// inspected when this is on). Inspecting responses makes the gateway use
	// ext_proc instead of ext_authz.
	ResponseBody ResponseBody `json:"responseBody,omitempty"`
	// BlockResponse is what a blocked client receives.
	BlockResponse BlockResponse `json:"blockResponse,omitempty"`
	// Audit selects which transactions are written to the audit log.
	Audit Audit `json:"audit,omitempty"`
}

// TargetRef names one routing object. Namespace defaults to the policy's.
type TargetRef struct {
	Group     string `json:"group"`
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
}

type Mode string

const (
	ModePrevent Mode = "Prevent"
	ModeDetect  Mode = "Detect"
	ModeOff     Mode = "Off"
)

type FailureMode string

const (
	FailureModeClosed FailureMode = "Closed"
	FailureModeOpen   FailureMode = "Open"
)

// CRS tunes the OWASP Core Rule Set v4.
type CRS struct {
	// ParanoiaLevel is 1 to 4; higher catches more and false-positives more.
	// Default 1.
	ParanoiaLevel int32 `json:"paranoiaLevel,omitempty"`
	// InboundAnomalyThreshold is the request anomaly score that blocks.
	// Default 5 (one critical rule).
	InboundAnomalyThreshold int32 `json:"inboundAnomalyThreshold,omitempty"`
	// OutboundAnomalyThreshold is the response anomaly score that blocks.
	// Default 4.
	OutboundAnomalyThreshold int32 `json:"outboundAnomalyThreshold,omitempty"`
	// EarlyBlocking blocks at the end of each phase instead of only after
	// the request is fully evaluated.
	EarlyBlocking bool `json:"earlyBlocking,omitempty"`
}

// Exclusion switches rules off. RuleIDs and Tags may be combined; at least
// one of them is required.
type Exclusion struct {
	// RuleIDs are rule ids ("942100") or inclusive ranges ("942000-942999").
	RuleIDs []string `json:"ruleIds,omitempty"`
	// Tags select rules by tag ("attack-sqli", "paranoia-level/2").
	Tags []string `json:"tags,omitempty"`
	// Paths are request path prefixes; empty means every path.
	Paths []string `json:"paths,omitempty"`
	// Targets are variables the rules stop looking at ("ARGS:q",
	// "REQUEST_HEADERS:x-token"); empty switches the whole rule off.
	Targets []string `json:"targets,omitempty"`
}

type RequestBody struct {
	// Inspect turns request body inspection on. Default true.
	Inspect *bool `json:"inspect,omitempty"`
	// LimitBytes is the largest body inspected. Default 131072 (128 KiB).
	LimitBytes int64 `json:"limitBytes,omitempty"`
	// OverLimit is what happens to a larger body: Reject (413, the default)
	// or InspectPartial (inspect the first LimitBytes only).
	OverLimit OverLimit `json:"overLimit,omitempty"`
}

type ResponseBody struct {
	// Inspect turns response inspection on. Default false.
	Inspect bool `json:"inspect,omitempty"`
	// LimitBytes is the largest response body inspected; the rest passes
	// uninspected. Default 131072 (128 KiB).
	LimitBytes int64 `json:"limitBytes,omitempty"`
}

type OverLimit string

const (
	OverLimitReject         OverLimit = "Reject"
	OverLimitInspectPartial OverLimit = "InspectPartial"
)

type BlockResponse struct {
	// Status is the HTTP status of a blocked request. Default 403.
	Status int32 `json:"status,omitempty"`
	// ContentType of Body. Default application/json.
	ContentType string `json:"contentType,omitempty"`
	// Body is returned verbatim; empty means meshwaf's JSON body carrying the
	// transaction id.
	Body string `json:"body,omitempty"`
}

type Audit struct {
	// Log is Blocked, Detected (the default), All or None.
	Log AuditLog `json:"log,omitempty"`
}

type AuditLog string

const (
	AuditBlocked  AuditLog = "Blocked"
	AuditDetected AuditLog = "Detected"
	AuditAll      AuditLog = "All"
	AuditNone     AuditLog = "None"
)

// Condition types of a WAFPolicy.
const (
	// ConditionAccepted: the policy is valid and its rules compile.
	ConditionAccepted = "Accepted"
	// ConditionResolvedRefs: every targetRef names an existing object.
	ConditionResolvedRefs = "ResolvedRefs"
	// ConditionProgrammed: every connected agent applied this version.
	ConditionProgrammed = "Programmed"
	// ConditionConflicted: another, older policy holds some of its hosts.
	ConditionConflicted = "Conflicted"
)

// WAFPolicyStatus is what meshwaf observed.
type WAFPolicyStatus struct {
	// ObservedGeneration is the generation the status describes.
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
	// Hosts are the effective "<gateway namespace>/<gateway>/<host>" this
	// policy protects.
	Hosts []string `json:"hosts,omitempty"`
	// Agents says how far the current version has reached the fleet.
	Agents AgentsStatus `json:"agents,omitempty"`
}

// AgentsStatus counts the agents that applied a policy version.
type AgentsStatus struct {
	// PolicyVersion is the content digest agents report applying.
	PolicyVersion string `json:"policyVersion,omitempty"`
	// Desired is the number of connected agents.
	Desired int32 `json:"desired"`
	// Applied is how many of them applied PolicyVersion for every host.
	Applied int32 `json:"applied"`
	// Rejected lists agents that refused it, with their reason.
	Rejected []AgentRejection `json:"rejected,omitempty"`
}

// AgentRejection is one agent's refusal of a policy version.
type AgentRejection struct {
	Agent  string `json:"agent"`
	Reason string `json:"reason"`
}
