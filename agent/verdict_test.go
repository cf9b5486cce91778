package agent

import (
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/meshwaf/meshwaf/agentapi"
)

func TestCheckVerdicts(t *testing.T) {
	host := "shop.example.com"
	custom := `SecRule REQUEST_HEADERS:User-Agent "@contains badbot" "id:10001,phase:1,deny,status:403,log,msg:'bad bot'"`
	tests := map[string]struct {
		policy     *agentapi.HostPolicy
		gateways   []string
		req        *authv3.CheckRequest
		wantStatus int
		wantAction string // audit action; "" means no audit line
		wantRules  []int  // rule ids that must appear in the audit line
		wantReason string
	}{
		"sqli in query is blocked": {
			policy:     testPolicy(testGateway, host),
			req:        httpCheck("GET", host, sqliPath, nil, ""),
			wantStatus: 403, wantAction: actionBlocked, wantRules: []int{942100, 949110},
		},
		"xss in form body is blocked": {
			policy:     testPolicy(testGateway, host),
			req:        httpCheck("POST", host, "/comment", formType, xssForm),
			wantStatus: 403, wantAction: actionBlocked, wantRules: []int{941100},
		},
		"sqli in a json body is blocked": {
			policy: testPolicy(testGateway, host),
			req: httpCheck("POST", host, "/api/search", map[string]string{"content-type": "application/json"},
				`{"q":"1' OR 1=1--"}`),
			wantStatus: 403, wantAction: actionBlocked, wantRules: []int{942100},
		},
		"benign get is allowed without audit": {
			policy:     testPolicy(testGateway, host),
			req:        httpCheck("GET", host, "/products?page=2", nil, ""),
			wantStatus: 200,
		},
		"benign form post is allowed": {
			policy:     testPolicy(testGateway, host),
			req:        httpCheck("POST", host, "/comment", formType, "comment=hello+world"),
			wantStatus: 200,
		},
		"detect mode allows and audits": {
			policy:     testPolicy(testGateway, host, withMode(agentapi.Mode_MODE_DETECT)),
			req:        httpCheck("GET", host, sqliPath, nil, ""),
			wantStatus: 200, wantAction: actionDetected, wantRules: []int{942100},
		},
		"mode off allows without inspection": {
			policy:     testPolicy(testGateway, host, withMode(agentapi.Mode_MODE_OFF)),
			req:        httpCheck("GET", host, sqliPath, nil, ""),
			wantStatus: 200,
		},
		"no policy for the gateway allows": {
			policy:     testPolicy(testGateway, host),
			gateways:   []string{"other/gateway"},
			req:        httpCheck("GET", host, sqliPath, nil, ""),
			wantStatus: 200,
		},
		"host with port and upper case finds its policy": {
			policy:     testPolicy(testGateway, host),
			req:        httpCheck("GET", "SHOP.example.com:8443", sqliPath, nil, ""),
			wantStatus: 403, wantAction: actionBlocked, wantRules: []int{942100},
		},
		"scoped exclusion lets the excluded target through": {
			policy: testPolicy(testGateway, host, func(p *agentapi.HostPolicy) {
				p.Exclusions = []*agentapi.Exclusion{{RuleIds: []string{"942100"}, Paths: []string{"/search"}, Targets: []string{"ARGS:q"}}}
			}),
			req:        httpCheck("GET", host, "/search?q="+strings.TrimPrefix(sqliPath, "/?id="), nil, ""),
			wantStatus: 200,
		},
		"scoped exclusion does not cover other paths": {
			policy: testPolicy(testGateway, host, func(p *agentapi.HostPolicy) {
				p.Exclusions = []*agentapi.Exclusion{{RuleIds: []string{"942100"}, Paths: []string{"/search"}, Targets: []string{"ARGS:q"}}}
			}),
			req:        httpCheck("GET", host, "/find?q="+strings.TrimPrefix(sqliPath, "/?id="), nil, ""),
			wantStatus: 403, wantAction: actionBlocked, wantRules: []int{942100},
		},
		"body over limit is rejected with 413": {
			policy:     testPolicy(testGateway, host, withBody(true, 16, agentapi.OverLimit_OVER_LIMIT_REJECT)),
			req:        httpCheck("POST", host, "/comment", formType, "comment="+strings.Repeat("a", 64)),
			wantStatus: 413, wantAction: actionBlocked, wantReason: reasonBodyOverLimit,
		},
		"body truncated by envoy is rejected with 413": {
			policy: testPolicy(testGateway, host),
			req: httpCheck("POST", host, "/comment", map[string]string{
				"content-type": "application/x-www-form-urlencoded", partialBodyHeader: "true",
			}, "comment=hello"),
			wantStatus: 413, wantAction: actionBlocked, wantReason: reasonBodyOverLimit,
		},
		"over limit in detect mode is only reported": {
			policy: testPolicy(testGateway, host, withMode(agentapi.Mode_MODE_DETECT),
				withBody(true, 16, agentapi.OverLimit_OVER_LIMIT_REJECT)),
			req:        httpCheck("POST", host, "/comment", formType, "comment="+strings.Repeat("a", 64)),
			wantStatus: 200, wantAction: actionDetected, wantReason: reasonBodyOverLimit,
		},
		"inspect partial catches an attack within the limit": {
			policy:     testPolicy(testGateway, host, withBody(true, 64, agentapi.OverLimit_OVER_LIMIT_INSPECT_PARTIAL)),
			req:        httpCheck("POST", host, "/comment", formType, xssForm+"&pad="+strings.Repeat("a", 200)),
			wantStatus: 403, wantAction: actionBlocked, wantRules: []int{941100},
		},
		"inspect partial ignores bytes past the limit": {
			policy:     testPolicy(testGateway, host, withBody(true, 64, agentapi.OverLimit_OVER_LIMIT_INSPECT_PARTIAL)),
			req:        httpCheck("POST", host, "/comment", formType, "pad="+strings.Repeat("a", 200)+"&"+xssForm),
			wantStatus: 200,
		},
		"body inspection off ignores the body": {
			policy:     testPolicy(testGateway, host, withBody(false, 0, 0)),
			req:        httpCheck("POST", host, "/comment", formType, xssForm),
			wantStatus: 200,
		},
		"custom rule blocks a bad bot": {
			policy:     testPolicy(testGateway, host, func(p *agentapi.HostPolicy) { p.CustomRules = custom }),
			req:        httpCheck("GET", host, "/", map[string]string{"user-agent": "badbot/1.0"}, ""),
			wantStatus: 403, wantAction: actionBlocked, wantRules: []int{10001},
		},
		"custom block response status is used": {
			policy: testPolicy(testGateway, host, func(p *agentapi.HostPolicy) {
				p.BlockResponse = &agentapi.BlockResponse{Status: 406, ContentType: "text/plain", Body: "nope"}
			}),
			req:        httpCheck("GET", host, sqliPath, nil, ""),
			wantStatus: 406, wantAction: actionBlocked, wantRules: []int{942100},
		},
		"audit level blocked skips detections": {
			policy: testPolicy(testGateway, host, withMode(agentapi.Mode_MODE_DETECT),
				withAudit(agentapi.AuditLevel_AUDIT_LEVEL_BLOCKED)),
			req:        httpCheck("GET", host, sqliPath, nil, ""),
			wantStatus: 200,
		},
		"audit level none skips blocks": {
			policy:     testPolicy(testGateway, host, withAudit(agentapi.AuditLevel_AUDIT_LEVEL_NONE)),
			req:        httpCheck("GET", host, sqliPath, nil, ""),
			wantStatus: 403,
		},
		"audit level all logs allowed requests": {
			policy:     testPolicy(testGateway, host, withAudit(agentapi.AuditLevel_AUDIT_LEVEL_ALL)),
			req:        httpCheck("GET", host, "/products", nil, ""),
			wantStatus: 200, wantAction: actionAllowed,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			srv, audit := newTestAuthz(t, tt.policy)
			gws := tt.gateways
			if gws == nil {
				gws = []string{testGateway}
			}
			resp, err := srv.Check(gatewayCtx(gws...), tt.req)
			if err != nil {
				t.Fatalf("Check returned a gRPC error: %v", err)
			}
			recs := audit.records(t)
			if got := verdictOf(t, resp); got != tt.wantStatus {
				t.Fatalf("status = %d, want %d; audit: %+v", got, tt.wantStatus, recs)
			}
			rec, audited := oneAuditLine(t, recs, tt.wantAction, tt.wantReason)
			if !audited {
				return
			}
			for _, id := range tt.wantRules {
				if !slices.Contains(ruleIDs(rec.Rules), id) {
					t.Errorf("audit rules %v lack %d", ruleIDs(rec.Rules), id)
				}
			}
			if d := resp.GetDeniedResponse(); d != nil && rec.TransactionID == "" {
				t.Error("denied without a transaction id in the audit line")
			}
		})
	}
}
