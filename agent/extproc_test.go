package agent

import (
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/meshwaf/meshwaf/agentapi"
)

const (
	leakRule   = `SecRule RESPONSE_BODY "@contains secret-leak" "id:10100,phase:4,deny,log,msg:'secret in response'"`
	statusRule = `SecRule RESPONSE_STATUS "@streq 500" "id:10101,phase:3,deny,log,msg:'upstream error'"`
	sqlError   = "<html><body>You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near ''' at line 1</body></html>"
)

func withResponses(limit int64, rules ...string) func(*agentapi.HostPolicy) {
	return func(p *agentapi.HostPolicy) {
		p.ResponseBody = &agentapi.ResponseBody{Inspect: true, LimitBytes: limit}
		p.CustomRules = strings.Join(rules, "\n")
	}
}

// chunked drops the content-length a request message declares, as for a
// body sent in chunks.
func chunked(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingRequest {
	hm := req.GetRequestHeaders().GetHeaders()
	hm.Headers = slices.DeleteFunc(hm.Headers, func(h *corev3.HeaderValue) bool { return h.GetKey() == "content-length" })
	return req
}

func TestProcVerdicts(t *testing.T) {
	host := "shop.example.com"
	buffered, partial := filterv3.ProcessingMode_BUFFERED, filterv3.ProcessingMode_BUFFERED_PARTIAL
	get := func(path string) *extprocv3.ProcessingRequest {
		return procRequest("GET", host, path, nil, "", buffered)
	}
	okJSON := procResponseHeaders(200, "application/json", false)
	tests := map[string]struct {
		policy     *agentapi.HostPolicy
		msgs       []*extprocv3.ProcessingRequest
		deniedAt   int // index of the message answered with the block response; -1 for none
		wantStatus int
		wantAction string // audit action; "" means no audit line
		wantRules  []int
		wantFamily [2]int // a rule id range one of the audit's rules must fall in
		noRules    []int  // rule ids that must not appear
		wantReason string
	}{
		"sqli in the query is blocked at request headers": {
			policy: testPolicy(testGateway, host), msgs: []*extprocv3.ProcessingRequest{get(sqliPath)},
			deniedAt: 0, wantStatus: 403, wantAction: actionBlocked, wantRules: []int{942100},
		},
		"xss in a form body is blocked at the request body": {
			policy: testPolicy(testGateway, host),
			msgs: []*extprocv3.ProcessingRequest{
				procRequest("POST", host, "/comment", formType, xssForm, buffered), procRequestBody(xssForm, true)},
			deniedAt: 1, wantStatus: 403, wantAction: actionBlocked, wantRules: []int{941100},
		},
		"benign exchange passes every part": {
			policy: testPolicy(testGateway, host, withResponses(0)),
			msgs: []*extprocv3.ProcessingRequest{get("/products?page=2"), okJSON,
				procResponseBody(`{"products":[1,2,3]}`, true)},
			deniedAt: -1,
		},
		"custom response rule blocks at the response body": {
			policy:   testPolicy(testGateway, host, withResponses(0, leakRule)),
			msgs:     []*extprocv3.ProcessingRequest{get("/"), okJSON, procResponseBody(`{"token":"secret-leak"}`, true)},
			deniedAt: 2, wantStatus: 403, wantAction: actionBlocked, wantRules: []int{10100},
		},
		"crs sql error leak blocks the response": {
			policy: testPolicy(testGateway, host, withResponses(0)),
			msgs: []*extprocv3.ProcessingRequest{get("/"), procResponseHeaders(200, "text/html", false),
				procResponseBody(sqlError, true)},
			deniedAt: 2, wantStatus: 403, wantAction: actionBlocked, wantFamily: [2]int{951000, 951999},
		},
		"phase 3 rule blocks at response headers": {
			policy:   testPolicy(testGateway, host, withResponses(0, statusRule)),
			msgs:     []*extprocv3.ProcessingRequest{get("/"), procResponseHeaders(500, "text/plain", false)},
			deniedAt: 1, wantStatus: 403, wantAction: actionBlocked, wantRules: []int{10101},
		},
		"response detection in detect mode is audited only": {
			policy:   testPolicy(testGateway, host, withMode(agentapi.Mode_MODE_DETECT), withResponses(0, leakRule)),
			msgs:     []*extprocv3.ProcessingRequest{get("/"), okJSON, procResponseBody(`{"token":"secret-leak"}`, true)},
			deniedAt: -1, wantAction: actionDetected, wantRules: []int{10100},
		},
		"responses are not inspected unless the policy asks": {
			policy:   testPolicy(testGateway, host, func(p *agentapi.HostPolicy) { p.CustomRules = leakRule }),
			msgs:     []*extprocv3.ProcessingRequest{get("/"), okJSON, procResponseBody(`{"token":"secret-leak"}`, true)},
			deniedAt: -1,
		},
		"response past its limit passes uninspected": {
			policy: testPolicy(testGateway, host, withResponses(64, leakRule)),
			msgs: []*extprocv3.ProcessingRequest{get("/"), okJSON,
				procResponseBody(`{"pad":"`+strings.Repeat("a", 100)+`","token":"secret-leak"}`, true)},
			deniedAt: -1,
		},
		"declared body over the limit is refused at request headers": {
			policy: testPolicy(testGateway, host, withBody(true, 16, agentapi.OverLimit_OVER_LIMIT_REJECT)),
			msgs: []*extprocv3.ProcessingRequest{
				procRequest("POST", host, "/comment", formType, "comment="+strings.Repeat("a", 64), buffered)},
			deniedAt: 0, wantStatus: 413, wantAction: actionBlocked, wantReason: reasonBodyOverLimit,
		},
		"body envoy cut short is over the limit": {
			policy: testPolicy(testGateway, host),
			msgs: []*extprocv3.ProcessingRequest{
				chunked(procRequest("POST", host, "/comment", formType, "comment=a", partial)), procRequestBody("comment=a", false)},
			deniedAt: 1, wantStatus: 413, wantAction: actionBlocked, wantReason: reasonBodyOverLimit,
		},
		"inspect partial inspects what envoy buffered": {
			policy: testPolicy(testGateway, host, withBody(true, 1<<20, agentapi.OverLimit_OVER_LIMIT_INSPECT_PARTIAL)),
			msgs: []*extprocv3.ProcessingRequest{
				chunked(procRequest("POST", host, "/comment", formType, xssForm, partial)), procRequestBody(xssForm, false)},
			deniedAt: 1, wantStatus: 403, wantAction: actionBlocked, wantRules: []int{941100},
		},
		"response of a type coraza does not inspect ends the exchange": {
			policy:   testPolicy(testGateway, host, withResponses(0, leakRule)),
			msgs:     []*extprocv3.ProcessingRequest{get("/logo.png"), procResponseHeaders(200, "image/png", false)},
			deniedAt: -1,
		},
		"early blocking answers at request headers, before the body": {
			policy: testPolicy(testGateway, host, func(p *agentapi.HostPolicy) {
				p.Crs = &agentapi.CoreRuleSet{EarlyBlocking: true}
			}),
			msgs: []*extprocv3.ProcessingRequest{
				procRequest("POST", host, "/comment", map[string]string{"content-type": formType["content-type"], "user-agent": "nikto"}, xssForm, buffered),
				procRequestBody(xssForm, true)},
			deniedAt: 0, wantStatus: 403, wantAction: actionBlocked, wantRules: []int{913100}, noRules: []int{941100},
		},
		"without early blocking the body is inspected too": {
			policy: testPolicy(testGateway, host),
			msgs: []*extprocv3.ProcessingRequest{
				procRequest("POST", host, "/comment", map[string]string{"content-type": formType["content-type"], "user-agent": "nikto"}, xssForm, buffered),
				procRequestBody(xssForm, true)},
			deniedAt: 1, wantStatus: 403, wantAction: actionBlocked, wantRules: []int{913100, 941100},
		},
		"custom block response is sent": {
			policy: testPolicy(testGateway, host, func(p *agentapi.HostPolicy) {
				p.BlockResponse = &agentapi.BlockResponse{Status: 406, ContentType: "text/plain", Body: "nope"}
			}),
			msgs:     []*extprocv3.ProcessingRequest{get(sqliPath)},
			deniedAt: 0, wantStatus: 406, wantAction: actionBlocked, wantRules: []int{942100},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			in, audit, _ := newTestInspector(t, tt.policy)
			answers, denied := exchangeOf(t, in, []string{testGateway}, tt.msgs...)
			recs := audit.records(t)
			switch {
			case tt.deniedAt < 0 && denied != nil:
				t.Fatalf("denied with %v; audit %+v", denied, recs)
			case tt.deniedAt >= 0 && (denied == nil || len(answers) != tt.deniedAt+1):
				t.Fatalf("want a denial answering message %d, got answers %v; audit %+v", tt.deniedAt, answers, recs)
			case denied != nil && int(denied.GetStatus().GetCode()) != tt.wantStatus:
				t.Errorf("status = %d, want %d", denied.GetStatus().GetCode(), tt.wantStatus)
			}
			rec, audited := oneAuditLine(t, recs, tt.wantAction, tt.wantReason)
			if !audited {
				return
			}
			ids := ruleIDs(rec.Rules)
			for _, id := range tt.wantRules {
				if !slices.Contains(ids, id) {
					t.Errorf("audit rules %v lack %d", ids, id)
				}
			}
			for _, id := range tt.noRules {
				if slices.Contains(ids, id) {
					t.Errorf("audit rules %v have %d", ids, id)
				}
			}
			if lo, hi := tt.wantFamily[0], tt.wantFamily[1]; lo > 0 &&
				!slices.ContainsFunc(ids, func(id int) bool { return id >= lo && id <= hi }) {
				t.Errorf("audit rules %v have none in %d-%d", ids, lo, hi)
			}
			if denied != nil && headerOf(denied, TransactionIDHeader) != rec.TransactionID {
				t.Errorf("transaction id header %q, audit %q", headerOf(denied, TransactionIDHeader), rec.TransactionID)
			}
			if rec.Client != "127.0.0.1" || rec.Host != host || rec.Gateway != testGateway {
				t.Errorf("audit record = %+v", rec)
			}
		})
	}
}

