package conformance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	schema "github.com/coreruleset/ftw-tests-schema/v2/types"
	"github.com/coreruleset/go-ftw/v2/config"
	"github.com/coreruleset/go-ftw/v2/ftwhttp"
	"github.com/coreruleset/go-ftw/v2/output"
	"github.com/coreruleset/go-ftw/v2/runner"
	"github.com/coreruleset/go-ftw/v2/test"
	"github.com/coreruleset/go-ftw/v2/waflog"
	"github.com/rs/zerolog"
	zlog "github.com/rs/zerolog/log"

	"github.com/meshwaf/meshwaf/integration/crssuite"
)

// inspectsResponses tells the files whose rules inspect the response.
// ext_authz never sees a response, so over ext_authz they are not run (and
// reported as such) rather than ignored one by one. RESPONSE-980 is the
// exception: its rules report the request's scores in the logging phase,
// which the agent runs over ext_authz too.
func inspectsResponses(f crssuite.File) bool {
	return strings.HasPrefix(f.Dir, "RESPONSE-") && f.Dir != "RESPONSE-980-CORRELATION"
}

// outcome is what happened to one test case.
type outcome struct {
	id       string
	passed   bool
	ignore   *ignoreEntry // set when ignored
	override *ignoreEntry // set when run with an adjusted expectation
	detail   string       // why it failed
	// passesAsWritten is set when an overridden test passes without its
	// override, which then is no longer needed.
	passesAsWritten bool
}

// suiteResult sums up one run of the suite over one protocol.
type suiteResult struct {
	protocol protocol
	total    int // test cases in the suite
	notRun   int // response tests over ext_authz
	outcomes []outcome
	duration time.Duration
}

func (r suiteResult) count(pred func(outcome) bool) int {
	n := 0
	for _, o := range r.outcomes {
		if pred(o) {
			n++
		}
	}
	return n
}

func (r suiteResult) passed() int {
	return r.count(func(o outcome) bool { return o.passed && o.ignore == nil })
}
func (r suiteResult) ignored() int { return r.count(func(o outcome) bool { return o.ignore != nil }) }
func (r suiteResult) overridden() int {
	return r.count(func(o outcome) bool { return o.passed && o.override != nil })
}
func (r suiteResult) failures() []outcome {
	var out []outcome
	for _, o := range r.outcomes {
		if !o.passed && o.ignore == nil {
			out = append(out, o)
		}
	}
	return out
}

// ftwRunner drives go-ftw one test case at a time. go-ftw's runner.Run
// aborts the whole run when a single request fails at the transport level
// (Envoy closing the connection on a malformed request, a marker not
// found), losing every result; running RunTest per case turns such an
// error into that case's failure and carries on.
type ftwRunner struct {
	rc      *runner.TestRunContext
	ignores map[string]ignoreEntry
	debug   bytes.Buffer // go-ftw's debug log of the current test case
}

// runnerOptions locate the gateway and the log go-ftw reads.
type runnerOptions struct {
	host     string
	port     int
	auditLog string
	out      io.Writer // go-ftw's own progress output
}

func newFTWRunner(o runnerOptions, ignores map[string]ignoreEntry) (*ftwRunner, error) {
	cfg := config.NewDefaultConfig()
	cfg.LogFile = o.auditLog
	cfg.LogMarkerHeaderName = markerHeader
	cfg.TestOverride.Overrides.DestAddr = &o.host
	cfg.TestOverride.Overrides.Port = &o.port
	rcfg := config.NewRunnerConfiguration(cfg)
	// Generous: a PL4 inspection of a large body on a busy 2-core machine
	// can take a while, and a timeout here would be a false failure.
	rcfg.ReadTimeout = 10 * time.Second
	rcfg.ConnectTimeout = 5 * time.Second

	logLines, err := waflog.NewFTWLogLines(rcfg)
	if err != nil {
		return nil, err
	}
	client, err := ftwhttp.NewClient(rcfg)
	if err != nil {
		return nil, err
	}
	r := &ftwRunner{
		rc: &runner.TestRunContext{
			RunnerConfig: rcfg,
			Output:       output.NewOutput(string(output.Plain), o.out),
			Stats:        runner.NewRunStats(),
			Client:       client,
			LogLines:     logLines,
		},
		ignores: ignores,
	}
	// go-ftw says why a check failed (the status it got, the ids it
	// missed) only in debug messages to zerolog's global logger; they are
	// captured per test case for the failure message.
	zlog.Logger = zerolog.New(&r.debug)
	zerolog.SetGlobalLevel(zerolog.DebugLevel)
	return r, nil
}

