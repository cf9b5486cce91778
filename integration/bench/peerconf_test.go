package bench

import (
	"strings"
	"testing"
)

func TestPatchChainedRulesGivesOnlyActionlessRulesAnAction(t *testing.T) {
	conf := `# SecRule ARGS "@rx x"
SecRule ARGS "@rx a" "id:1,phase:2,deny,chain"
    SecRule MATCHED_VARS "@rx b"
SecRule REQUEST_HEADERS:Content-Type "@rx \"quoted\" text" \
    "id:2,phase:1,pass,nolog,chain"
    SecRule ARGS_NAMES \
        "@rx c"
SecAction "id:3,phase:1,pass,nolog"
`
	got, n := patchChainedRules([]byte(conf))
	if n != 2 {
		t.Errorf("patched %d rules, want 2:\n%s", n, got)
	}
	for _, want := range []string{
		`    SecRule MATCHED_VARS "@rx b" "t:none"` + "\n",
		`        "@rx c" "t:none"` + "\n",
		`SecRule ARGS "@rx a" "id:1,phase:2,deny,chain"` + "\n",
		`# SecRule ARGS "@rx x"` + "\n",
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("patched conf lacks %q:\n%s", want, got)
		}
	}
}

func TestModsecRulesAreMeshwafsDirectivesForModSecurity(t *testing.T) {
	rules, err := modsecRules(2, "/run/crs", "/run/audit.log")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Include /run/crs/coraza.conf-recommended\n",
		"Include /run/crs/crs-setup.conf.example\n",
		"Include /run/crs/owasp_crs/*.conf\n",
		"setvar:tx.blocking_paranoia_level=2\"",
		"SecRequestBodyAccess On\n",
		"SecResponseBodyAccess Off\n",
		"SecAuditEngine RelevantOnly\n",
		"SecAuditLog /run/audit.log\n",
		`SecRule &ARGS "@ge 1000"`,
	} {
		if !strings.Contains(rules, want) {
			t.Errorf("rules lack %q:\n%s", want, rules)
		}
	}
	for _, dontWant := range []string{"@coraza", "@crs-setup", "@owasp_crs", "SecRequestBodyInMemoryLimit", "URI_PARSE_ERROR",
		"ARGUMENTS_LIMIT_REACHED", "SecAuditEngine Off"} {
		if strings.Contains(rules, dontWant) {
			t.Errorf("rules contain %q:\n%s", dontWant, rules)
		}
	}
}
