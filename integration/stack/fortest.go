package stack

import (
	"context"
	"os"
	"path/filepath"
	"sync"
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

// Builder builds cmd/xds and cmd/agent of the module at RepoRoot once for
// every test of a test binary, into a temporary folder Close removes.
type Builder struct {
	RepoRoot string

	once sync.Once
	dir  string
	bins Binaries
	err  error
}

// Binaries builds the programs at the first call and fails t if that
// failed.
func (b *Builder) Binaries(t testing.TB) *Binaries {
	t.Helper()
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "meshwaf-bin-"); b.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		b.bins, b.err = Build(ctx, b.RepoRoot, b.dir)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return &b.bins
}

// Close removes the built programs.
func (b *Builder) Close() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}
