package conformance

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/meshwaf/meshwaf/integration/stack"
)

var (
	reportPath = flag.String("report", "", "write the markdown conformance report to this `path` after the run")
	only       = flag.String("only", "", "run only test cases whose id (\"942100-3\") matches this regular expression; no report is written")
	verbose    = flag.Bool("ftw.verbose", false, "show go-ftw's own per-test output")
	keepRunDir = flag.String("rundir", "", "keep every process's logs and the audit log under this `directory` (for debugging)")
	prebuilt   = flag.String("binaries", "", "use the xds and agent binaries in this `directory` instead of building them")
)

var (
	repoRoot string
	builder  stack.Builder

	resultsMu sync.Mutex
	results   = map[protocol]suiteResult{}

	// loadBefore is /proc/loadavg when the run started: durations on a
	// shared 2-core machine mean little without it.
	loadBefore string
)

func TestMain(m *testing.M) {
	flag.Parse()
	var err error
	if repoRoot, err = stack.RepoRoot("."); err != nil {
		panic(err)
	}
	builder.RepoRoot = repoRoot
	// go-ftw logs through zerolog's global logger and albedo through
	// slog's default one, a line per request each; the suite reports what
	// matters itself.
	zerolog.SetGlobalLevel(zerolog.ErrorLevel)
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))

	loadBefore = loadAverage()
	code := m.Run()
	builder.Close()
	if code == 0 && *reportPath != "" {
		if err := writeReport(*reportPath); err != nil {
			fmt.Fprintln(os.Stderr, "conformance report:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// binaries builds cmd/xds and cmd/agent once per test run, unless
// -binaries names built ones.
func binaries(t *testing.T) *stack.Binaries {
	if *prebuilt != "" {
		return &stack.Binaries{ControlPlane: filepath.Join(*prebuilt, "xds"), Agent: filepath.Join(*prebuilt, "agent")}
	}
	return builder.Binaries(t)
}

func recordResult(r suiteResult) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results[r.protocol] = r
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(raw)); len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}
