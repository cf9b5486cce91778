package v1alpha1

import (
	"strings"
	"testing"
)

func validSpec() WAFPolicySpec {
	return WAFPolicySpec{TargetRefs: []TargetRef{{Group: "networking.istio.io", Kind: "Gateway", Name: "public"}}}
}

func TestValidate(t *testing.T) {
	tests := map[string]struct {
		edit    func(*WAFPolicySpec)
		wantErr string // empty: valid
	}{
		"minimal policy":        {func(*WAFPolicySpec) {}, ""},
		"no targets":            {func(s *WAFPolicySpec) { s.TargetRefs = nil }, "spec.targetRefs: at least one"},
		"target without kind":   {func(s *WAFPolicySpec) { s.TargetRefs[0].Kind = "" }, "spec.targetRefs[0]: kind and name"},
		"wildcard host":         {func(s *WAFPolicySpec) { s.Hosts = []string{"*.example.com"} }, ""},
		"upper-case host":       {func(s *WAFPolicySpec) { s.Hosts = []string{"Shop.example.com"} }, `spec.hosts[0]: "Shop.example.com"`},
		"host with path":        {func(s *WAFPolicySpec) { s.Hosts = []string{"shop.example.com/x"} }, "spec.hosts[0]"},
		"unknown mode":          {func(s *WAFPolicySpec) { s.Mode = "Block" }, `spec.mode: "Block" is not one of Prevent, Detect, Off`},
		"unknown failure mode":  {func(s *WAFPolicySpec) { s.FailureMode = "Maybe" }, "spec.failureMode"},
		"paranoia level 5":      {func(s *WAFPolicySpec) { s.CRS.ParanoiaLevel = 5 }, "spec.crs.paranoiaLevel: 5"},
		"negative threshold":    {func(s *WAFPolicySpec) { s.CRS.InboundAnomalyThreshold = -1 }, "anomaly thresholds"},
		"rule id range":         {func(s *WAFPolicySpec) { s.Exclusions = []Exclusion{{RuleIDs: []string{"942000-942999"}}} }, ""},
		"rule id with text":     {func(s *WAFPolicySpec) { s.Exclusions = []Exclusion{{RuleIDs: []string{"942100,deny"}}} }, "spec.exclusions[0].ruleIds"},
		"exclusion without ids": {func(s *WAFPolicySpec) { s.Exclusions = []Exclusion{{Paths: []string{"/x"}}} }, "at least one rule id or tag"},
		"relative exclusion path": {func(s *WAFPolicySpec) {
			s.Exclusions = []Exclusion{{RuleIDs: []string{"1"}, Paths: []string{"search"}}}
		}, "spec.exclusions[0].paths"},
		"quote in exclusion path": {func(s *WAFPolicySpec) { s.Exclusions = []Exclusion{{RuleIDs: []string{"1"}, Paths: []string{`/a"b`}}} }, "spec.exclusions[0].paths"},
		"target injection": {func(s *WAFPolicySpec) {
			s.Exclusions = []Exclusion{{RuleIDs: []string{"1"}, Targets: []string{`ARGS:q",deny`}}}
		}, "spec.exclusions[0].targets"},
		"tag only exclusion": {func(s *WAFPolicySpec) {
			s.Exclusions = []Exclusion{{Tags: []string{"attack-sqli", "paranoia-level/2"}}}
		}, ""},
		"tag with quote":          {func(s *WAFPolicySpec) { s.Exclusions = []Exclusion{{Tags: []string{`a",deny`}}} }, "spec.exclusions[0].tags"},
		"PL2 shadow":              {func(s *WAFPolicySpec) { s.Shadow = &Shadow{CRS: CRS{ParanoiaLevel: 2}} }, ""},
		"shadow paranoia level 5": {func(s *WAFPolicySpec) { s.Shadow = &Shadow{CRS: CRS{ParanoiaLevel: 5}} }, "spec.shadow.crs.paranoiaLevel: 5"},
		"shadow exclusion injection": {func(s *WAFPolicySpec) {
			s.Shadow = &Shadow{Exclusions: []Exclusion{{RuleIDs: []string{"1"}, Targets: []string{`ARGS:q",deny`}}}}
		}, "spec.shadow.exclusions[0].targets"},
		"negative body limit":       {func(s *WAFPolicySpec) { s.RequestBody.LimitBytes = -1 }, "spec.requestBody.limitBytes"},
		"unknown over-limit":        {func(s *WAFPolicySpec) { s.RequestBody.OverLimit = "Truncate" }, "spec.requestBody.overLimit"},
		"block status out of range": {func(s *WAFPolicySpec) { s.BlockResponse.Status = 99 }, "spec.blockResponse.status: 99"},
		"unknown audit level":       {func(s *WAFPolicySpec) { s.Audit.Log = "Everything" }, "spec.audit.log"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			spec := validSpec()
			tc.edit(&spec)
			err := spec.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("valid spec rejected: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	spec := validSpec()
	spec.Mode, spec.CRS.ParanoiaLevel = "Block", 9
	err := spec.Validate()
	if err == nil || !strings.Contains(err.Error(), "spec.mode") || !strings.Contains(err.Error(), "spec.crs.paranoiaLevel") {
		t.Fatalf("error %v, want both problems", err)
	}
}

func TestWithDefaults(t *testing.T) {
	got := validSpec().WithDefaults()
	if got.Mode != ModePrevent || got.FailureMode != FailureModeClosed || got.CRS.ParanoiaLevel != 1 ||
		got.CRS.InboundAnomalyThreshold != 5 || got.CRS.OutboundAnomalyThreshold != 4 ||
		got.RequestBody.Inspect == nil || !*got.RequestBody.Inspect || got.RequestBody.LimitBytes != 131072 ||
		got.RequestBody.OverLimit != OverLimitReject || got.BlockResponse.Status != 403 ||
		got.BlockResponse.ContentType != "application/json" || got.Audit.Log != AuditDetected {
		t.Fatalf("defaults not applied: %+v", got)
	}
	off := false
	spec := validSpec()
	spec.Mode, spec.RequestBody.Inspect = ModeDetect, &off
	kept := spec.WithDefaults()
	if kept.Mode != ModeDetect || *kept.RequestBody.Inspect {
		t.Fatal("defaults overwrote values the user set")
	}
}
