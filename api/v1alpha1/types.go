package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	Group   = "waf.meshwaf.io"
	Version = "v1alpha1"
	Kind    = "WAFPolicy"
)

// The printer columns are what `kubectl get wafpolicies` shows. Hosts prints
// the whole status list because the API server's table printer takes only
// the first result of a JSONPath, so `.status.hosts[*]` would show one host.
// (This comment is apart from the doc comment so that it stays out of the
// CRD's description, which `kubectl explain` shows users.)
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Namespaced,shortName=wafp,categories=meshwaf
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Hosts",type=string,JSONPath=`.status.hosts`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Programmed",type=string,JSONPath=`.status.conditions[?(@.type=="Programmed")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// WAFPolicy attaches web application firewall protection to the hosts of
// Istio or Gateway API routing objects, or to every request reaching the
// pods of a Service (through their inbound sidecars).
type WAFPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   WAFPolicySpec   `json:"spec"`
	Status WAFPolicyStatus `json:"status,omitempty"`
}

// The CRD's schema mirrors Validate and WithDefaults (defaults.go) so the API
// server rejects and defaults what it can on its own; compiling the custom
// rules is left to the validating webhook, which CEL cannot replace.

// WAFPolicySpec is what the user asks for.
type WAFPolicySpec struct {
	// TargetRefs name the routing objects whose hosts this policy protects
	// (Istio Gateway or VirtualService, Gateway API Gateway or HTTPRoute),
	// or Services whose pods' inbound sidecars it protects for every host.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.all(a, self.exists_one(b, a == b))",message="targetRefs must not repeat a target"
	TargetRefs []TargetRef `json:"targetRefs"`
	// Hosts optionally narrows the targets' hosts. Exact hosts and "*.suffix"
	// wildcards are allowed. It does not narrow a Service target, which is
	// protected for every host: the Host header a workload receives is the
	// caller's choice.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Hosts []string `json:"hosts,omitempty"`
	// Mode is Prevent (block), Detect (log only) or Off. Default Prevent.
	// +optional
	// +kubebuilder:default=Prevent
	Mode Mode `json:"mode,omitempty"`
	// FailureMode is what Envoy does when no agent answers: Closed (deny,
	// the default) or Open (allow).
	// +optional
	// +kubebuilder:default=Closed
	FailureMode FailureMode `json:"failureMode,omitempty"`
	// CRS tunes the OWASP Core Rule Set.
	// +optional
	// +kubebuilder:default={}
	CRS CRS `json:"crs,omitempty"`
	// Exclusions switch rules off, optionally for some paths or targets.
	// +optional
	// +kubebuilder:validation:MaxItems=128
	Exclusions []Exclusion `json:"exclusions,omitempty"`
	// CustomRules are SecLang directives evaluated after the CRS.
	// +optional
	// +kubebuilder:validation:MaxLength=262144
	CustomRules string `json:"customRules,omitempty"`
	// RequestBody controls request body inspection.
	// +optional
	// +kubebuilder:default={}
	RequestBody RequestBody `json:"requestBody,omitempty"`
	// ResponseBody controls response inspection (headers are always
	// inspected when this is on). Inspecting responses makes the gateway use
	// ext_proc instead of ext_authz.
	// +optional
	// +kubebuilder:default={}
	ResponseBody ResponseBody `json:"responseBody,omitempty"`
	// BlockResponse is what a blocked client receives.
	// +optional
	// +kubebuilder:default={}
	BlockResponse BlockResponse `json:"blockResponse,omitempty"`
	// Audit selects which transactions are written to the audit log.
	// +optional
	// +kubebuilder:default={}
	Audit Audit `json:"audit,omitempty"`
	// Shadow is a second configuration evaluated beside this one on the
	// same requests, to see what a change would do on live traffic before
	// making it: its findings are audited (lines with "shadow": true) and
	// counted (meshwaf_agent_shadow_requests_total) apart, and never change
	// a verdict.
	// +optional
	Shadow *Shadow `json:"shadow,omitempty"`
}

// Shadow is what a shadow configuration changes of its policy.
type Shadow struct {
	// CRS is the shadow's rule set settings (for example a higher paranoia
	// level), with the same defaults as the policy's.
	// +optional
	// +kubebuilder:default={}
	CRS CRS `json:"crs,omitempty"`
	// Exclusions are added to the policy's in the shadow.
	// +optional
	// +kubebuilder:validation:MaxItems=128
	Exclusions []Exclusion `json:"exclusions,omitempty"`
}

// The kind rule tests for the core group with size(self.group) == 0: gofmt
// rewrites two single quotes in a doc comment into a typographic quote,
// which would break the rule. (Apart from the doc comment, so that it stays
// out of the CRD's description.)

// TargetRef names one routing object or Service. Namespace defaults to the
// policy's. Only the kinds meshwaf can resolve hosts or proxies from are
// accepted, so a typo is an admission error rather than a silent
// ResolvedRefs=False.
// +kubebuilder:validation:XValidation:rule="(self.group == 'networking.istio.io' && self.kind in ['Gateway', 'VirtualService']) || (self.group == 'gateway.networking.k8s.io' && self.kind in ['Gateway', 'HTTPRoute']) || (size(self.group) == 0 && self.kind == 'Service')",message="target must be a networking.istio.io Gateway or VirtualService, a gateway.networking.k8s.io Gateway or HTTPRoute, or a Service of the core (empty) group"
type TargetRef struct {
	// Group is networking.istio.io, gateway.networking.k8s.io, or "" (the
	// core group) for a Service.
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group"`
	// Kind is Gateway or VirtualService (Istio), Gateway or HTTPRoute
	// (Gateway API), or Service (core): the policy then protects every
	// request to the Service's pods, at their inbound sidecars.
	// +kubebuilder:validation:MaxLength=63
	Kind string `json:"kind"`
	// Name of the target object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace of the target object; empty means the policy's own.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace,omitempty"`
}

