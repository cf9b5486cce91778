package fleet

import (
	"slices"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshwaf/meshwaf/agentapi"
)

func TestLayoutResolvesToExactlyItsHosts(t *testing.T) {
	for name, l := range map[string]Layout{
		"benchmark":            {Hosts: 10_000, Policies: 100, Gateways: 4, Probes: 4},
		"smoke":                {Hosts: 500, Policies: 10, Gateways: 2, Probes: 2},
		"uneven remainder":     {Hosts: 103, Policies: 7, Gateways: 3, Probes: 1},
		"no one-host policies": {Hosts: 10, Policies: 3, Gateways: 1},
	} {
		t.Run(name, func(t *testing.T) {
			m, err := Generate(t.TempDir(), l)
			if err != nil {
				t.Fatal(err)
			}
			names := slices.Clone(m.Names)
			slices.Sort(names)
			if len(slices.Compact(names)) != l.Hosts {
				t.Errorf("%d distinct host policy names, want %d", len(slices.Compact(names)), l.Hosts)
			}
			if len(m.Probes) != l.Probes {
				t.Errorf("%d one-host policies, want %d", len(m.Probes), l.Probes)
			}
		})
	}
}

func TestLayoutRejectsImpossibleShapes(t *testing.T) {
	for name, l := range map[string]Layout{
		"no gateway":                {Hosts: 10, Policies: 2},
		"fewer hosts than policies": {Hosts: 3, Policies: 5, Gateways: 1},
		"probes leave no hosts":     {Hosts: 5, Policies: 3, Gateways: 1, Probes: 3},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Generate(t.TempDir(), l); err == nil {
				t.Errorf("layout %+v accepted", l)
			}
		})
	}
}

// The agent's bookkeeping decides when a resync is over, so it must count
// exactly: adds, changes, removals, rejections and a changed expectation.
func TestAgentStateAccounting(t *testing.T) {
	names, versions := NewTable("ns/gw/a", "ns/gw/b"), NewTable()
	a := &Agent{opts: Options{Names: names, Versions: versions}, expect: &Expect{},
		behaviour: Behaviour{NACK: func(name string) bool { return name == "ns/gw/bad" }}}
	a.SetExpect(NewExpect(names, versions, map[string]string{"ns/gw/a": "1", "ns/gw/b": "1"}))
	resp := func(removed []string, resources ...string) *discovery.DeltaDiscoveryResponse {
		r := &discovery.DeltaDiscoveryResponse{Nonce: "n", RemovedResources: removed}
		for i := 0; i < len(resources); i += 2 {
			gw, host, _ := agentapi.SplitResourceName(resources[i])
			body, _ := anypb.New(&agentapi.HostPolicy{Gateway: gw, Host: host})
			r.Resources = append(r.Resources, &discovery.Resource{Name: resources[i], Version: resources[i+1], Resource: body})
		}
		return r
	}
	step := func(r *discovery.DeltaDiscoveryResponse) *discovery.DeltaDiscoveryRequest {
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		scanned, err := scanResponse(b)
		if err != nil {
			t.Fatal(err)
		}
		if scanned.nonce != r.GetNonce() || len(scanned.resources) != len(r.GetResources()) ||
			!slices.Equal(scanned.removed, r.GetRemovedResources()) {
			t.Fatalf("scanned %+v from %v", scanned, r)
		}
		ack, tracked := a.apply(scanned, time.Now())
		a.sent(ack, tracked, time.Now())
		return ack
	}
	for _, tc := range []struct {
		desc                           string
		resp                           *discovery.DeltaDiscoveryResponse
		held, missing, wrong, unexpect int
		synced, nack                   bool
	}{
		{"first of two arrives", resp(nil, "ns/gw/a", "1"), 1, 1, 0, 0, false, false},
		{"second arrives at another version", resp(nil, "ns/gw/b", "2"), 2, 0, 1, 0, false, false},
		{"it is corrected", resp(nil, "ns/gw/b", "1"), 2, 0, 0, 0, true, false},
		{"a rejected one is not held", resp(nil, "ns/gw/bad", "1"), 2, 0, 0, 0, true, true},
		{"an extra one is unexpected", resp(nil, "ns/gw/c", "1"), 3, 0, 0, 1, true, false},
		{"removals count", resp([]string{"ns/gw/c", "ns/gw/a"}), 1, 1, 0, 0, true, false},
	} {
		ack := step(tc.resp)
		st := a.State()
		if st.Held != tc.held || st.Missing != tc.missing || st.Wrong != tc.wrong || st.Unexpected != tc.unexpect {
			t.Errorf("%s: %s", tc.desc, st)
		}
		if _, synced := a.Synced(); synced != tc.synced {
			t.Errorf("%s: synced %v, want %v", tc.desc, synced, tc.synced)
		}
		if (ack.GetErrorDetail() != nil) != tc.nack {
			t.Errorf("%s: NACK %v, want %v", tc.desc, ack.GetErrorDetail(), tc.nack)
		}
	}
	// A body that disagrees with its name is rejected, as the real agent does.
	bad := resp(nil, "ns/gw/a", "9")
	body, _ := anypb.New(&agentapi.HostPolicy{Gateway: "ns/gw", Host: "other"})
	bad.Resources[0].Resource = body
	if ack := step(bad); ack.GetErrorDetail() == nil || a.Counters().Invalid != 1 {
		t.Errorf("a resource whose body names another host was accepted (invalid %d)", a.Counters().Invalid)
	}
	if proto.Size(bad) == 0 || a.Counters().ProtoBytes == 0 {
		t.Error("response bytes not counted")
	}
}

func TestDistUsesNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 20; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	d := distOf(ds)
	if d.P50 != 10*time.Millisecond || d.P99 != 20*time.Millisecond || d.Max != 20*time.Millisecond {
		t.Errorf("distOf(1..20 ms) = %+v, want p50 10 ms, p99 and max 20 ms", d)
	}
}
