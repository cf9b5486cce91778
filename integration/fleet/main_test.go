package fleet

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

var (
	binDir    string
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// TestMain checks that the harness itself leaves no goroutine behind: a
// leaking simulated agent would distort the next measurement.
func TestMain(m *testing.M) {
	var err error
	if binDir, err = os.MkdirTemp("", "meshwaf-fleet-bin-"); err != nil {
		panic(err)
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.RemoveAll(binDir)
	os.Exit(code)
}

// controlPlaneBinary builds cmd/xds once per test run.
func controlPlaneBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() { binary, buildErr = BuildControlPlane(context.Background(), binDir) })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}
