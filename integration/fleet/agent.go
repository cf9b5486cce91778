package fleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/xds/feed"
)

// Options are what every agent of a fleet shares.
type Options struct {
	// Address is the control plane's gRPC address (host:port).
	Address string
	// Names and Versions intern resource names and versions; nil means a
	// table private to the agent.
	Names, Versions *Table
	// Track says which resources get an Event per version received.
	// Recording every resource would cost a fleet as much memory as the
	// policies themselves, so only the ones a harness changes are tracked.
	Track func(name string) bool
	// Tag labels a tracked resource's content in its Event, so a harness
	// can tell which edit a version carries.
	Tag func(*agentapi.HostPolicy) string
	// DialOptions are appended to the agent's own (insecure, counting).
	DialOptions []grpc.DialOption
}

// Behaviour is how one agent misbehaves; the zero value is a well-behaved
// agent that reads, decodes and ACKs every response at once.
type Behaviour struct {
	// NeverRead agents subscribe and then never read: the control plane's
	// sends to them stall once the HTTP/2 flow-control window is full.
	NeverRead bool
	// ReadDelay is slept before reading each response but the first.
	ReadDelay time.Duration
	// NACK says which resources the agent rejects. Like the real agent it
	// keeps the previous version of those, applies the rest of the
	// response, and NACKs naming them in error_detail.
	NACK func(name string) bool
	// NoResume agents reconnect without initial_resource_versions, as a
	// restarted agent would, so the control plane must send everything.
	NoResume bool
}

// Event is the arrival of one version of a tracked resource.
type Event struct {
	Name, Version, Tag string
	Received, Acked    time.Time // Acked is when the ACK (or NACK) was sent
	Rejected           bool      // this agent NACKed it
}

// maxEvents bounds the memory a tracked agent can use on a long run.
const maxEvents = 4096

// Agent is one simulated meshwaf agent.
type Agent struct {
	node      string
	opts      Options
	behaviour Behaviour
	noResume  atomic.Bool
	conn      *grpc.ClientConn
	counters  counters

	mu sync.Mutex
	// held maps a name id to the version id held (0: not held).
	held   []uint32
	expect *Expect
	// count is the number of resources held; matched those at the
	// expected version; unexpected those the expectation lacks.
	count, matched, unexpected int
	events                     []Event
	// syncedAt is when, on the current stream, the agent first ACKed a
	// response leaving it with exactly the expected resources.
	syncedAt   time.Time
	acked      bool // the current stream has ACKed at least once
	lastErr    error
	stopStream context.CancelFunc
}

// NewAgent returns an agent with node id node; it connects on Run.
func NewAgent(node string, opts Options, b Behaviour) (*Agent, error) {
	if opts.Names == nil {
		opts.Names = NewTable()
	}
	if opts.Versions == nil {
		opts.Versions = NewTable()
	}
	a := &Agent{node: node, opts: opts, behaviour: b, expect: &Expect{}}
	a.noResume.Store(b.NoResume)
	dial := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dialer(&a.counters)),
		grpc.WithStatsHandler(wireStats{&a.counters}),
		// Responses arrive as raw bytes (feed.Raw) and are scanned in place
		// (wire.go).
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(feed.Codec())),
	}, opts.DialOptions...)
	conn, err := grpc.NewClient(opts.Address, dial...)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", node, err)
	}
	a.conn = conn
	return a, nil
}

// Node is the agent's node id.
func (a *Agent) Node() string { return a.node }

// Run keeps a stream open until ctx ends, reconnecting after an error with
// the real agent's backoff (0.5 s doubling to 5 s, upper-half jitter), and
// closes the connection on return.
func (a *Agent) Run(ctx context.Context) {
	defer a.conn.Close()
	ads := discovery.NewAggregatedDiscoveryServiceClient(a.conn)
	var b backoff
	for {
		received, err := a.session(ctx, ads)
		if ctx.Err() != nil {
			return
		}
		a.counters.streamErrors.Add(1)
		a.mu.Lock()
		a.lastErr = err
		a.mu.Unlock()
		if received {
			b.step = 0
		}
		t := time.NewTimer(b.next())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Reconnect ends the current stream; Run opens a new one after its backoff.
func (a *Agent) Reconnect() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopStream != nil {
		a.stopStream()
	}
}

// SetResume says whether the next streams send initial_resource_versions.
func (a *Agent) SetResume(resume bool) { a.noResume.Store(!resume) }

func (a *Agent) session(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient) (received bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	a.stopStream, a.syncedAt, a.acked = cancel, time.Time{}, false
	a.mu.Unlock()
	a.counters.streams.Add(1)

	stream, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		return false, fmt.Errorf("open stream: %w", err)
	}
	if err := stream.Send(a.subscribe()); err != nil {
		return false, fmt.Errorf("subscribe: %w", err)
	}
	if a.behaviour.NeverRead {
		<-ctx.Done()
		return false, ctx.Err()
	}
	for {
		if received && a.behaviour.ReadDelay > 0 {
			select {
			case <-ctx.Done():
				return received, ctx.Err()
			case <-time.After(a.behaviour.ReadDelay):
			}
		}
		var raw feed.Raw
		if err := stream.RecvMsg(&raw); err != nil {
			return received, err
		}
		received = true
		resp, err := scanResponse(raw.Bytes)
		if err != nil {
			return received, fmt.Errorf("response: %w", err)
		}
		ack, tracked := a.apply(resp, time.Now())
		if err := stream.Send(ack); err != nil {
			return received, fmt.Errorf("ack: %w", err)
		}
		a.sent(ack, tracked, time.Now())
	}
}

// subscribe is a stream's first request: wildcard, and unless NoResume the
// versions held, so the server sends only what changed meanwhile.
func (a *Agent) subscribe() *discovery.DeltaDiscoveryRequest {
	req := &discovery.DeltaDiscoveryRequest{
		Node:                   &corev3.Node{Id: a.node, Cluster: "meshwaf-agent", UserAgentName: "meshwaf-fleet"},
		TypeUrl:                agentapi.HostPolicyTypeURL,
		ResourceNamesSubscribe: []string{"*"},
	}
	if a.noResume.Load() {
		return req
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.count > 0 {
		req.InitialResourceVersions = make(map[string]string, a.count)
		for name, version := range a.held {
			if version != 0 {
				req.InitialResourceVersions[a.opts.Names.String(uint32(name))] = a.opts.Versions.String(version)
			}
		}
	}
	return req
}

// backoff mirrors the real agent's: it doubles from 0.5 s to 5 s and
// waits a random time in the upper half of the step.
type backoff struct{ step time.Duration }

func (b *backoff) next() time.Duration {
	if b.step == 0 {
		b.step = 500 * time.Millisecond
	} else {
		b.step = min(2*b.step, 5*time.Second)
	}
	half := b.step / 2
	return half + rand.N(half+1)
}
