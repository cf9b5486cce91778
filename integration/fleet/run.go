package fleet

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Params are one run's parameters.
type Params struct {
	Layout Layout
	// Agents are well-behaved agents; every measurement is over them.
	Agents int
	// Stuck agents subscribe and never read; they exist to show whether
	// they delay or burden the others.
	Stuck int
	// Changes is the number of one-host edits measured.
	Changes int
	// Restarts measures resyncs after control plane restarts too.
	Restarts bool
	// SyncTimeout bounds each full resync; ChangeTimeout each edit.
	SyncTimeout, ChangeTimeout time.Duration
	// Dir is a scratch folder; Binary the meshwaf-xds to run.
	Dir, Binary string
	// ControlPlaneLog receives the control plane's stderr (optional).
	ControlPlaneLog io.Writer
	// Logf reports progress (optional).
	Logf func(format string, args ...any)
}

// Resync is one full resync of the fleet.
type Resync struct {
	Name string
	// All is from the start (agents launched, or control plane process
	// started) until the last agent ACKed everything; FromReady from the
	// control plane's /readyz instead (restarts only). PerAgent is each
	// agent's own time from the same start.
	All, FromReady time.Duration
	PerAgent       Dist
	Traffic        Traffic
	// CPU is the control plane's CPU seconds over the resync; PeakRSS its
	// highest resident set meanwhile.
	CPU     float64
	PeakRSS int64
	// HarnessCPU is what the simulated agents used meanwhile.
	HarnessCPU time.Duration
	// StreamError is one agent's last stream error, if any stream broke.
	StreamError string
}

// Change is one one-host edit.
type Change struct {
	Tag     string
	Written time.Time
	// All is from the file write until the last agent's ACK; PerAgent the
	// distribution over agents.
	All      time.Duration
	PerAgent Dist
	// Published is the control plane's "snapshot published" line for it:
	// Detect is write → rebuild start (polling and debounce), Build the
	// rebuild and hand-over, Push publish → last ACK.
	Published           bool
	Detect, Build, Push time.Duration
	Traffic             Traffic
}

// Result is everything one run measured.
type Result struct {
	Params  Params
	Started time.Time
	// Initial is the first full resync of a fresh fleet; Again the same
	// with a second fresh fleet; Resume after a restart with agents that
	// send initial_resource_versions; Full after a restart with agents
	// that do not.
	Initial, Again, Resume, Full *Resync
	Changes                      []Change
	// ChangeFailure says which change did not reach every agent within
	// ChangeTimeout (the changes stop there).
	ChangeFailure string
	// ChangeCPU is the control plane's CPU seconds over all changes;
	// ChangeHarnessCPU the simulated agents'.
	ChangeCPU        float64
	ChangeHarnessCPU time.Duration
	// SteadyRSS is the resident set with every agent connected and idle.
	SteadyRSS int64
	// Goroutines of the control plane before the fleet connected, with it
	// connected, and after it disconnected.
	GoroutinesBefore, GoroutinesConnected, GoroutinesAfter int
	// GoroutinesSettled is how long after the fleet left the count fell
	// back to GoroutinesBefore (zero if it never did within a minute).
	GoroutinesSettled time.Duration
	// PeakRSS is the highest resident set of any control plane process.
	PeakRSS int64
	// StartupCPU is the first process's CPU seconds before agents came.
	StartupCPU float64
	Warnings   map[string]int
	// Published is the number of snapshots the control planes published.
	Published int
	// ControlPlaneCPU is the CPU seconds of every control plane process;
	// HarnessCPU and HarnessPeakRSS are this process's (the simulated
	// agents'); MachineCPU is what the whole machine used during the run,
	// so MachineCPU-ControlPlaneCPU-HarnessCPU is other processes' noise.
	ControlPlaneCPU        float64
	HarnessCPU, MachineCPU time.Duration
	HarnessPeakRSS         int64
	Duration               time.Duration
	Machine                Machine
	Err                    error
}

