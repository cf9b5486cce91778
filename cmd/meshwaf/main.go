// Command meshwaf is the policy tool: it evaluates requests against
// WAFPolicy manifests offline, with the agent's own engine.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/policytest"
	"github.com/meshwaf/meshwaf/tune"
)

const usage = `meshwaf: WAFPolicy tooling.

Usage:
  meshwaf test -f DIR|FILE [-o text|json] [--expect VERDICT] [--gateway NS/NAME] CURL-ARGS...
  meshwaf test -f DIR|FILE [...] --requests FILE | --replay AUDIT-LOG
  meshwaf tune --audit FILE [-f DIR|FILE]

test evaluates one request against the policies of the manifests (WAFPolicy
objects and the Istio or Gateway API objects that give them hosts), as a
meshwaf agent would: same rule set, same compilation, same verdict. The
request is written as curl's arguments: the URL and -X, -H, -d/--data,
--data-raw, --data-binary (@file reads a file), -A. For example:

  meshwaf test -f examples/demo -H 'Host: shop.example.com' 'http://gateway/?id=1%27%20OR%201=1--'

It prints the verdict (blocked, detected, allowed, or unprotected when no
policy covers the host), the status a blocked request gets, the policy, the
anomaly score and the matched rules with their messages.

  -f, --file PATH      manifests: a folder (read as meshwaf-xds --manifests reads it) or one file
  -o, --output FORMAT  text (default) or json
  --expect VERDICT     exit 1 unless the verdict is VERDICT (blocked, detected, allowed, unprotected)
  --gateway NS/NAME    the gateway whose proxies send the request (default: the first with a
                       policy for the host, by name)
  --requests FILE      many requests, one per line, each written as curl's arguments (shell
                       quoting; # comments); one result per request
  --replay AUDIT-LOG   the requests an agent's audit log records (method, host, path and query:
                       the log holds no headers or body), each with the action it recorded

tune reads an agent's audit log and proposes the narrowest exclusions for
its detections: per policy, one exclusion per request path and matched
variable, listing the rules it excludes there. It prints YAML: the findings
and what replaying the log with the exclusions would change (from the
excluded rules' anomaly scores) as comments, then each policy. With -f, a
policy found in the manifests is printed whole, its exclusions followed by
the new ones, ready for kubectl apply after review; otherwise the
exclusions to add. Review before applying: the log holds real attacks too.

  --audit FILE         the agent's audit log (--audit-log), one JSON record per line
  -f, --file PATH      the manifests the policies come from

Exit status: 0 done (and as expected), 1 not the expected verdict, 2 usage or manifest errors.
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || slices.Contains([]string{"-h", "--help", "help"}, args[0]) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	commands := map[string]func([]string, io.Writer, io.Writer) (int, error){"test": test, "tune": tuneCommand}
	command, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "meshwaf: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	code, err := command(args[1:], stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "meshwaf %s: %v\n", args[0], err)
	}
	return code
}

func tuneCommand(args []string, stdout, _ io.Writer) (int, error) {
	var auditPath, manifests string
	for i := 0; i < len(args); i++ {
		if i+1 >= len(args) {
			return 2, fmt.Errorf("%s needs a value", args[i])
		}
		switch args[i] {
		case "--audit":
			auditPath = args[i+1]
		case "-f", "--file":
			manifests = args[i+1]
		default:
			return 2, fmt.Errorf("unknown option %s", args[i])
		}
		i++
	}
	if auditPath == "" {
		return 2, errors.New("--audit FILE is required")
	}
	f, err := os.Open(auditPath)
	if err != nil {
		return 2, err
	}
	defer f.Close()
	lines, err := tune.ReadLines(f)
	if err != nil {
		return 2, fmt.Errorf("%s: %w", auditPath, err)
	}
	specs := map[string]v1alpha1.WAFPolicySpec{}
	if manifests != "" {
		if specs, err = policytest.PolicySpecs(manifests); err != nil {
			return 2, err
		}
	}
	if err := tune.Write(stdout, lines, specs); err != nil {
		return 2, err
	}
	return 0, nil
}

// testFlags are meshwaf test's own options; everything else is curl's.
type testFlags struct {
	file, output, expect, gateway string
	requests, replay              string
	curl                          []string
}

func parseTestFlags(args []string) (testFlags, error) {
	f := testFlags{output: "text"}
	for i := 0; i < len(args); i++ {
		var target *string
		switch args[i] {
		case "-f", "--file":
			target = &f.file
		case "-o", "--output":
			target = &f.output
		case "--expect":
			target = &f.expect
		case "--gateway":
			target = &f.gateway
		case "--requests":
			target = &f.requests
		case "--replay":
			target = &f.replay
		default:
			f.curl = append(f.curl, args[i])
			continue
		}
		if i+1 >= len(args) {
			return f, fmt.Errorf("%s needs a value", args[i])
		}
		i++
		*target = args[i]
	}
	switch {
	case f.file == "":
		return f, errors.New("-f DIR|FILE is required")
	case f.requests != "" && f.replay != "":
		return f, errors.New("--requests and --replay: one list at a time")
	case (f.requests != "" || f.replay != "") && len(f.curl) > 0:
		return f, fmt.Errorf("a request list and a request on the command line (%q): one or the other", f.curl)
	case f.output != "text" && f.output != "json":
		return f, fmt.Errorf("-o %q: text or json", f.output)
	case f.expect != "" && !slices.Contains([]string{policytest.Blocked, policytest.Detected, policytest.Allowed, policytest.Unprotected}, f.expect):
		return f, fmt.Errorf("--expect %q: blocked, detected, allowed or unprotected", f.expect)
	}
	return f, nil
}

func test(args []string, stdout, stderr io.Writer) (int, error) {
	flags, err := parseTestFlags(args)
	if err != nil {
		return 2, err
	}
	list, err := requestList(flags)
	if err != nil {
		return 2, err
	}
	policies, err := policytest.Load(flags.file)
	if err != nil {
		return 2, err
	}
	for _, w := range policies.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	var outcomes []policytest.Result
	unexpected := 0
	for _, l := range list {
		eval, err := policies.Evaluate(l.Request, flags.gateway)
		if err != nil {
			return 2, err
		}
		r := policytest.NewResult(eval)
		if flags.expect != "" && r.Verdict != flags.expect {
			unexpected++
		}
		outcomes = append(outcomes, r)
	}
	if err := writeResults(stdout, flags, list, outcomes); err != nil {
		return 2, err
	}
	switch {
	case unexpected == 0:
		return 0, nil
	case len(list) == 1 && flags.requests == "" && flags.replay == "":
		return 1, fmt.Errorf("expected %s, got %s", flags.expect, outcomes[0].Verdict)
	default:
		return 1, fmt.Errorf("%d of %d requests not %s", unexpected, len(list), flags.expect)
	}
}

// requestList is the request of the command line, or the list a file
// gives.
func requestList(flags testFlags) ([]policytest.Listed, error) {
	if flags.requests == "" && flags.replay == "" {
		req, err := policytest.ParseCurl(flags.curl)
		if err != nil {
			return nil, err
		}
		return []policytest.Listed{{Request: req}}, nil
	}
	path, parse := flags.requests, policytest.ParseRequestFile
	if flags.replay != "" {
		path, parse = flags.replay, policytest.ParseAuditReplay
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	list, err := parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("%s: no requests", path)
	}
	return list, nil
}

// writeResults prints one result as it is, and a list one result per
// request with its line (and, replaying, the action the log recorded).
func writeResults(w io.Writer, flags testFlags, list []policytest.Listed, results []policytest.Result) error {
	single := flags.requests == "" && flags.replay == ""
	if flags.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if single {
			return enc.Encode(results[0])
		}
		type listed struct {
			Line int    `json:"line"`
			Was  string `json:"was,omitempty"`
			policytest.Result
		}
		out := make([]listed, len(list))
		for i := range list {
			out[i] = listed{Line: list[i].Line, Was: list[i].Was, Result: results[i]}
		}
		return enc.Encode(out)
	}
	if single {
		return results[0].WriteText(w)
	}
	for i, l := range list {
		was := ""
		if l.Was != "" {
			was = " (the log: " + l.Was + ")"
		}
		if _, err := fmt.Fprintf(w, "line %d: %s %s%s%s\n", l.Line, l.Request.Method, l.Request.Host(), l.Request.Target, was); err != nil {
			return err
		}
		if err := results[i].WriteText(w); err != nil {
			return err
		}
	}
	return nil
}
