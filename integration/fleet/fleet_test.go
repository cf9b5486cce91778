package fleet

import (
	"context"
	"flag"
	"os"
	"testing"
	"time"
)

var (
	full       = flag.Bool("full", false, "run the benchmark at full scale (make bench-fleet): 1,000 agents, 10,000 hosts, 100 policies")
	reportPath = flag.String("report", "", "write the markdown report to this file")
	agentsN    = flag.Int("agents", 0, "override the number of agents")
	hostsN     = flag.Int("hosts", 0, "override the number of hosts")
	policiesN  = flag.Int("policies", 0, "override the number of policies")
	changesN   = flag.Int("changes", 0, "override the number of one-host changes")
	stuckN     = flag.Int("stuck", -1, "override the number of agents that never read")
	cpLog      = flag.String("cp-log", "", "copy the control plane's log to this file")
	changeWait = flag.Duration("change-timeout", 0, "override how long one change may take to reach every agent")
	noRestarts = flag.Bool("no-restarts", false, "skip the restart measurements")
)

// params are the smoke test's, or the benchmark's with -full, with flag
// overrides.
func params(t *testing.T) Params {
	p := Params{
		Layout: Layout{Hosts: 500, Policies: 10, Gateways: 2, Probes: 2},
		Agents: 50, Changes: 3, Restarts: true,
		SyncTimeout: 30 * time.Second, ChangeTimeout: 2 * time.Second,
	}
	if *full {
		p = Params{
			Layout: Layout{Hosts: 10_000, Policies: 100, Gateways: 4, Probes: 4},
			Agents: 1000, Changes: 20, Restarts: true,
			// Generous, so that a slow control plane still yields numbers
			// rather than a timeout.
			SyncTimeout: 5 * time.Minute, ChangeTimeout: 2 * time.Minute,
		}
	}
	for _, o := range []struct {
		flag int
		into *int
	}{{*agentsN, &p.Agents}, {*hostsN, &p.Layout.Hosts}, {*policiesN, &p.Layout.Policies}, {*changesN, &p.Changes}} {
		if o.flag > 0 {
			*o.into = o.flag
		}
	}
	if *changeWait > 0 {
		p.ChangeTimeout = *changeWait
	}
	if *noRestarts {
		p.Restarts = false
	}
	if *stuckN >= 0 {
		p.Stuck = *stuckN
	}
	p.Dir = t.TempDir()
	p.Logf = t.Logf
	return p
}

// TestFleet runs the whole scenario against the real meshwaf-xds: a fresh
// fleet syncs, one-host edits reach every agent, the fleet leaves without
// leaving goroutines behind, and agents resync after restarts. Small by
// default, so `make test` keeps the harness working; `make bench-fleet`
// runs it with -full and writes the report.
func TestFleet(t *testing.T) {
	p := params(t)
	ctx := context.Background()
	p.Binary = controlPlaneBinary(t)
	if *cpLog != "" {
		f, err := os.Create(*cpLog)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		p.ControlPlaneLog = f
	}
	r := Run(ctx, p)
	if *reportPath != "" {
		if err := WriteReportFile(*reportPath, r); err != nil {
			t.Error(err)
		}
	}
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if *full {
		return // the report says which goals were met; the run itself worked
	}
	if r.ChangeFailure != "" {
		t.Error(r.ChangeFailure)
	}
	for _, c := range r.Changes {
		if c.Traffic.MaxResources != 1 {
			t.Errorf("change %s: an agent received %d resources, want only the one that changed", c.Tag, c.Traffic.MaxResources)
		}
	}
	if r.Resume.Traffic.MaxResources != 0 {
		t.Errorf("agents resuming after a restart were sent %d resources, want none: nothing changed", r.Resume.Traffic.MaxResources)
	}
	if r.GoroutinesAfter > r.GoroutinesBefore+5 {
		t.Errorf("control plane goroutines: %d before the fleet connected, %d after it left", r.GoroutinesBefore, r.GoroutinesAfter)
	}
}
