package bench

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"

	"github.com/meshwaf/meshwaf/seclang"
)

// The peer is nginx with ModSecurity v3 (peer.go). Its rules are the very
// directives meshwaf's agent compiles for the same policy (seclang.Render
// of hostPolicy), with the CRS files of the coraza-coreruleset module
// meshwaf embeds, written to disk because libmodsecurity reads files, and
// with the few changes libmodsecurity 3.0.9 needs to load them
// (modsecRules). Rendering instead of writing a second configuration by
// hand keeps the two systems' settings (anomaly thresholds, body limits,
// early blocking, paranoia levels) equal by construction, and makes any
// future change to meshwaf's defaults reach the peer as well.

// crsDir is where the CRS files are copied inside the peer's directory.
const crsDir = "crs"

// writeCRS copies the coraza-coreruleset module's rule files (the
// recommended configuration, the CRS setup, the CRS rules and their data
// files) under dir/crsDir. Rules that libmodsecurity cannot parse are
// patched in the copy (patchChainedRules); it returns how many.
func writeCRS(dir string) (patched int, err error) {
	root := filepath.Join(dir, crsDir)
	err = fs.WalkDir(coreruleset.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// libmodsecurity's configuration scanner fails on file names with
		// an @ ("input in flex scanner failed"), which the module's
		// embedded names have; the copies go without it.
		target := filepath.Join(root, filepath.FromSlash(strings.ReplaceAll(path, "@", "")))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		raw, err := fs.ReadFile(coreruleset.FS, path)
		if err != nil {
			return err
		}
		if strings.Contains(path, ".conf") {
			var n int
			raw, n = patchChainedRules(dropUnsupported(raw))
			patched += n
		}
		return os.WriteFile(target, raw, 0o644)
	})
	return patched, err
}

// dropUnsupported removes SecRequestBodyInMemoryLimit, which
// libmodsecurity v3 refuses ("no longer supported ... ModSecurity will
// follow the web server decision"): nginx's client_body_buffer_size takes
// its place (nginxConf).
func dropUnsupported(conf []byte) []byte {
	lines := strings.SplitAfter(string(conf), "\n")
	out := lines[:0]
	for _, l := range lines {
		if !strings.HasPrefix(l, "SecRequestBodyInMemoryLimit") {
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, ""))
}

// patchChainedRules gives every SecRule without an action list the action
// "t:none". The CRS writes two rules of a chain with only a variable and an
// operator, which Coraza accepts; libmodsecurity 3.0.9 refuses the whole
// file ("Expecting an action, got: SecRule …"). t:none is what such a rule
// does anyway (no transformation, the chain's actions apply), so the patch
// changes what loads, not what runs.
func patchChainedRules(conf []byte) ([]byte, int) {
	lines := strings.SplitAfter(string(conf), "\n")
	patched := 0
	for start := 0; start < len(lines); {
		end := start // the last physical line of this directive
		for end < len(lines)-1 && strings.HasSuffix(strings.TrimRight(lines[end], "\r\n"), "\\") {
			end++
		}
		logical := strings.Join(lines[start:end+1], "")
		if args := directiveArgs(logical); len(args) == 3 && args[0] == "SecRule" {
			body := strings.TrimRight(lines[end], "\r\n")
			lines[end] = body + ` "t:none"` + lines[end][len(body):]
			patched++
		}
		start = end + 1
	}
	return []byte(strings.Join(lines, "")), patched
}

// directiveArgs splits a directive (continuation lines included) into its
// words, a double-quoted string with backslash escapes counting as one.
// Comments and blank lines have none.
func directiveArgs(logical string) []string {
	s := strings.ReplaceAll(logical, "\\\n", " ")
	if t := strings.TrimSpace(s); t == "" || strings.HasPrefix(t, "#") {
		return nil
	}
	var args []string
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			args = append(args, s[i:min(j+1, len(s))])
			i = j + 1
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n", rune(s[j])) {
				j++
			}
			args = append(args, s[i:j])
			i = j
		}
	}
	return args
}

// modsecRules is what libmodsecurity loads for a policy at paranoia level
// pl: seclang.Render's directives with the embedded files' names replaced
// by the copies under crs, meshwaf's two Coraza-only checks replaced by
// their ModSecurity equivalent or dropped, and an audit log for the
// requests a rule denied, as the agent writes one (the differences are
// listed in peerDifferences).
func modsecRules(pl int32, crs, auditLog string) (string, error) {
	directives, err := seclang.Render(hostPolicy(pl, plHost(pl)))
	if err != nil {
		return "", err
	}
	r := strings.NewReplacer(
		"Include @coraza.conf-recommended", "Include "+filepath.Join(crs, "coraza.conf-recommended"),
		"Include @crs-setup.conf.example", "Include "+filepath.Join(crs, "crs-setup.conf.example"),
		"Include @owasp_crs/*.conf", "Include "+filepath.Join(crs, "owasp_crs", "*.conf"),
	)
	var b strings.Builder
	for _, line := range strings.SplitAfter(string(dropUnsupported([]byte(r.Replace(directives)))), "\n") {
		switch {
		case strings.HasPrefix(line, "SecRule ARGUMENTS_LIMIT_REACHED"):
			// Coraza's variable; meshwaf's rule 419903 (&ARGS @ge 1000, as
			// ModSecurity's recommended configuration has it) covers both
			// of these rules for ModSecurity, which keeps 1,000 arguments.
		case strings.HasPrefix(line, "SecRule URI_PARSE_ERROR"):
			// libmodsecurity has no such variable (it parses the URI its own
			// way); dropped.
		case strings.HasPrefix(line, "SecAuditEngine"):
			// The agent writes one audit line per request a rule matched
			// (audit level Detected) and Coraza's own log is off. The
			// closest ModSecurity setting: its own audit log, for the
			// requests it denied, with headers and the rule messages.
			fmt.Fprintf(&b, "SecAuditEngine RelevantOnly\nSecAuditLogRelevantStatus \"^403$\"\n"+
				"SecAuditLogParts ABHZ\nSecAuditLogType Serial\nSecAuditLogFormat JSON\nSecAuditLog %s\n", auditLog)
		default:
			b.WriteString(line)
		}
	}
	return b.String(), nil
}

// peerDifferences are the settings in which the peer differs from meshwaf,
// for the report.
var peerDifferences = []string{
	"meshwaf's rule 419902 (deny a URI Coraza failed to parse, URI_PARSE_ERROR) is left out: libmodsecurity has no such variable",
	"meshwaf's argument-limit rules 419900/419901 (Coraza's ARGUMENTS_LIMIT_REACHED) are left out: ModSecurity has no such variable, and meshwaf's 419903 (`SecRule &ARGS \"@ge 1000\"` in phase 2, ModSecurity's recommended rule) denies the same requests on both",
	"the two chained CRS rules without an action list get `\"t:none\"`, which libmodsecurity 3.0.9 requires and which changes nothing they do",
	"audit: the agent writes one JSON line per request a rule matched; ModSecurity writes its JSON audit record (parts ABHZ) for every answer with status 403",
	"bodies over the limit: the agent settles them itself (413 by default) and hands Coraza at most the limit; nginx's `client_max_body_size` is set to the same limit and answers 413, and ModSecurity's own limit action is ProcessPartial as in meshwaf's directives",
	"nginx buffers the request body before ModSecurity's phase 2 as Envoy does for ext_authz (`with_request_body`); neither the 10 KB bodies nor any other scenario reaches a temporary file",
}
