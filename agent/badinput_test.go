package agent

import (
	"fmt"
	"strings"
	"testing"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/meshwaf/meshwaf/agentapi"
)

// badRequest is hostile or malformed input, with the verdict badPolicy
// gives it.
type badRequest struct {
	method, path string
	headers      map[string]string
	body         string
	want         int // status: 200 allowed, else the denial
}

// badPolicy is the default policy with a 4 KiB body limit: the CRS takes
// about a second for a 128 KiB body value (ten under the race detector),
// and the behaviour at the limit is the same at any size.
func badPolicy(host string, edit ...func(*agentapi.HostPolicy)) *agentapi.HostPolicy {
	return testPolicy(testGateway, host, append([]func(*agentapi.HostPolicy){
		withBody(true, badLimit, agentapi.OverLimit_OVER_LIMIT_REJECT)}, edit...)...)
}

const badLimit = 4096

var badRequests = map[string]badRequest{
	"non-UTF-8 header bytes":              {method: "GET", path: "/", headers: map[string]string{"x-bin": "\xff\xfe\xc3", "user-agent": "\xc3\x28"}, want: 200},
	"non-UTF-8 header bytes and sqli":     {method: "GET", path: sqliPath, headers: map[string]string{"x-bin": "\xff\xfe"}, want: 403},
	"non-UTF-8 body bytes":                {method: "POST", path: "/c", headers: formType, body: "a=\xff\xfe&b=\xc3", want: 200},
	"multipart without a closing":         {method: "POST", path: "/up", headers: map[string]string{"content-type": "multipart/form-data; boundary=xyz"}, body: "--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue", want: 403},
	"multipart that is not multipart":     {method: "POST", path: "/up", headers: map[string]string{"content-type": "multipart/form-data; boundary=xyz"}, body: "garbage", want: 403},
	"multipart without a boundary":        {method: "POST", path: "/up", headers: map[string]string{"content-type": "multipart/form-data"}, body: "--\r\n\r\n", want: 403},
	"invalid JSON":                        {method: "POST", path: "/api", headers: map[string]string{"content-type": "application/json"}, body: `{"a": [1, 2`, want: 403},
	"JSON nested past the depth limit":    {method: "POST", path: "/api", headers: map[string]string{"content-type": "application/json"}, body: strings.Repeat("[", 2000) + strings.Repeat("]", 2000), want: 403},
	"invalid XML is parsed leniently":     {method: "POST", path: "/api", headers: map[string]string{"content-type": "application/xml"}, body: "<a><b></a>", want: 200},
	"XML with an entity bomb header":      {method: "POST", path: "/api", headers: map[string]string{"content-type": "text/xml"}, body: `<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]><x>&b;</x>`, want: 200},
	"oversized header":                    {method: "GET", path: "/", headers: map[string]string{"x-big": strings.Repeat("a", 16<<10)}, want: 200},
	"thousands of arguments":              {method: "GET", path: "/?" + manyArgs(2000), want: 403},
	"sqli past the argument limit":        {method: "GET", path: "/?" + manyArgs(1000) + "id=" + sqliPath[len("/?id="):], want: 403},
	"oversized body":                      {method: "POST", path: "/c", headers: formType, body: "a=" + strings.Repeat("b", 2*badLimit), want: 413},
	"body of exactly the limit":           {method: "POST", path: "/c", headers: formType, body: "a=" + strings.Repeat("b", badLimit-2), want: 200},
	"double slashes":                      {method: "GET", path: "//static//app.js", want: 200},
	"double slashes and sqli":             {method: "GET", path: "//" + sqliPath[1:], want: 403},
	"encoded dot segments":                {method: "GET", path: "/a/%2e%2e/%2e%2e/etc/passwd", want: 403},
	"dot segments Envoy already resolved": {method: "GET", path: "/etc/passwd", want: 200},
	"method that is not a token":          {method: "GE T", path: "/", want: 403},
	"path that is not a path":             {method: "GET", path: "http://evil/%zz?%%", want: 403},
	"empty request":                       {want: 200},
}

func manyArgs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "a%d=1&", i)
	}
	return b.String()
}

// TestBadInputGetsAVerdict sends every bad request through both protocols:
// each must come back as an answer from the host's policy, never a gRPC
// error or a crash, and both protocols must agree.
func TestBadInputGetsAVerdict(t *testing.T) {
	host := "shop.example.com"
	in, _, _ := newTestInspector(t, badPolicy(host))
	authz := &authzServer{in: in}
	for name, br := range badRequests {
		t.Run(name, func(t *testing.T) {
			resp, err := authz.Check(gatewayCtx(testGateway), httpCheck(br.method, host, br.path, br.headers, br.body))
			if err != nil {
				t.Fatalf("ext_authz: gRPC error %v", err)
			}
			if got := verdictOf(t, resp); got != br.want {
				t.Errorf("ext_authz: status %d, want %d", got, br.want)
			}
			if got := procVerdict(t, in, host, br); got != br.want {
				t.Errorf("ext_proc: status %d, want %d", got, br.want)
			}
		})
	}
}

// procVerdict sends br over ext_proc like Envoy with buffered bodies and
// returns the status the client would get.
func procVerdict(t *testing.T, in *inspector, host string, br badRequest) int {
	t.Helper()
	msgs := []*extprocv3.ProcessingRequest{procRequest(br.method, host, br.path, br.headers, br.body, filterv3.ProcessingMode_BUFFERED)}
	if br.body != "" {
		msgs = append(msgs, procRequestBody(br.body, true))
	}
	msgs = append(msgs, procResponseHeaders(200, "application/json", false), procResponseBody(`{}`, true))
	_, denied := exchangeOf(t, in, []string{testGateway}, msgs...)
	if denied == nil {
		return 200
	}
	return int(denied.GetStatus().GetCode())
}

// Detect answers the same bad input with an allow and an audit line, and
// Off without looking at it.
func TestBadInputInDetectAndOff(t *testing.T) {
	for _, mode := range []agentapi.Mode{agentapi.Mode_MODE_DETECT, agentapi.Mode_MODE_OFF} {
		in, audit, _ := newTestInspector(t, badPolicy("*", withMode(mode), withResponses(0)))
		for name, br := range badRequests {
			if got := procVerdict(t, in, "h", br); got != 200 {
				t.Errorf("%s %s: ext_proc status %d, want 200", mode, name, got)
			}
		}
		recs := audit.records(t)
		if mode == agentapi.Mode_MODE_OFF && len(recs) != 0 {
			t.Errorf("mode Off audited %d requests", len(recs))
		}
		for _, r := range recs {
			if r.Action != actionDetected {
				t.Errorf("%s: audit action %q for %s, want detected", mode, r.Action, r.Path)
			}
		}
	}
}