// Mode says whether matching requests are blocked.
// +kubebuilder:validation:Enum=Prevent;Detect;Off
type Mode string

const (
	ModePrevent Mode = "Prevent"
	ModeDetect  Mode = "Detect"
	ModeOff     Mode = "Off"
)

// FailureMode says what Envoy does when no agent answers.
// +kubebuilder:validation:Enum=Open;Closed
type FailureMode string

const (
	FailureModeClosed FailureMode = "Closed"
	FailureModeOpen   FailureMode = "Open"
)

// CRS tunes the OWASP Core Rule Set v4.
type CRS struct {
	// ParanoiaLevel is 1 to 4; higher catches more and false-positives more.
	// Default 1.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4
	ParanoiaLevel int32 `json:"paranoiaLevel,omitempty"`
	// InboundAnomalyThreshold is the request anomaly score that blocks.
	// Default 5 (one critical rule).
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	InboundAnomalyThreshold int32 `json:"inboundAnomalyThreshold,omitempty"`
	// OutboundAnomalyThreshold is the response anomaly score that blocks.
	// Default 4.
	// +optional
	// +kubebuilder:default=4
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	OutboundAnomalyThreshold int32 `json:"outboundAnomalyThreshold,omitempty"`
	// EarlyBlocking blocks at the end of each phase instead of only after
	// the request is fully evaluated.
	// +optional
	EarlyBlocking bool `json:"earlyBlocking,omitempty"`
}

// Exclusion switches rules off. RuleIDs and Tags may be combined; at least
// one of them is required.
// +kubebuilder:validation:XValidation:rule="has(self.ruleIds) || has(self.tags)",message="an exclusion needs at least one rule id or tag"
type Exclusion struct {
	// RuleIDs are rule ids ("942100") or inclusive ranges ("942000-942999").
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=32
	// +kubebuilder:validation:items:Pattern=`^[0-9]+(-[0-9]+)?$`
	RuleIDs []string `json:"ruleIds,omitempty"`
	// Tags select rules by tag ("attack-sqli", "paranoia-level/2").
	// +optional
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9][A-Za-z0-9_./-]*$`
	Tags []string `json:"tags,omitempty"`
	// Paths are request path prefixes; empty means every path.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=1024
	// +kubebuilder:validation:items:Pattern=`^/[^" \t\n]*$`
	Paths []string `json:"paths,omitempty"`
	// Targets are variables the rules stop looking at ("ARGS:q",
	// "REQUEST_HEADERS:x-token"); empty switches the whole rule off.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=256
	// +kubebuilder:validation:items:Pattern=`^[A-Z_]+(:[^\s,;"']+)?$`
	Targets []string `json:"targets,omitempty"`
}