// Run runs the scenario. It returns the result even on error (with Err
// set and the measurements made so far) so a report can say what failed.
func Run(ctx context.Context, p Params) *Result {
	r := &Result{Params: p, Started: time.Now(), Warnings: map[string]int{}, Machine: machine()}
	if p.Logf == nil {
		p.Logf = func(string, ...any) {}
	}
	cpu0, busy0 := selfCPU(), machineBusy()
	r.Err = (&run{Params: p, r: r}).do(ctx)
	r.HarnessCPU, r.MachineCPU, r.Duration = selfCPU()-cpu0, machineBusy()-busy0, time.Since(r.Started)
	r.HarnessPeakRSS = selfPeakRSS()
	return r
}

type run struct {
	Params
	r        *Result
	m        *Manifests
	grpc     string
	http     string
	cp       *ControlPlane
	expect   *Expect
	names    *Table
	versions *Table
}

func (x *run) do(ctx context.Context) (err error) {
	dir := filepath.Join(x.Dir, "manifests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if x.m, err = Generate(dir, x.Layout); err != nil {
		return err
	}
	if x.grpc, err = FreeAddr(); err != nil {
		return err
	}
	if x.http, err = FreeAddr(); err != nil {
		return err
	}
	if err := x.start(ctx); err != nil {
		return err
	}
	defer func() {
		if x.cp != nil {
			x.stop()
		}
	}()
	if err := x.checkSnapshot(ctx); err != nil {
		return err
	}
	before, err := x.cp.Metrics(ctx)
	if err != nil {
		return err
	}
	x.r.GoroutinesBefore, x.r.StartupCPU = int(before["go_goroutines"]), before["process_cpu_seconds_total"]

	fleet, agents, err := x.newFleet()
	if err != nil {
		return err
	}
	defer func() { fleet.Stop() }()
	x.Logf("starting %d agents (+%d that never read)", x.Agents, x.Stuck)
	if x.r.Initial, err = x.resync(ctx, "fresh agents connect", agents, startFleet(fleet)); err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // let the fleet go idle
	connected, err := x.cp.Metrics(ctx)
	if err != nil {
		return err
	}
	x.r.GoroutinesConnected, x.r.SteadyRSS = int(connected["go_goroutines"]), int64(connected["process_resident_memory_bytes"])

	if err := x.changes(ctx, agents); err != nil {
		return err
	}
	fleet.Stop()
	if x.r.GoroutinesAfter, x.r.GoroutinesSettled, err = x.settleGoroutines(ctx, x.r.GoroutinesBefore); err != nil {
		return err
	}
	if !x.Restarts {
		return nil
	}
	return x.restarts(ctx)
}

func (x *run) start(ctx context.Context) error {
	cp, err := StartControlPlane(ctx, ControlPlaneConfig{
		Binary: x.Binary, Manifests: x.m.Dir, GRPCAddr: x.grpc, HTTPAddr: x.http, Log: x.ControlPlaneLog,
	})
	if err != nil {
		return err
	}
	x.cp = cp
	return nil
}

// stop stops the control plane, folding its peak memory and log into the
// result.
func (x *run) stop() error {
	if m, err := x.cp.Metrics(context.Background()); err == nil {
		x.r.ControlPlaneCPU += m["process_cpu_seconds_total"]
	}
	_, lifetime := x.cp.PeakRSS()
	x.r.PeakRSS = max(x.r.PeakRSS, lifetime)
	err := x.cp.Stop()
	for k, v := range x.cp.Logs().Warnings() {
		x.r.Warnings[k] += v
	}
	x.r.Published += len(x.cp.Logs().Published())
	x.cp = nil
	return err
}

// checkSnapshot makes sure the layout resolved to exactly its host
// policies, and records what agents must hold.
func (x *run) checkSnapshot(ctx context.Context) error {
	snap, err := x.cp.Snapshot(ctx)
	if err != nil {
		return err
	}
	if len(snap.Problems) > 0 {
		return fmt.Errorf("the generated manifests have problems: %v", snap.Problems[:min(5, len(snap.Problems))])
	}
	got := slices.Sorted(maps.Keys(snap.Versions))
	want := slices.Sorted(slices.Values(x.m.Names))
	if !slices.Equal(got, want) {
		return fmt.Errorf("control plane serves %d host policies, the layout has %d (first served: %v)",
			len(got), len(want), got[:min(3, len(got))])
	}
	if x.names == nil {
		x.names, x.versions = NewTable(x.m.Names...), NewTable()
	}
	x.expect = NewExpect(x.names, x.versions, snap.Versions)
	return nil
}

