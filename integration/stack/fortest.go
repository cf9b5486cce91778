package stack

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/proc"
)

// StartForTest starts a stack for a test and stops it when the test ends.
// The run directory defaults to the test's temporary folder and the log
// function to the test's. When the test failed, the end of every log is
// printed, since the run directory usually goes with the test.
func StartForTest(t testing.TB, cfg Config) *Stack {
	t.Helper()
	if cfg.RunDir == "" {
		cfg.RunDir = t.TempDir()
	}
	if cfg.Logf == nil {
		cfg.Logf = t.Logf
	}
	start := time.Now()
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Logf("stack started in %s: %s", time.Since(start).Round(time.Millisecond), s.Describe())
	t.Cleanup(func() {
		if t.Failed() {
			logs := s.LogPaths()
			for _, log := range []struct {
				path  string
				lines int
			}{{logs.ControlPlane, 40}, {logs.Agent, 40}, {logs.Envoy, 40}, {logs.Audit, 5}} {
				t.Logf("---- %s (last %d lines)\n%s", filepath.Base(log.path), log.lines, proc.Tail(log.path, log.lines))
			}
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stop stack: %v", err)
		}
	})
	return s
}
