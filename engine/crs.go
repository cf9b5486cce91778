package engine

import (
	"bytes"
	"io/fs"
	"path"
	"regexp"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
)

// CRS is the Core Rule Set of the coraza-coreruleset module, as policies
// are compiled against it (WithRootFS): the same files, except that the
// rules under @owasp_crs carry no logdata action.
//
// Why: Coraza expands a rule's logdata every time it evaluates the rule,
// match or not, so that %{rule.logdata} can be read while the rule runs.
// The CRS's logdata is 'Matched Data: %{TX.0} found within
// %{MATCHED_VAR_NAME}: %{MATCHED_VAR}' or alike, so each of the hundreds of
// rules a request meets built a string holding the previous match; that
// was about a tenth of the CPU of inspecting a small request. The CRS never
// reads %{rule.logdata}, logdata decides nothing, and meshwaf's audit line
// reports rule ids and messages, not logdata; ModSecurity expands it only
// when a rule matches. Rules of a policy (its own directives) keep theirs.
var CRS fs.FS = crsFS{base: coreruleset.FS}

// crsRuleDir is where the coraza-coreruleset module keeps the CRS rules.
const crsRuleDir = "@owasp_crs"

// crsFS serves base, with the logdata lines of the CRS rule files removed.
// Coraza reads rule files through fs.ReadFile and lists them through
// fs.Glob, so those are the calls that see the lighter files.
type crsFS struct{ base fs.FS }

var (
	_ fs.ReadFileFS = crsFS{}
	_ fs.GlobFS     = crsFS{}
)

func (c crsFS) Open(name string) (fs.File, error) { return c.base.Open(name) }

func (c crsFS) Glob(pattern string) ([]string, error) { return fs.Glob(c.base, pattern) }

func (c crsFS) ReadFile(name string) ([]byte, error) {
	raw, err := fs.ReadFile(c.base, name)
	if err != nil || path.Dir(name) != crsRuleDir || path.Ext(name) != ".conf" {
		return raw, err
	}
	return withoutLogdata(raw), nil
}

// logdataLine is a logdata action alone on its line, inside a rule written
// over several lines, as every CRS rule with logdata is: dropping the line
// leaves the rule's other actions and its line continuation intact.
var logdataLine = regexp.MustCompile(`^[ \t]*logdata:'(?:[^'\\]|\\.)*',\\$`)

// withoutLogdata drops the logdata lines from a rule file.
func withoutLogdata(conf []byte) []byte {
	lines := bytes.SplitAfter(conf, []byte("\n"))
	kept := lines[:0]
	for _, l := range lines {
		if !logdataLine.Match(bytes.TrimRight(l, "\r\n")) {
			kept = append(kept, l)
		}
	}
	return bytes.Join(kept, nil)
}
