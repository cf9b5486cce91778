package conformance

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	albedo "github.com/coreruleset/albedo/server"

	"github.com/meshwaf/meshwaf/integration/stack"

	"github.com/meshwaf/meshwaf/integration/crssuite"
)

func TestCRSOverExtAuthz(t *testing.T) { runCRS(t, extAuthz) }

func TestCRSOverExtProc(t *testing.T) { runCRS(t, extProc) }

// runCRS runs the whole suite over protocol p and fails on every failed
// test, on every ignore entry that no longer matches a failing test, and
// when the traffic did not go through p.
func runCRS(t *testing.T, p protocol) {
	ignores, err := loadIgnores(ignoreFile)
	if err != nil {
		t.Fatal(err)
	}
	suite, err := crssuite.Files()
	if err != nil {
		t.Fatal(err)
	}
	var filter *regexp.Regexp
	if *only != "" {
		if filter, err = regexp.Compile(*only); err != nil {
			t.Fatalf("-only: %v", err)
		}
	}

	s := startStack(t, p)
	var ftwOut bytes.Buffer
	r, err := newFTWRunner(runnerOptions{
		host: "127.0.0.1", port: s.Ports().Gateway, auditLog: s.LogPaths().Audit, out: &ftwOut,
	}, ignores.forProtocol(p))
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()

	res := suiteResult{protocol: p}
	start := time.Now()
	for _, f := range suite {
		for _, tc := range f.Test.Tests {
			id := tc.IdString()
			if filter != nil && !filter.MatchString(id) {
				continue
			}
			res.total++
			if p == extAuthz && inspectsResponses(f) {
				res.notRun++
				continue
			}
			o := r.run(f.Test, tc)
			res.outcomes = append(res.outcomes, o)
			switch {
			case !o.passed && o.ignore == nil:
				t.Errorf("%s (%s) failed: %s", id, f.Dir, o.detail)
			case o.passed && o.ignore != nil:
				t.Errorf("%s (%s) passes over %s but %s ignores it: remove it from the list", id, f.Dir, p, ignoreFile)
			case o.passesAsWritten:
				t.Errorf("%s (%s) passes over %s as written: remove its override from %s", id, f.Dir, p, ignoreFile)
			}
		}
		if err := s.Alive(); err != nil {
			t.Fatalf("a component died during %s: %v", f.Test.FileName, err)
		}
	}
	res.duration = time.Since(start)
	if *verbose {
		t.Logf("go-ftw output:\n%s", ftwOut.String())
	}
	t.Logf("%s: %d tests, %d passed (%d with an adjusted expectation), %d ignored, %d not run, %d failed in %s",
		p, res.total, res.passed(), res.overridden(), res.ignored(), res.notRun, len(res.failures()), res.duration.Round(time.Second))

	if filter == nil {
		checkIgnoresApply(t, suite, ignores, p)
		recordResult(res)
	}
	checkProtocolUsed(t, s, p)
}

// checkIgnoresApply fails for an ignore entry naming a test the suite does
// not have, so the list cannot silently outlive a CRS upgrade.
func checkIgnoresApply(t *testing.T, suite []crssuite.File, ignores ignoreList, p protocol) {
	t.Helper()
	exists := map[string]bool{}
	for _, f := range suite {
		for _, tc := range f.Test.Tests {
			exists[tc.IdString()] = true
		}
	}
	for id := range ignores.forProtocol(p) {
		if !exists[id] {
			t.Errorf("%s lists %s for %s, but the CRS suite has no such test", ignoreFile, id, p)
		}
	}
}

// checkProtocolUsed proves the requests went through the filter under
// test, using Envoy's own counters for it.
func checkProtocolUsed(t *testing.T, s *stack.Stack, p protocol) {
	t.Helper()
	stats, err := s.EnvoyStats(context.Background(), `^http\..*\.(ext_authz|ext_proc)\.`)
	if err != nil {
		t.Fatal(err)
	}
	used := map[protocol]uint64{}
	for name, v := range stats {
		switch {
		case strings.Contains(name, ".ext_authz."):
			used[extAuthz] += v
		case strings.Contains(name, ".ext_proc."):
			used[extProc] += v
		}
	}
	other := extProc
	if p == extProc {
		other = extAuthz
	}
	if used[p] == 0 || used[other] != 0 {
		t.Errorf("Envoy counters say %s %d, %s %d: the suite did not run over %s only", p, used[p], other, used[other], p)
	}
}

// startStack starts Envoy, the control plane and an agent with the suite's
// policy, with the CRS reference backend behind the gateway.
func startStack(t *testing.T, p protocol) *stack.Stack {
	t.Helper()
	var runDir string // the test's temporary folder
	if *keepRunDir != "" {
		runDir = filepath.Join(*keepRunDir, string(p))
	}
	return stack.StartForTest(t, stack.Config{
		Manifests: writeManifests(t, p),
		Binaries:  binaries(t),
		RepoRoot:  repoRoot,
		RunDir:    runDir,
		Backend:   albedo.Handler(),
		// The suite checks verdicts, not latency; a timeout would turn a
		// slow PL4 inspection into a false failure.
		AgentTimeout: 20 * time.Second,
		// Many CRS tests speak HTTP/1.0; Istio refuses it unless the
		// gateway opts in, which is a supported, documented setting.
		AcceptHTTP10: true,
	})
}