func (x *run) newFleet() (*Fleet, []*Agent, error) {
	probes := map[string]bool{}
	for _, p := range x.m.Probes {
		probes[p.Resource] = true
	}
	f := NewFleet(Options{
		Address: x.grpc, Names: x.names, Versions: x.versions,
		Track: func(name string) bool { return probes[name] }, Tag: ProbeTag,
	})
	agents, err := f.Add("agent", x.Agents, Behaviour{})
	if err != nil {
		return nil, nil, err
	}
	if _, err := f.Add("stuck", x.Stuck, Behaviour{NeverRead: true}); err != nil {
		return nil, nil, err
	}
	f.SetExpect(x.expect)
	return f, agents, nil
}

// resync runs begin, which makes the agents connect (a fresh fleet
// starting, a control plane restarting) and returns when that started,
// and waits until every agent holds exactly what is expected.
func (x *run) resync(ctx context.Context, name string, agents []*Agent, begin func() (time.Time, error)) (*Resync, error) {
	cp, cpu0 := x.cp, 0.0
	if m, err := cp.Metrics(ctx); err == nil {
		cpu0 = m["process_cpu_seconds_total"]
	}
	before, harness0 := ReadCounters(agents), selfCPU()
	cp.ResetPeakRSS()
	start, err := begin()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if x.cp != cp {
		cpu0 = 0 // a new process: all its CPU counts
	}
	synced, err := WaitSynced(ctx, agents, start, x.SyncTimeout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	res := &Resync{Name: name, Traffic: trafficOf(before, ReadCounters(agents)), HarnessCPU: selfCPU() - harness0}
	per := make([]time.Duration, len(synced))
	for i, t := range synced {
		per[i] = t.Sub(start)
	}
	res.PerAgent = distOf(per)
	res.All = res.PerAgent.Max
	for _, a := range agents {
		if st := a.State(); st.LastError != "" && res.Traffic.StreamErrors > 0 {
			res.StreamError = st.Node + ": " + st.LastError
			break
		}
	}
	if x.cp != cp {
		res.FromReady = res.All - x.cp.Ready.Sub(start)
	}
	if m, err := x.cp.Metrics(ctx); err == nil {
		res.CPU = m["process_cpu_seconds_total"] - cpu0
	}
	res.PeakRSS, _ = x.cp.PeakRSS()
	x.Logf("%s: all %d agents synced in %s (p50 %s, %s after ready), %.0f TCP bytes per agent, %d streams (%d broke: %s), control plane CPU %.1f s, peak RSS %d MiB",
		name, len(agents), res.All.Round(time.Millisecond), res.PerAgent.P50.Round(time.Millisecond), res.FromReady.Round(time.Millisecond),
		res.Traffic.TCP.Mean, res.Traffic.Streams, res.Traffic.StreamErrors, res.StreamError, res.CPU, res.PeakRSS>>20)
	return res, nil
}

// startFleet is a resync's begin for a fresh fleet.
func startFleet(f *Fleet) func() (time.Time, error) {
	return func() (time.Time, error) {
		now := time.Now()
		f.Start()
		return now, nil
	}
}

// changes makes one-host edits one after another, each once the previous
// reached every agent, after a random pause so edits fall at every phase
// of the control plane's 250 ms folder poll.
func (x *run) changes(ctx context.Context, agents []*Agent) error {
	if len(x.m.Probes) == 0 || x.Changes == 0 {
		return nil
	}
	m0, err := x.cp.Metrics(ctx)
	if err != nil {
		return err
	}
	harness0 := selfCPU()
	for k := range x.Changes {
		time.Sleep(300*time.Millisecond + rand.N(500*time.Millisecond))
		probe := x.m.Probes[k%len(x.m.Probes)]
		before := ReadCounters(agents)
		tag, written, err := x.m.Edit(k % len(x.m.Probes))
		if err != nil {
			return err
		}
		events, err := WaitTagged(ctx, agents, probe.Resource, tag, x.ChangeTimeout)
		if err != nil {
			// The rest of the run (disconnect, restarts) still says
			// something, so record this and stop editing, since further
			// edits would queue behind this one.
			x.r.ChangeFailure = fmt.Sprintf("change %d: %v", k+1, err)
			x.Logf("%s", x.r.ChangeFailure)
			break
		}
		c := Change{Tag: tag, Written: written, Traffic: trafficOf(before, ReadCounters(agents))}
		per := make([]time.Duration, len(events))
		var last time.Time
		for i, e := range events {
			if e.Rejected {
				return fmt.Errorf("change %d: agent %s rejected it", k+1, agents[i].Node())
			}
			per[i] = e.Acked.Sub(written)
			if e.Acked.After(last) {
				last = e.Acked
			}
		}
		c.PerAgent, c.All = distOf(per), last.Sub(written)
		if pub, ok := x.publishedAfter(written); ok {
			c.Published = true
			c.Detect, c.Build, c.Push = pub.Time.Add(-pub.Took).Sub(written), pub.Took, last.Sub(pub.Time)
		}
		x.r.Changes = append(x.r.Changes, c)
		x.Logf("change %d (%s): all %d agents ACKed in %s (detect %s, build %s, push %s), max %d resources and %d TCP bytes per agent",
			k+1, probe.Resource, len(agents), c.All.Round(time.Millisecond), c.Detect.Round(time.Millisecond),
			c.Build.Round(time.Millisecond), c.Push.Round(time.Millisecond), c.Traffic.MaxResources, c.Traffic.TCP.Max)
	}
	m1, err := x.cp.Metrics(ctx)
	if err != nil {
		return err
	}
	x.r.ChangeCPU = m1["process_cpu_seconds_total"] - m0["process_cpu_seconds_total"]
	x.r.ChangeHarnessCPU = selfCPU() - harness0
	return nil
}

// publishedAfter waits a little for the "snapshot published" line after
// t: it is logged once the hand-over to every stream returned, which can
// be after the last agent ACKed.
func (x *run) publishedAfter(t time.Time) (Publish, bool) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if pub, ok := x.cp.Logs().PublishedAfter(t); ok || time.Now().After(deadline) {
			return pub, ok
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settleGoroutines waits (up to a minute) for the control plane's
// goroutines to fall back to want after the fleet left, and returns the
// last count and how long it took (zero if it never did).
func (x *run) settleGoroutines(ctx context.Context, want int) (int, time.Duration, error) {
	start := time.Now()
	for {
		m, err := x.cp.Metrics(ctx)
		if err != nil {
			return 0, 0, err
		}
		n, took := int(m["go_goroutines"]), time.Since(start)
		if n <= want || took > time.Minute {
			if n > want {
				took = 0
			}
			x.Logf("control plane goroutines: %d before the fleet, %d with it, %d after it left (settled in %s)",
				want, x.r.GoroutinesConnected, n, took.Round(time.Millisecond))
			return n, took, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// restarts measures a second fresh fleet, then two control plane restarts:
// one the agents resume from, one they do not.
func (x *run) restarts(ctx context.Context) error {
	// The edits changed what agents must hold.
	if err := x.checkSnapshotVersions(ctx); err != nil {
		return err
	}
	fleet, agents, err := x.newFleet()
	if err != nil {
		return err
	}
	defer fleet.Stop()
	if x.r.Again, err = x.resync(ctx, "fresh agents connect again", agents, startFleet(fleet)); err != nil {
		return err
	}
	restart := func() (time.Time, error) {
		if err := x.stop(); err != nil {
			return time.Time{}, err
		}
		if err := x.start(ctx); err != nil {
			return time.Time{}, err
		}
		return x.cp.Started, nil
	}
	fleet.SetResume(true)
	if x.r.Resume, err = x.resync(ctx, "control plane restart, agents resume", agents, restart); err != nil {
		return err
	}
	fleet.SetResume(false)
	x.r.Full, err = x.resync(ctx, "control plane restart, agents ask for everything", agents, restart)
	return err
}

func (x *run) checkSnapshotVersions(ctx context.Context) error {
	snap, err := x.cp.Snapshot(ctx)
	if err != nil {
		return err
	}
	if len(snap.Versions) != len(x.m.Names) {
		return fmt.Errorf("control plane serves %d host policies after the edits, want %d", len(snap.Versions), len(x.m.Names))
	}
	x.expect = NewExpect(x.names, x.versions, snap.Versions)
	return nil
}
