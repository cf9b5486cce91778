package bench

import (
	"bytes"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// counters are kernel event counts per request, from perf stat.
type counters map[string]float64

// perfEvents are software events, which perf counts inside virtual
// machines too (hardware counters such as instructions often are not).
var perfEvents = []string{"context-switches", "cpu-migrations", "raw_syscalls:sys_enter"}

// countEvents starts counting perfEvents of pid; stop ends the count and
// divides it by the requests served meanwhile. Without a working perf,
// stop returns nil.
func countEvents(pid int) (stop func(requests int) counters) {
	cmd := exec.Command("perf", "stat", "-x", ",", "-e", strings.Join(perfEvents, ","), "-p", strconv.Itoa(pid))
	var out bytes.Buffer
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		return func(int) counters { return nil }
	}
	// perf attaches asynchronously; what it misses of the first requests
	// is well within the rounding of a per-request figure.
	time.Sleep(200 * time.Millisecond)
	return func(requests int) counters {
		_ = cmd.Process.Signal(syscall.SIGINT)
		// perf stat exits with 130 after SIGINT, having printed its counts.
		_ = cmd.Wait()
		if requests <= 0 {
			return nil
		}
		return parsePerfStat(out.String(), requests)
	}
}

// parsePerfStat reads perf stat's CSV output (value,unit,event,...).
func parsePerfStat(csv string, requests int) counters {
	out := counters{}
	for _, line := range strings.Split(csv, "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			out[f[2]] = v / float64(requests)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