func headerOf(ir *extprocv3.ImmediateResponse, key string) string {
	for _, h := range ir.GetHeaders().GetSetHeaders() {
		if h.GetHeader().GetKey() == key {
			return string(h.GetHeader().GetRawValue())
		}
	}
	return ""
}

func TestProcModeOverride(t *testing.T) {
	host := "shop.example.com"
	buffered := filterv3.ProcessingMode_BUFFERED
	send, skip := filterv3.ProcessingMode_SEND, filterv3.ProcessingMode_SKIP
	none, partial := filterv3.ProcessingMode_NONE, filterv3.ProcessingMode_BUFFERED_PARTIAL
	type mode struct {
		requestBody  filterv3.ProcessingMode_BodySendMode
		respHeaders  filterv3.ProcessingMode_HeaderSendMode
		responseBody filterv3.ProcessingMode_BodySendMode
	}
	tests := map[string]struct {
		policy *agentapi.HostPolicy
		msgs   []*extprocv3.ProcessingRequest
		want   mode // the override in the answer to the last message
	}{
		"response inspection asks for the response": {
			policy: testPolicy(testGateway, host, withResponses(0)),
			msgs:   []*extprocv3.ProcessingRequest{procRequest("GET", host, "/", nil, "", buffered)},
			want:   mode{none, send, partial},
		},
		"a body still to come is still wanted": {
			policy: testPolicy(testGateway, host, withResponses(0)),
			msgs:   []*extprocv3.ProcessingRequest{procRequest("POST", host, "/c", formType, "a=1", buffered)},
			want:   mode{buffered, send, partial},
		},
		"a tunnel's stream is not waited for": {
			// Detect, because the CRS refuses CONNECT.
			policy: testPolicy(testGateway, host, withMode(agentapi.Mode_MODE_DETECT), withResponses(0)),
			msgs:   []*extprocv3.ProcessingRequest{procRequest("CONNECT", host, "www.example.org:443", nil, "", buffered)},
			want:   mode{none, send, partial},
		},
		"a websocket upgrade is not waited for": {
			policy: testPolicy(testGateway, host),
			msgs:   []*extprocv3.ProcessingRequest{procRequest("GET", host, "/ws", map[string]string{"upgrade": "websocket", "connection": "upgrade"}, "", buffered)},
			want:   mode{none, skip, none},
		},
		"a policy ignoring bodies drops the body": {
			policy: testPolicy(testGateway, host, withBody(false, 0, 0)),
			msgs:   []*extprocv3.ProcessingRequest{procRequest("POST", host, "/c", formType, "a=1", buffered)},
			want:   mode{none, skip, none},
		},
		"no response inspection skips the response": {
			policy: testPolicy(testGateway, host),
			msgs:   []*extprocv3.ProcessingRequest{procRequest("GET", host, "/", nil, "", buffered)},
			want:   mode{none, skip, none},
		},
		"no policy skips everything": {
			policy: testPolicy(testGateway, "other.example.com", withResponses(0)),
			msgs:   []*extprocv3.ProcessingRequest{procRequest("POST", host, "/c", formType, "a=1", buffered)},
			want:   mode{none, skip, none},
		},
		"a response coraza does not inspect drops its body": {
			policy: testPolicy(testGateway, host, withResponses(0)),
			msgs: []*extprocv3.ProcessingRequest{procRequest("GET", host, "/logo.png", nil, "", buffered),
				procResponseHeaders(200, "image/png", false)},
			want: mode{none, skip, none},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			in, _, _ := newTestInspector(t, tt.policy)
			answers, _ := exchangeOf(t, in, []string{testGateway}, tt.msgs...)
			m := answers[len(answers)-1].GetModeOverride()
			if m == nil {
				t.Fatalf("no mode override in %v", answers[len(answers)-1])
			}
			got := mode{m.GetRequestBodyMode(), m.GetResponseHeaderMode(), m.GetResponseBodyMode()}
			if got != tt.want {
				t.Errorf("override = %+v, want %+v", got, tt.want)
			}
		})
	}
}