// RequestBody controls request body inspection.
type RequestBody struct {
	// Inspect turns request body inspection on. Default true.
	// +optional
	// +kubebuilder:default=true
	Inspect *bool `json:"inspect,omitempty"`
	// LimitBytes is the largest body inspected. Default 131072 (128 KiB).
	// Envoy buffers up to this much per request, hence the 100 MiB cap.
	// +optional
	// +kubebuilder:default=131072
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=104857600
	LimitBytes int64 `json:"limitBytes,omitempty"`
	// OverLimit is what happens to a larger body: Reject (413, the default)
	// or InspectPartial (inspect the first LimitBytes only).
	// +optional
	// +kubebuilder:default=Reject
	OverLimit OverLimit `json:"overLimit,omitempty"`
}

// ResponseBody controls response inspection.
type ResponseBody struct {
	// Inspect turns response inspection on. Default false.
	// +optional
	Inspect bool `json:"inspect,omitempty"`
	// LimitBytes is the largest response body inspected; the rest passes
	// uninspected. Default 131072 (128 KiB).
	// +optional
	// +kubebuilder:default=131072
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=104857600
	LimitBytes int64 `json:"limitBytes,omitempty"`
}

// OverLimit says what happens to a request body larger than the limit.
// +kubebuilder:validation:Enum=Reject;InspectPartial
type OverLimit string

const (
	OverLimitReject         OverLimit = "Reject"
	OverLimitInspectPartial OverLimit = "InspectPartial"
)

// BlockResponse is what a blocked client receives.
type BlockResponse struct {
	// Status is the HTTP status of a blocked request. Default 403.
	// +optional
	// +kubebuilder:default=403
	// +kubebuilder:validation:Minimum=200
	// +kubebuilder:validation:Maximum=599
	Status int32 `json:"status,omitempty"`
	// ContentType of Body. Default application/json.
	// +optional
	// +kubebuilder:default="application/json"
	// +kubebuilder:validation:MaxLength=256
	ContentType string `json:"contentType,omitempty"`
	// Body is returned verbatim; empty means meshwaf's JSON body carrying the
	// transaction id.
	// +optional
	// +kubebuilder:validation:MaxLength=65536
	Body string `json:"body,omitempty"`
}

// Audit selects which transactions are written to the audit log.
type Audit struct {
	// Log is Blocked, Detected (the default), All or None.
	// +optional
	// +kubebuilder:default=Detected
	Log AuditLog `json:"log,omitempty"`
}

// AuditLog is an audit level.
// +kubebuilder:validation:Enum=Blocked;Detected;All;None
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
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions are Accepted, ResolvedRefs, Programmed and Conflicted.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Hosts are the effective "<gateway namespace>/<gateway>/<host>" this
	// policy protects; a Service target shows as
	// "<namespace>/service:<name>/*" (every host of its pods).
	// +optional
	// +listType=atomic
	Hosts []string `json:"hosts,omitempty"`
	// Agents says how far the current version has reached the fleet.
	// +optional
	Agents AgentsStatus `json:"agents,omitempty"`
}

// AgentsStatus counts the agents that applied a policy version.
type AgentsStatus struct {
	// PolicyVersion is the content digest agents report applying.
	// +optional
	PolicyVersion string `json:"policyVersion,omitempty"`
	// Desired is the number of agents connected to the control plane (all
	// replicas together).
	Desired int32 `json:"desired"`
	// Applied is how many of them applied PolicyVersion for every host.
	Applied int32 `json:"applied"`
	// Rejected lists agents that refused it, with their reason.
	// +optional
	// +listType=atomic
	Rejected []AgentRejection `json:"rejected,omitempty"`
}

// AgentRejection is one agent's refusal of a policy version.
type AgentRejection struct {
	// Agent is the agent's node id.
	Agent string `json:"agent"`
	// Reason is the agent's error, naming the host and the Coraza error.
	Reason string `json:"reason"`
}