func (r *ftwRunner) close() error { return r.rc.LogLines.Cleanup() }

// run runs one test case of ft and reports its outcome. Ignored tests
// still run, and overridden ones run as written first, so that a test
// which starts passing (a newer Envoy, a fixed agent) is noticed and
// leaves ignored.yaml.
func (r *ftwRunner) run(ft *test.FTWTest, tc schema.Test) outcome {
	o := outcome{id: tc.IdString()}
	e, listed := r.ignores[o.id]
	switch {
	case listed && e.Output == nil:
		o.ignore = &e
	case listed:
		o.override = &e
		o.passesAsWritten, _ = r.runOnce(ft, tc)
		tc.Stages = slices.Clone(tc.Stages)
		for i := range tc.Stages {
			tc.Stages[i].Output = *e.Output
		}
	}
	o.passed, o.detail = r.runOnce(ft, tc)
	return o
}

// runOnce runs tc through go-ftw and says whether it passed, or why not.
func (r *ftwRunner) runOnce(ft *test.FTWTest, tc schema.Test) (passed bool, detail string) {
	one := *ft
	one.Tests = []schema.Test{tc}
	stats := r.rc.Stats
	before := len(stats.Success)
	r.debug.Reset()
	if err := runner.RunTest(r.rc, &one); err != nil {
		// A stage marked retry_once that fails twice comes back as this
		// error rather than a failed result.
		if err.Error() != "retry-once" {
			return false, "go-ftw: " + err.Error()
		}
	}
	if len(stats.Success) > before {
		return true, ""
	}
	return false, describeFailure(tc, stats.TriggeredRules[tc.IdString()], r.debug.String())
}

// describeFailure says what each stage expected and which rule ids the
// log had, the first thing to look at when a test fails.
func describeFailure(tc schema.Test, triggered [][]uint, debug string) string {
	var parts []string
	for i, st := range tc.Stages {
		var got []uint
		if i < len(triggered) {
			got = slices.Clone(triggered[i])
		}
		want := st.Output
		parts = append(parts, fmt.Sprintf("stage %d: expect_ids %v no_expect_ids %v status %v match_regex %q, log had %v",
			i+1, want.Log.ExpectIds, want.Log.NoExpectIds, want.Status, want.Log.MatchRegex, got))
	}
	for _, line := range strings.Split(debug, "\n") {
		var m struct{ Message string }
		if json.Unmarshal([]byte(line), &m) == nil && isVerdict(m.Message) {
			parts = append(parts, "go-ftw: "+m.Message)
		}
	}
	return strings.Join(parts, "; ")
}

// isVerdict picks go-ftw's debug messages that explain a failed check
// (status, response, ids, errors) from the chatter around them.
func isVerdict(msg string) bool {
	for _, prefix := range []string{"Failed to", "Unexpectedly", "Encountered", "Found more", "Expected"} {
		if strings.HasPrefix(msg, prefix) {
			return true
		}
	}
	return false
}

// describeOutput renders an expected output for the report.
func describeOutput(o schema.Output) string {
	var parts []string
	if o.Status != 0 {
		parts = append(parts, fmt.Sprintf("status %d", o.Status))
	}
	if len(o.Log.ExpectIds) > 0 {
		parts = append(parts, fmt.Sprintf("rule ids %v logged", o.Log.ExpectIds))
	}
	if len(o.Log.NoExpectIds) > 0 {
		parts = append(parts, fmt.Sprintf("rule ids %v not logged", o.Log.NoExpectIds))
	}
	if o.Log.MatchRegex != "" {
		parts = append(parts, fmt.Sprintf("a log line matching `%s`", o.Log.MatchRegex))
	}
	if o.Log.NoMatchRegex != "" {
		parts = append(parts, fmt.Sprintf("no log line matching `%s`", o.Log.NoMatchRegex))
	}
	return strings.Join(parts, ", ")
}
