package bench

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Pinning measures what exclusive cores give: (a) and (b) one at a time,
// each also with the measured process's threads pinned to one CPU and the
// load generator's to another, as the kubelet's static CPU manager gives a
// Guaranteed pod whole cores of its own. Pinned, the agent's threads and
// Coraza's working set stay on one core instead of following the
// scheduler between CPUs. The four take turns; it is a diagnostic shown
// next to the profiles, never part of a goal.
type Pinning struct {
	Scenario string
	Level    int32
	// InProcess and Agent are (a) and (b) as the goals measure them;
	// the Pinned ones the same with the pinning.
	InProcess, Agent, PinnedInProcess, PinnedAgent Measurement
}

// The CPUs of the pinned measurements: the measured process on one, the
// load generator on another.
const (
	measuredCPU  = 1
	generatorCPU = 0
)

func measurePinning(b Budget, t profileTarget) (*Pinning, error) {
	a, g := t.inProcess(batch{}), t.toAgent(1)
	modes := []*mode{
		{name: "(a)", batch: a, meter: cpuMeter{t.worker.pid()}, blocked: t.sc.Blocked},
		{name: "(b)", batch: g, meter: cpuMeter{t.agentPID}, blocked: t.sc.Blocked},
		{name: "(a) pinned", batch: pinnedDuring(a, t.worker.pid()), meter: cpuMeter{t.worker.pid()}, blocked: t.sc.Blocked},
		{name: "(b) pinned", batch: pinnedDuring(g, t.agentPID), meter: cpuMeter{t.agentPID}, blocked: t.sc.Blocked},
	}
	if err := measureInterleaved(modes, b); err != nil {
		return nil, fmt.Errorf("pinning: %w", err)
	}
	return &Pinning{Scenario: t.sc.Name, Level: t.level, InProcess: modes[0].result(), Agent: modes[1].result(),
		PinnedInProcess: modes[2].result(), PinnedAgent: modes[3].result()}, nil
}

// pinnedDuring runs each batch with pid's threads on measuredCPU and this
// process's (the load generator's) on generatorCPU, and gives both all
// their CPUs back after it, so that the modes taking turns with it run as
// they would alone.
func pinnedDuring(run batchFunc, pid int) batchFunc {
	return func(seq, k int) (latencies, int, error) {
		var all unix.CPUSet
		if err := unix.SchedGetaffinity(pid, &all); err != nil {
			return nil, 0, fmt.Errorf("affinity of %d: %w", pid, err)
		}
		var measured, generator unix.CPUSet
		measured.Set(measuredCPU)
		generator.Set(generatorCPU)
		if err := setAffinity(pid, &measured); err != nil {
			return nil, 0, err
		}
		if err := setAffinity(os.Getpid(), &generator); err != nil {
			return nil, 0, err
		}
		lat, blocked, err := run(seq, k)
		return lat, blocked, errors.Join(err, setAffinity(pid, &all), setAffinity(os.Getpid(), &all))
	}
}

// setAffinity sets the CPUs of every thread of a process (affinity is per
// thread; a thread created later inherits its creator's).
func setAffinity(pid int, set *unix.CPUSet) error {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("affinity of thread %d of %d: %w", tid, pid, err)
		}
	}
	return nil
}

func (rep *Report) writePinning(b *strings.Builder) {
	p := rep.Pinning
	if p == nil {
		return
	}
	a, g := p.InProcess.CPUPerRequest(0), p.Agent.CPUPerRequest(0)
	pa, pg := p.PinnedInProcess.CPUPerRequest(0), p.PinnedAgent.CPUPerRequest(0)
	fmt.Fprintf(b, "Exclusive cores (%s, PL%d; not part of any goal): (a) and (b) one at a time, and the same with the "+
		"measured process's threads pinned to CPU %d and the load generator's to CPU %d, as the kubelet's static CPU "+
		"manager gives a Guaranteed pod whole cores, taking turns in the same rounds.\n\n", p.Scenario, p.Level, measuredCPU, generatorCPU)
	b.WriteString("| | (a) in-process | (b) agent | (b) − (a) | (b)/(a) |\n|---|---:|---:|---:|---:|\n")
	fmt.Fprintf(b, "| as measured for the goals | %s | %s | %s | %.2f× |\n", ms(a), ms(g), ms(g-a), ratio(g, a))
	fmt.Fprintf(b, "| pinned | %s | %s | %s | %.2f× |\n\n", ms(pa), ms(pg), ms(pg-pa), ratio(pg, pa))
}
