package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A child logs to its file with the command line first, sees the extra
// environment and its working directory, and Stop ends it and every
// process it started.
func TestStartLogsAndStopEndsTheGroup(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "child.log")
	p, err := Start("child", logPath, "/bin/sh", Options{Env: []string{"GREETING=hello"}, Dir: dir},
		"-c", `echo "$GREETING from $(pwd)"; sleep 60 & echo $! > grandchild.pid; wait`)
	if err != nil {
		t.Fatal(err)
	}
	var grandchild int
	for deadline := time.Now().Add(5 * time.Second); grandchild == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(dir, "grandchild.pid")); err == nil && strings.HasSuffix(string(b), "\n") {
			grandchild = atoi(t, strings.TrimSpace(string(b)))
		}
	}
	if grandchild == 0 {
		t.Fatalf("the child did not start its own child; log:\n%s", Tail(logPath, 10))
	}
	if err := p.Exited(); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Errorf("stop: %v", err)
	}
	if p.Exited() == nil {
		t.Error("Exited reports nothing after Stop")
	}
	// The signal reaches the grandchild with its parent's, but it may take
	// a moment to act on it on a busy machine.
	for deadline := time.Now().Add(2 * time.Second); running(grandchild) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if running(grandchild) {
		t.Errorf("the grandchild %d still runs 2s after Stop", grandchild)
	}
	log := Tail(logPath, 10)
	if !strings.Contains(log, "/bin/sh") || !strings.Contains(log, "hello from "+dir) {
		t.Errorf("log lacks the command line or the child's output:\n%s", log)
	}
}

// running reports whether pid is alive: a killed process whose parent has
// gone may stay a zombie until init reaps it, which is not running.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a pid: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}
