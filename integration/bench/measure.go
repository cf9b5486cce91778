package bench

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// processCPU is the CPU time a process's threads have run so far, in
// nanoseconds: the sum of the scheduler's run time of each thread
// (/proc/<pid>/task/<tid>/schedstat, first field). /proc/<pid>/stat's
// utime and stime would include threads that already exited, but count in
// 10 ms ticks, so a measurement of a few cheap requests (the smoke run)
// reads zero. The processes measured here (the agent and the in-process
// worker, Go; Envoy, C++) keep their threads while they serve, so nothing
// the measurement covers is lost with an exited thread.
func processCPU(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var sum time.Duration
	for _, task := range tasks {
		raw, err := os.ReadFile(dir + "/" + task.Name() + "/schedstat")
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // the thread ended after the listing
		}
		if err != nil {
			return 0, err
		}
		ran, _, _ := strings.Cut(string(raw), " ")
		ns, err := strconv.ParseInt(ran, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s/%s/schedstat: %q: %w", dir, task.Name(), raw, err)
		}
		sum += time.Duration(ns)
	}
	return sum, nil
}

// selfCPU is this process's CPU time, with getrusage's microsecond
// resolution.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// cpuMeter reads the CPU of a set of processes; pid 0 means this process.
type cpuMeter []int

func (m cpuMeter) read() ([]time.Duration, error) {
	out := make([]time.Duration, len(m))
	for i, pid := range m {
		var err error
		if pid == 0 {
			out[i], err = selfCPU()
		} else {
			out[i], err = processCPU(pid)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// latencies are per-request wall times.
type latencies []time.Duration

// percentile returns the q-th percentile (0 < q <= 1) by the nearest-rank
// method, which never interpolates a latency nobody saw.
func (l latencies) percentile(q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	rank := int(q*float64(len(s)) + 0.999999)
	rank = max(1, min(rank, len(s)))
	return s[rank-1]
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
