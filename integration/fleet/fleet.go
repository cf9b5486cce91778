package fleet

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Fleet runs many agents sharing Options.
type Fleet struct {
	opts Options

	mu      sync.Mutex
	agents  []*Agent
	started int // agents[:started] are running
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

// NewFleet returns an empty fleet; its tables are created if opts has none.
func NewFleet(opts Options) *Fleet {
	if opts.Names == nil {
		opts.Names = NewTable()
	}
	if opts.Versions == nil {
		opts.Versions = NewTable()
	}
	return &Fleet{opts: opts}
}

// Options are the fleet's shared options, tables included.
func (f *Fleet) Options() Options { return f.opts }

// Add creates n agents named "<prefix>-<i>" behaving as b; Start runs them.
func (f *Fleet) Add(prefix string, n int, b Behaviour) ([]*Agent, error) {
	out := make([]*Agent, 0, n)
	for i := range n {
		a, err := NewAgent(fmt.Sprintf("%s-%04d", prefix, i), f.opts, b)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	f.mu.Lock()
	f.agents = append(f.agents, out...)
	f.mu.Unlock()
	return out, nil
}

// Start runs every agent added since the last Start, all at once, until
// Stop.
func (f *Fleet) Start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cancel == nil {
		f.ctx, f.cancel = context.WithCancel(context.Background())
	}
	ctx := f.ctx
	for _, a := range f.agents[f.started:] {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			a.Run(ctx)
		}()
	}
	f.started = len(f.agents)
}

// Stop ends every agent's stream and connection and waits for them. A
// stopped agent cannot run again: start a new fleet instead.
func (f *Fleet) Stop() {
	f.mu.Lock()
	cancel := f.cancel
	f.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	f.wg.Wait()
}

// Agents lists the fleet's agents.
func (f *Fleet) Agents() []*Agent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Agent(nil), f.agents...)
}

// SetExpect tells every agent what it should hold.
func (f *Fleet) SetExpect(e *Expect) {
	for _, a := range f.Agents() {
		a.SetExpect(e)
	}
}

// SetResume says whether the agents' next streams resume.
func (f *Fleet) SetResume(resume bool) {
	for _, a := range f.Agents() {
		a.SetResume(resume)
	}
}

// ReadCounters reads the totals of agents.
func ReadCounters(agents []*Agent) []Counters {
	out := make([]Counters, len(agents))
	for i, a := range agents {
		out[i] = a.Counters()
	}
	return out
}

// pollEvery is how often waits look at the agents. The times reported come
// from the agents' own records, not from when a poll noticed them.
const pollEvery = 5 * time.Millisecond

// WaitSynced waits until every agent is synced, on a stream that synced
// at or after since, and returns when each became so. On timeout the
// error describes a few agents that are not.
func WaitSynced(ctx context.Context, agents []*Agent, since time.Time, timeout time.Duration) ([]time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := make([]time.Time, len(agents))
	pending := len(agents)
	for {
		for i, a := range agents {
			if !out[i].IsZero() {
				continue
			}
			if t, ok := a.Synced(); ok && !t.Before(since) {
				out[i] = t
				pending--
			}
		}
		if pending == 0 {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%d of %d agents not synced after %s:\n%s", pending, len(agents), timeout,
				describe(agents, func(i int) bool { return out[i].IsZero() }))
		case <-time.After(pollEvery):
		}
	}
}

// WaitTagged waits until every agent has ACKed (or NACKed) a version of
// name tagged tag, and returns the first such event of each.
func WaitTagged(ctx context.Context, agents []*Agent, name, tag string, timeout time.Duration) ([]Event, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := make([]Event, len(agents))
	pending := len(agents)
	for {
		for i, a := range agents {
			if !out[i].Acked.IsZero() {
				continue
			}
			for _, e := range a.Events(name, tag) {
				if !e.Acked.IsZero() {
					out[i] = e
					pending--
					break
				}
			}
		}
		if pending == 0 {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("%d of %d agents did not ACK %s with tag %q within %s:\n%s", pending, len(agents), name, tag, timeout,
				describe(agents, func(i int) bool { return out[i].Acked.IsZero() }))
		case <-time.After(pollEvery):
		}
	}
}

// describe lists up to five agents for which pick is true.
func describe(agents []*Agent, pick func(int) bool) string {
	var lines []string
	for i, a := range agents {
		if !pick(i) {
			continue
		}
		if len(lines) == 5 {
			lines = append(lines, "  …")
			break
		}
		lines = append(lines, "  "+a.State().String())
	}
	return strings.Join(lines, "\n")
}
