package integration

import (
	"bytes"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
	"github.com/meshwaf/meshwaf/policytest"
	"github.com/meshwaf/meshwaf/tune"
)

// lookAlikes are benign comments a paranoia level 2 policy blocks: words
// of SQL in prose, and punctuation-rich enthusiasm.
var lookAlikes = []string{
	"select the blue ones from the shop",
	"Great shoes!!! (5/5) -- would buy again; love them :) #happy @shop 'best' ~ever~ *wow*",
}

// meshwaf tune on the audit log of benign look-alike traffic blocked at
// paranoia level 2 proposes exclusions that, applied, let that traffic
// through, while attacks on the same form field and elsewhere stay blocked.
func TestTuneLetsLookAlikesThroughAndKeepsAttacksBlocked(t *testing.T) {
	dir := demoManifests(t)
	policy, err := os.ReadFile(dir + "/wafpolicy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "wafpolicy.yaml", strings.Replace(string(policy), "paranoiaLevel: 1", "paranoiaLevel: 2", 1))
	s := startStack(t, stack.Config{Manifests: dir})
	comment := func(text string) request {
		return request{method: http.MethodPost, host: "shop.example.com", target: "/comments",
			contentType: "application/x-www-form-urlencoded", body: "author=alice&comment=" + url.QueryEscape(text)}
	}
	attacks := []request{
		comment("<script>alert(document.cookie)</script>"),
		comment("1' OR '1'='1' UNION SELECT username, password FROM users--"),
		sqliGET,
	}
	for _, text := range lookAlikes {
		for range 3 {
			if r := send(t, s, comment(text)); r.status != http.StatusForbidden {
				t.Fatalf("look-alike %q at PL2: %d, want 403 (the test needs it blocked)", text, r.status)
			}
		}
	}

	// What meshwaf tune reads and writes, then applied as a user would.
	audit, err := os.ReadFile(s.LogPaths().Audit)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := tune.ReadLines(bytes.NewReader(audit))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := policytest.PolicySpecs(dir)
	if err != nil {
		t.Fatal(err)
	}
	var proposal bytes.Buffer
	if err := tune.Write(&proposal, lines, specs); err != nil {
		t.Fatal(err)
	}
	t.Logf("meshwaf tune proposed:\n%s", proposal.String())
	if !strings.Contains(proposal.String(), "0 of 6 blocked requests still blocked") {
		t.Errorf("the projection does not say every look-alike would pass:\n%s", proposal.String())
	}
	writeFile(t, dir, "wafpolicy.yaml", proposal.String())
	for _, text := range lookAlikes {
		waitStatus(t, s, comment(text), http.StatusOK, 10*time.Second)
	}
	for _, a := range attacks {
		if r := send(t, s, a); r.status != http.StatusForbidden {
			t.Errorf("attack %s after tuning: %d, want 403", a, r.status)
		}
	}
}
