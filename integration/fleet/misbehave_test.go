package fleet

import (
	"context"
	"testing"
	"time"
)

// Agents that never read, read slowly or reject a policy must not delay
// the others: the case of 20 of 500 agents never reading, plus a
// slow one and two that NACK. A NACK reaches the control plane's metrics
// and convergence, and an agent that reconnects with its versions is sent
// nothing it already holds.
func TestMisbehavingAgents(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	m, err := Generate(dir, Layout{Hosts: 200, Policies: 5, Gateways: 1, Probes: 1})
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr, _ := FreeAddr()
	httpAddr, _ := FreeAddr()
	cp, err := StartControlPlane(ctx, ControlPlaneConfig{
		Binary: controlPlaneBinary(t), Manifests: dir, GRPCAddr: grpcAddr, HTTPAddr: httpAddr,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			t.Error(err)
		}
	}()
	snap, err := cp.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	probe := m.Probes[0].Resource
	fleet := NewFleet(Options{
		Address: grpcAddr, Names: NewTable(m.Names...),
		Track: func(name string) bool { return name == probe }, Tag: ProbeTag,
	})
	defer fleet.Stop()
	good, _ := fleet.Add("good", 477, Behaviour{})
	slow, _ := fleet.Add("slow", 1, Behaviour{ReadDelay: 300 * time.Millisecond})
	fleet.Add("stuck", 20, Behaviour{NeverRead: true})
	nack, _ := fleet.Add("nack", 2, Behaviour{NACK: func(name string) bool { return name == probe }})
	expect := NewExpect(fleet.Options().Names, fleet.Options().Versions, snap.Versions)
	fleet.SetExpect(expect)
	fleet.Start()

	if _, err := WaitSynced(ctx, append(good, slow...), time.Time{}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	tag, _, err := m.Edit(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WaitTagged(ctx, good, probe, tag, 2*time.Second); err != nil {
		t.Fatalf("with agents that never read, read slowly or NACK around: %v", err)
	}
	events, err := WaitTagged(ctx, nack, probe, tag, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !events[0].Rejected {
		t.Errorf("the NACKing agent's event for %s is not marked rejected", probe)
	}
	waitMetric(t, cp, "meshwaf_xds_agent_nacks_total", 2)
	// The control plane tells them apart: 478 applied the edit, 2 rejected
	// it, 20 have not received it.
	want := PolicyAgents{Desired: 500, Applied: 478, Rejecting: 2, PendingCount: 20}
	deadline := time.Now().Add(5 * time.Second)
	for {
		conv, err := cp.Convergence(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := conv[PolicyName(m.Probes[0].Policy)]
		if got == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("convergence of %s = %+v, want %+v", PolicyName(m.Probes[0].Policy), got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The edit changed one host: resuming agents must get that and no more.
	snap, err = cp.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fleet.SetExpect(NewExpect(fleet.Options().Names, fleet.Options().Versions, snap.Versions))
	agent := good[0]
	before := agent.Counters()
	since := time.Now()
	agent.Reconnect()
	if _, err := WaitSynced(ctx, good[:1], since, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	got := agent.Counters().Sub(before)
	if got.Streams != 1 || got.Resources != 0 || got.Removed != 0 {
		t.Errorf("a resuming agent opened %d stream(s) and received %d resources and %d removals, want 1 stream and nothing else",
			got.Streams, got.Resources, got.Removed)
	}
}

// waitMetric waits until the control plane's metric is at least want.
func waitMetric(t *testing.T, cp *ControlPlane, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := cp.Metrics(context.Background())
		if err == nil && m[name] >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after 5 s, want ≥ %v (scrape error: %v)", name, m[name], want, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
