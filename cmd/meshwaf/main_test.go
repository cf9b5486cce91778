package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshwaf/meshwaf/policytest"
)

const demo = "../../examples/demo"

func runMeshwaf(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errs bytes.Buffer
	code = run(args, &out, &errs)
	return code, out.String(), errs.String()
}

// The README's example: the demo policy blocks the SQL injection with
// rule 942100 and lets the plain request through, in text and in JSON.
func TestTestSaysWhatTheDemoPolicyDoes(t *testing.T) {
	code, out, errs := runMeshwaf(t, "test", "-f", demo, "-H", "Host: shop.example.com", "http://gateway/?id=1%27%20OR%201=1--")
	if code != 0 || !strings.HasPrefix(out, "blocked (403) by policy shop/shop") || !strings.Contains(out, "942100  SQL Injection Attack Detected via libinjection") {
		t.Errorf("attack: exit %d, stdout:\n%s\nstderr: %s", code, out, errs)
	}
	code, out, errs = runMeshwaf(t, "test", "-f", demo, "-o", "json", "-H", "Host: shop.example.com", "http://gateway/?id=1")
	var got policytest.Result
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 {
		t.Fatalf("benign -o json: exit %d, %v: %s %s", code, err, out, errs)
	}
	if got.Verdict != policytest.Allowed || got.Policy != "shop/shop" || got.Host != "shop.example.com" || len(got.Rules) != 0 {
		t.Errorf("benign request: %+v", got)
	}
	code, out, _ = runMeshwaf(t, "test", "-f", demo, "-o", "json", "-H", "Host: shop.example.com", "http://gateway/?id=1%27%20OR%201=1--")
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 {
		t.Fatalf("attack -o json: exit %d, %v: %s", code, err, out)
	}
	if got.Verdict != policytest.Blocked || got.Status != 403 || !slices.Contains(got.RuleIDs(), 942100) || got.AnomalyScore < 5 {
		t.Errorf("attack as JSON: %+v", got)
	}
	// api.example.com is on the same gateway but no policy covers it.
	code, out, _ = runMeshwaf(t, "test", "-f", demo, "-H", "Host: api.example.com", "http://gateway/?id=1%27%20OR%201=1--")
	if code != 0 || !strings.HasPrefix(out, "unprotected: no policy covers this host") {
		t.Errorf("unprotected host: exit %d: %s", code, out)
	}
}

// --expect makes the exit status say whether the verdict was the one
// expected, for a policy repository's CI.
func TestTestExpect(t *testing.T) {
	attack := []string{"test", "-f", demo, "-H", "Host: shop.example.com", "http://gateway/?id=1%27%20OR%201=1--"}
	if code, _, errs := runMeshwaf(t, append(attack, "--expect", "allowed")...); code != 1 || !strings.Contains(errs, "expected allowed, got blocked") {
		t.Errorf("--expect allowed on the attack: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := runMeshwaf(t, append(attack, "--expect", "blocked")...); code != 0 {
		t.Errorf("--expect blocked on the attack: exit %d, stderr %q", code, errs)
	}
}

// Bad input is exit status 2 with a message that says what is wrong.
func TestTestRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: waf.meshwaf.io/v1alpha1\nkind: WAFPolicy\nmetadata: {name: p, namespace: shop}\nspec: {mode: Sometimes, targetRefs: [{kind: Gateway, name: public}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		args []string
		want string
	}{
		"no manifests":       {[]string{"test", "http://gateway/"}, "-f DIR|FILE is required"},
		"no URL":             {[]string{"test", "-f", demo}, "no URL"},
		"unknown option":     {[]string{"test", "-f", demo, "--compressed", "http://gateway/"}, "--compressed is not supported"},
		"bad header":         {[]string{"test", "-f", demo, "-H", "nocolon", "http://gateway/"}, `header "nocolon"`},
		"invalid policy":     {[]string{"test", "-f", bad, "http://gateway/"}, "policy.yaml"},
		"unknown verdict":    {[]string{"test", "-f", demo, "--expect", "fine", "http://gateway/"}, `--expect "fine"`},
		"missing folder":     {[]string{"test", "-f", filepath.Join(dir, "none"), "http://gateway/"}, "none"},
		"unknown subcommand": {[]string{"tset"}, `unknown command "tset"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			code, _, errs := runMeshwaf(t, tc.args...)
			if code != 2 || !strings.Contains(errs, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errs, tc.want)
			}
		})
	}
}

// meshwaf tune reads an audit log and prints the demo policy whole with
// the proposed exclusion, ready to apply.
func TestTune(t *testing.T) {
	log := filepath.Join(t.TempDir(), "audit.log")
	line := `{"policy":"shop/shop","host":"shop.example.com","path":"/comments","action":"blocked","anomaly_score":5,` +
		`"rules":[{"id":942260,"msg":"SQL auth bypass","severity":"critical","targets":["ARGS:comment"]}]}` + "\n"
	if err := os.WriteFile(log, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runMeshwaf(t, "tune", "--audit", log, "-f", demo)
	for _, want := range []string{"kind: WAFPolicy", "- /comments", "- ARGS:comment", "- \"942260\"", "0 of 1 blocked requests still blocked"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d, stderr %q; output lacks %q:\n%s", code, errs, want, out)
		}
	}
	if code, _, errs := runMeshwaf(t, "tune", "-f", demo); code != 2 || !strings.Contains(errs, "--audit FILE is required") {
		t.Errorf("without --audit: exit %d, stderr %q", code, errs)
	}
}

// Many requests from a file, or replayed from an audit log: one result per
// request, and --expect counts the ones that differ.
func TestTestManyRequests(t *testing.T) {
	dir := t.TempDir()
	requests := filepath.Join(dir, "requests.txt")
	if err := os.WriteFile(requests, []byte(`# the demo's host
curl -H 'Host: shop.example.com' 'http://gateway/?id=1'
-H "Host: shop.example.com" -d "comment=1' OR '1'='1" http://gateway/comments
`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runMeshwaf(t, "test", "-f", demo, "--requests", requests, "--expect", "allowed")
	if code != 1 || !strings.Contains(errs, "1 of 2 requests not allowed") ||
		!strings.Contains(out, "line 2: GET shop.example.com/?id=1\nallowed") || !strings.Contains(out, "line 3: POST shop.example.com/comments\nblocked (403)") {
		t.Errorf("--requests: exit %d, stderr %q, stdout:\n%s", code, errs, out)
	}
	audit := filepath.Join(dir, "audit.log")
	line := `{"host":"shop.example.com","method":"GET","path":"/?id=1%27%20OR%201=1--","action":"detected","policy":"shop/shop"}` + "\n" +
		`{"host":"shop.example.com","method":"GET","path":"/?id=1%27%20OR%201=1--","action":"detected","policy":"shop/shop","shadow":true}` + "\n"
	if err := os.WriteFile(audit, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runMeshwaf(t, "test", "-f", demo, "--replay", audit, "-o", "json")
	var got []struct {
		Line    int    `json:"line"`
		Was     string `json:"was"`
		Verdict string `json:"verdict"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || len(got) != 1 || got[0].Was != "detected" || got[0].Verdict != policytest.Blocked {
		t.Errorf("--replay: exit %d, %v, stderr %q: %+v", code, err, errs, got)
	}
	if code, _, errs := runMeshwaf(t, "test", "-f", demo, "--requests", requests, "http://gateway/"); code != 2 || !strings.Contains(errs, "one or the other") {
		t.Errorf("a list and a request: exit %d, stderr %q", code, errs)
	}
}
