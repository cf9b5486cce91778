package v1alpha1

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/meshwaf/meshwaf/agentapi"
)

// Defaults applied to fields the user left empty: the agent protocol's, so
// the API and the agent can never disagree.
const (
	DefaultParanoiaLevel            = agentapi.DefaultParanoiaLevel
	DefaultInboundAnomalyThreshold  = agentapi.DefaultInboundAnomalyThreshold
	DefaultOutboundAnomalyThreshold = agentapi.DefaultOutboundAnomalyThreshold
	DefaultRequestBodyLimitBytes    = agentapi.DefaultRequestBodyLimitBytes
	DefaultResponseBodyLimitBytes   = agentapi.DefaultResponseBodyLimitBytes
	DefaultBlockStatus              = agentapi.DefaultBlockStatus
	DefaultBlockContentType         = agentapi.DefaultBlockContentType
)

// WithDefaults returns a copy of s with every empty field set to its default.
func (s WAFPolicySpec) WithDefaults() WAFPolicySpec {
	if s.Mode == "" {
		s.Mode = ModePrevent
	}
	if s.FailureMode == "" {
		s.FailureMode = FailureModeClosed
	}
	s.CRS = s.CRS.withDefaults()
	if s.Shadow != nil {
		shadow := *s.Shadow
		shadow.CRS = shadow.CRS.withDefaults()
		s.Shadow = &shadow
	}
	if s.RequestBody.Inspect == nil {
		inspect := true
		s.RequestBody.Inspect = &inspect
	}
	if s.RequestBody.LimitBytes == 0 {
		s.RequestBody.LimitBytes = DefaultRequestBodyLimitBytes
	}
	if s.RequestBody.OverLimit == "" {
		s.RequestBody.OverLimit = OverLimitReject
	}
	if s.ResponseBody.LimitBytes == 0 {
		s.ResponseBody.LimitBytes = DefaultResponseBodyLimitBytes
	}
	if s.BlockResponse.Status == 0 {
		s.BlockResponse.Status = DefaultBlockStatus
	}
	if s.BlockResponse.ContentType == "" {
		s.BlockResponse.ContentType = DefaultBlockContentType
	}
	if s.Audit.Log == "" {
		s.Audit.Log = AuditDetected
	}
	return s
}

func (c CRS) withDefaults() CRS {
	if c.ParanoiaLevel == 0 {
		c.ParanoiaLevel = DefaultParanoiaLevel
	}
	if c.InboundAnomalyThreshold == 0 {
		c.InboundAnomalyThreshold = DefaultInboundAnomalyThreshold
	}
	if c.OutboundAnomalyThreshold == 0 {
		c.OutboundAnomalyThreshold = DefaultOutboundAnomalyThreshold
	}
	return c
}

var (
	ruleIDPattern = regexp.MustCompile(`^[0-9]+(-[0-9]+)?$`)
	hostPattern   = regexp.MustCompile(`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	tagPattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_./-]*$`)
	targetPattern = regexp.MustCompile(`^[A-Z_]+(:[^\s,;"']+)?$`)
)

// Validate checks what can be checked without compiling rules. It returns
// every problem found, joined, each naming the offending field.
func (s WAFPolicySpec) Validate() error {
	var errs []error
	if len(s.TargetRefs) == 0 {
		errs = append(errs, errors.New("spec.targetRefs: at least one target is required"))
	}
	for i, ref := range s.TargetRefs {
		if ref.Name == "" || ref.Kind == "" {
			errs = append(errs, fmt.Errorf("spec.targetRefs[%d]: kind and name are required", i))
		}
	}
	for i, h := range s.Hosts {
		if !hostPattern.MatchString(h) {
			errs = append(errs, fmt.Errorf("spec.hosts[%d]: %q is not a lower-case host or *.wildcard", i, h))
		}
	}
	switch s.Mode {
	case "", ModePrevent, ModeDetect, ModeOff:
	default:
		errs = append(errs, fmt.Errorf("spec.mode: %q is not one of Prevent, Detect, Off", s.Mode))
	}
	switch s.FailureMode {
	case "", FailureModeClosed, FailureModeOpen:
	default:
		errs = append(errs, fmt.Errorf("spec.failureMode: %q is not one of Open, Closed", s.FailureMode))
	}
	errs = append(errs, validateCRS("spec.crs", s.CRS)...)
	errs = append(errs, validateExclusions("spec.exclusions", s.Exclusions)...)
	if s.Shadow != nil {
		errs = append(errs, validateCRS("spec.shadow.crs", s.Shadow.CRS)...)
		errs = append(errs, validateExclusions("spec.shadow.exclusions", s.Shadow.Exclusions)...)
	}
	if s.ResponseBody.LimitBytes < 0 {
		errs = append(errs, errors.New("spec.responseBody.limitBytes: must not be negative"))
	}
	if s.RequestBody.LimitBytes < 0 {
		errs = append(errs, errors.New("spec.requestBody.limitBytes: must not be negative"))
	}
	switch s.RequestBody.OverLimit {
	case "", OverLimitReject, OverLimitInspectPartial:
	default:
		errs = append(errs, fmt.Errorf("spec.requestBody.overLimit: %q is not one of Reject, InspectPartial", s.RequestBody.OverLimit))
	}
	if st := s.BlockResponse.Status; st != 0 && (st < 200 || st > 599) {
		errs = append(errs, fmt.Errorf("spec.blockResponse.status: %d is not an HTTP status", st))
	}
	switch s.Audit.Log {
	case "", AuditBlocked, AuditDetected, AuditAll, AuditNone:
	default:
		errs = append(errs, fmt.Errorf("spec.audit.log: %q is not one of Blocked, Detected, All, None", s.Audit.Log))
	}
	return errors.Join(errs...)
}

func validateCRS(field string, c CRS) []error {
	var errs []error
	if p := c.ParanoiaLevel; p < 0 || p > 4 {
		errs = append(errs, fmt.Errorf("%s.paranoiaLevel: %d is not between 1 and 4", field, p))
	}
	if c.InboundAnomalyThreshold < 0 || c.OutboundAnomalyThreshold < 0 {
		errs = append(errs, fmt.Errorf("%s: anomaly thresholds must be positive", field))
	}
	return errs
}

func validateExclusions(field string, exclusions []Exclusion) []error {
	var errs []error
	for i, ex := range exclusions {
		if len(ex.RuleIDs) == 0 && len(ex.Tags) == 0 {
			errs = append(errs, fmt.Errorf("%s[%d]: at least one rule id or tag is required", field, i))
		}
		for _, tag := range ex.Tags {
			if !tagPattern.MatchString(tag) {
				errs = append(errs, fmt.Errorf("%s[%d].tags: %q is not a rule tag", field, i, tag))
			}
		}
		for _, id := range ex.RuleIDs {
			if !ruleIDPattern.MatchString(id) {
				errs = append(errs, fmt.Errorf("%s[%d].ruleIds: %q is not a rule id or id range", field, i, id))
			}
		}
		for _, p := range ex.Paths {
			if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\" \t\n") {
				errs = append(errs, fmt.Errorf("%s[%d].paths: %q is not a path prefix starting with /", field, i, p))
			}
		}
		for _, t := range ex.Targets {
			if !targetPattern.MatchString(t) {
				errs = append(errs, fmt.Errorf("%s[%d].targets: %q is not a target like ARGS:name", field, i, t))
			}
		}
	}
	return errs
}
