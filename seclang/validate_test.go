package seclang

import (
	"strings"
	"testing"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	coraza "github.com/corazawaf/coraza/v3"
)

func compileCRS(directives string) (coraza.WAF, error) {
	return coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(directives))
}

func TestValidateCustomRules(t *testing.T) {
	tests := map[string]struct {
		rules   string
		wantErr string // "" means valid
	}{
		"empty":                               {rules: "", wantErr: ""},
		"only noise":                          {rules: "# nothing\n\n", wantErr: ""},
		"valid rule":                          {rules: `SecRule REQUEST_HEADERS:User-Agent "@contains badbot" "id:10001,phase:1,deny,status:403"`},
		"valid chain over continuation lines": {rules: "SecRule ARGS:a \"@eq 1\" \\\n  \"id:10002,phase:2,deny,chain\"\n  SecRule ARGS:b \"@eq 2\" \"t:none\""},
		"bad regex names its line": {
			rules:   "SecRule ARGS \"@contains x\" \"id:10003,phase:2,pass\"\n\nSecRule ARGS \"@rx (\" \"id:10004,phase:2,deny\"",
			wantErr: `custom rules line 3 (SecRule ARGS "@rx (" "id:10004,phase:2,deny")`,
		},
		"unknown action": {
			rules:   `SecRule ARGS "@contains x" "id:10005,phase:2,deny,bogus:1"`,
			wantErr: `invalid action "bogus"`,
		},
		"unknown directive": {
			rules:   "SecFoo bar",
			wantErr: `line 1 (SecFoo bar)`,
		},
		"duplicate id": {
			rules:   "SecAction \"id:10006,phase:1,pass\"\nSecAction \"id:10006,phase:1,pass\"",
			wantErr: "line 2",
		},
		"include is refused": {
			rules:   "Include /etc/passwd",
			wantErr: `directive "Include" is not allowed`,
		},
		"audit log is refused": {
			rules:   "secauditlog /tmp/x",
			wantErr: `directive "secauditlog" is not allowed`,
		},
		"crs id is refused": {
			rules:   `SecAction "id:942100,phase:1,pass"`,
			wantErr: "rule id 942100 is reserved for the OWASP CRS",
		},
		"exclusion id is refused": {
			rules:   `SecAction "id:410000,phase:1,pass"`,
			wantErr: "reserved for meshwaf (410000-419999)",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			err := ValidateCustomRules(tt.rules)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDirectives(t *testing.T) {
	in := "# comment\nSecRule A \"b\" \\\n  \"c\"\n\n  SecAction \"d\"\n"
	got := directives(in)
	if len(got) != 2 || got[0].line != 2 || got[0].text != `SecRule A "b"  "c"` || got[1].line != 5 || got[1].name() != "SecAction" {
		t.Errorf("directives = %+v", got)
	}
}
