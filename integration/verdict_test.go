package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// The demo manifests (Prevent on shop.example.com) block SQL injection in a
// query string and XSS in a form body, and let benign requests through.
func TestPreventBlocksAttacks(t *testing.T) {
	s := startStack(t, stack.Config{Manifests: demoManifests(t)})

	tests := map[string]struct {
		req  request
		want int
	}{
		"benign GET reaches the backend":   {benign, http.StatusOK},
		"SQL injection in the query":       {sqliGET, http.StatusForbidden},
		"XSS in a form POST body":          {xssForm, http.StatusForbidden},
		"benign form POST":                 {request{method: "POST", host: "shop.example.com", target: "/comments", contentType: "application/x-www-form-urlencoded", body: "author=alice&comment=nice+shoes"}, http.StatusOK},
		"unprotected host is not filtered": {onHost(sqliGET, "api.example.com"), http.StatusOK},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp := send(t, s, tc.req)
			if resp.status != tc.want {
				t.Fatalf("%s: status %d, want %d; body %q", tc.req, resp.status, tc.want, resp.body)
			}
			if tc.want == http.StatusForbidden {
				checkBlockResponse(t, resp)
			}
		})
	}
}

// checkBlockResponse checks the default block response of
// docs/architecture.md: JSON with the transaction id, also in a header.
func checkBlockResponse(t *testing.T, resp response) {
	t.Helper()
	id := resp.header.Get("x-meshwaf-transaction-id")
	if id == "" {
		t.Errorf("block response has no x-meshwaf-transaction-id header (headers %v)", resp.header)
	}
	if ct := resp.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("block response content type %q, want application/json", ct)
	}
	var body struct {
		Blocked       bool   `json:"blocked"`
		TransactionID string `json:"transaction_id"`
	}
	if err := json.Unmarshal([]byte(resp.body), &body); err != nil || !body.Blocked || body.TransactionID == "" {
		t.Errorf("block body %q: want {\"blocked\":true,\"transaction_id\":…} (decode error %v)", resp.body, err)
	} else if id != "" && body.TransactionID != id {
		t.Errorf("transaction id %q in body, %q in header", body.TransactionID, id)
	}
}

// Two hosts on one gateway with different policies get different verdicts
// for the same attack.
func TestTwoHostsDifferentModes(t *testing.T) {
	dir := demoManifests(t)
	writeFile(t, dir, "wafpolicy.yaml", policyYAML(shopPrevent, apiDetect))
	s := startStack(t, stack.Config{Manifests: dir})

	if r := send(t, s, sqliGET); r.status != http.StatusForbidden {
		t.Errorf("%s (Prevent): status %d, want 403; body %q", sqliGET, r.status, r.body)
	}
	apiAttack := onHost(sqliGET, "api.example.com")
	if r := send(t, s, apiAttack); r.status != http.StatusOK {
		t.Errorf("%s (Detect): status %d, want 200; body %q", apiAttack, r.status, r.body)
	}
	for _, r := range []request{benign, onHost(benign, "api.example.com")} {
		if resp := send(t, s, r); resp.status != http.StatusOK {
			t.Errorf("%s: status %d, want 200", r, resp.status)
		}
	}
}
