package fleet

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/meshwaf/meshwaf/agentapi"
)

// Expect is the set of resources every agent should hold, with their
// versions, as name and version ids of a fleet's tables.
type Expect struct {
	versions []uint32 // by name id; 0: not expected
	n        int
}

// NewExpect interns want (resource name → version) into the tables.
func NewExpect(names, versions *Table, want map[string]string) *Expect {
	e := &Expect{n: len(want)}
	for name, version := range want {
		id := names.ID(name)
		if int(id) >= len(e.versions) {
			e.versions = slices.Grow(e.versions, int(id)+1-len(e.versions))[:id+1]
		}
		e.versions[id] = versions.ID(version)
	}
	return e
}

func (e *Expect) version(name uint32) uint32 {
	if int(name) < len(e.versions) {
		return e.versions[name]
	}
	return 0
}

// apply folds one response into the agent's state and returns the ACK or
// NACK to send, and the indices into a.events of what it tracked.
func (a *Agent) apply(resp *wireResponse, now time.Time) (*discovery.DeltaDiscoveryRequest, []int) {
	c := &a.counters
	c.responses.Add(1)
	c.protoBytes.Add(int64(resp.size))
	resources := resp.resources
	c.resources.Add(int64(len(resources)))
	c.removed.Add(int64(len(resp.removed)))

	// Check outside the lock: it is most of the work of a full resync.
	var errs []error
	rejected := make([]bool, len(resources))
	names := make([]uint32, len(resources))
	versions := make([]uint32, len(resources))
	rawNames := make([][]byte, len(resources))
	rawVersions := make([][]byte, len(resources))
	for i, r := range resources {
		rawNames[i], rawVersions[i] = r.name, r.version
	}
	a.opts.Names.IDsOf(rawNames, names)
	a.opts.Versions.IDsOf(rawVersions, versions)
	tags := map[int]string{}
	for i, r := range resources {
		name := a.opts.Names.String(names[i])
		err := checkPolicy(r)
		if err != nil {
			c.invalid.Add(1)
		} else if a.behaviour.NACK != nil && a.behaviour.NACK(name) {
			err = errors.New("simulated rejection")
		}
		if err != nil {
			rejected[i] = true
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		if a.opts.Track != nil && a.opts.Track(name) {
			tags[i] = a.tag(r)
		}
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	var tracked []int
	for i := range resources {
		if tag, ok := tags[i]; ok && len(a.events) < maxEvents {
			tracked = append(tracked, len(a.events))
			a.events = append(a.events, Event{
				Name: a.opts.Names.String(names[i]), Version: a.opts.Versions.String(versions[i]),
				Tag: tag, Received: now, Rejected: rejected[i],
			})
		}
		if !rejected[i] {
			a.set(names[i], versions[i])
		}
	}
	for _, name := range resp.removed {
		a.set(a.opts.Names.ID(name), 0)
	}

	ack := &discovery.DeltaDiscoveryRequest{TypeUrl: agentapi.HostPolicyTypeURL, ResponseNonce: resp.nonce}
	if len(errs) > 0 {
		ack.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: errors.Join(errs...).Error()}
	}
	return ack, tracked
}

// tag decodes a tracked resource in full and labels its content.
func (a *Agent) tag(r wireResource) string {
	if a.opts.Tag == nil {
		return ""
	}
	hp := &agentapi.HostPolicy{}
	if err := proto.Unmarshal(r.body, hp); err != nil {
		return ""
	}
	return a.opts.Tag(hp)
}

// set records that name is held at version (0: removed). Caller holds mu.
func (a *Agent) set(name, version uint32) {
	if int(name) >= len(a.held) {
		if version == 0 {
			return
		}
		a.held = slices.Grow(a.held, int(name)+1-len(a.held))[:name+1]
	}
	old := a.held[name]
	if old == version {
		return
	}
	want := a.expect.version(name)
	switch {
	case old == 0:
		a.count++
	case version == 0:
		a.count--
	}
	if want == 0 {
		if old == 0 {
			a.unexpected++
		} else if version == 0 {
			a.unexpected--
		}
	} else {
		if old == want {
			a.matched--
		}
		if version == want {
			a.matched++
		}
	}
	a.held[name] = version
}

// sent records that ack went out at t.
func (a *Agent) sent(ack *discovery.DeltaDiscoveryRequest, tracked []int, t time.Time) {
	if ack.GetErrorDetail() != nil {
		a.counters.nacks.Add(1)
	} else {
		a.counters.acks.Add(1)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, i := range tracked {
		a.events[i].Acked = t
	}
	a.acked = true
	if a.syncedAt.IsZero() && a.converged() {
		a.syncedAt = t
	}
}

func (a *Agent) converged() bool {
	return a.matched == a.expect.n && a.unexpected == 0
}

// SetExpect replaces what the agent should hold. If it already holds
// exactly that and has ACKed on this stream, it counts as synced now.
func (a *Agent) SetExpect(e *Expect) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expect = e
	a.matched, a.unexpected = 0, 0
	for name, version := range a.held {
		if version == 0 {
			continue
		}
		switch want := e.version(uint32(name)); {
		case want == 0:
			a.unexpected++
		case want == version:
			a.matched++
		}
	}
	a.syncedAt = time.Time{}
	if a.acked && a.converged() {
		a.syncedAt = time.Now()
	}
}

// State is a reading of one agent.
type State struct {
	Node string
	// Held is the number of resources held; Missing and Wrong count the
	// expected ones absent or at another version; Unexpected the extra.
	Held, Missing, Wrong, Unexpected int
	// SyncedAt is zero until the agent, on its current stream, ACKed a
	// response that left it holding exactly what is expected.
	SyncedAt  time.Time
	LastError string
	Counters  Counters
}

// State reads the agent.
func (a *Agent) State() State {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := State{
		Node: a.node, Held: a.count, Unexpected: a.unexpected, SyncedAt: a.syncedAt,
		Counters: a.counters.load(),
	}
	st.Missing = a.expect.n - a.matched
	for name, version := range a.held {
		if want := a.expect.version(uint32(name)); version != 0 && want != 0 && version != want {
			st.Wrong++
		}
	}
	st.Missing -= st.Wrong
	if a.lastErr != nil {
		st.LastError = a.lastErr.Error()
	}
	return st
}

// Counters reads the agent's totals without taking its lock.
func (a *Agent) Counters() Counters { return a.counters.load() }

// Synced reports whether the agent is synced, and since when.
func (a *Agent) Synced() (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.syncedAt, !a.syncedAt.IsZero()
}

// Events returns the tracked events for name whose tag is tag.
func (a *Agent) Events(name, tag string) []Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Event
	for _, e := range a.events {
		if e.Name == name && e.Tag == tag {
			out = append(out, e)
		}
	}
	return out
}

func (s State) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: held %d, missing %d, wrong version %d, unexpected %d, streams %d, responses %d, acks %d, nacks %d",
		s.Node, s.Held, s.Missing, s.Wrong, s.Unexpected, s.Counters.Streams, s.Counters.Responses, s.Counters.ACKs, s.Counters.NACKs)
	if s.LastError != "" {
		fmt.Fprintf(&b, ", last error: %s", s.LastError)
	}
	return b.String()
}
