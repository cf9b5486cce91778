package feed

import (
	"cmp"
	"context"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// Config configures a Feed.
type Config struct {
	// TypeURL is the one resource type served.
	TypeURL string
	Logger  *slog.Logger
	// FirstRequestTimeout bounds the wait for a new stream's subscription
	// (default 10 s).
	FirstRequestTimeout time.Duration
	// ConcurrentFirstRequests bounds how many streams read and compare
	// their first request at once (default 4 × GOMAXPROCS). A reconnecting
	// agent lists every resource it holds there; after a control plane
	// restart the whole fleet does so at the same moment, and decoding
	// those lists all at once would take memory proportional to fleet size
	// times resource count.
	ConcurrentFirstRequests int
}

// Feed serves generations of resources to delta xDS streams.
type Feed struct {
	cfg     Config
	log     *slog.Logger
	current atomic.Pointer[Generation]
	// publishMu serialises Publish.
	publishMu sync.Mutex
	// firstSlots is the semaphore of ConcurrentFirstRequests.
	firstSlots chan struct{}
	counters   counters

	streamsMu sync.Mutex
	streams   map[*stream]struct{}
	nextID    atomic.Int64
}

// New returns a feed holding generation 0: no resources, never published.
func New(cfg Config) *Feed {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.FirstRequestTimeout == 0 {
		cfg.FirstRequestTimeout = 10 * time.Second
	}
	if cfg.ConcurrentFirstRequests == 0 {
		cfg.ConcurrentFirstRequests = 4 * runtime.GOMAXPROCS(0)
	}
	f := &Feed{
		cfg:        cfg,
		log:        cfg.Logger,
		firstSlots: make(chan struct{}, cfg.ConcurrentFirstRequests),
		streams:    map[*stream]struct{}{},
	}
	f.current.Store(emptyGeneration())
	return f
}

// Current is the newest generation.
func (f *Feed) Current() *Generation { return f.current.Load() }

// Publish makes resources the served state: each resource's encoding,
// deterministic so that equal content has equal bytes, by name. Only
// resources whose encoding changed, and removals, travel to subscribers;
// if nothing changed, no generation is made and the current one is
// returned. The feed keeps the bytes; the caller must not change them.
func (f *Feed) Publish(encoded map[string][]byte) *Generation {
	f.publishMu.Lock()
	defer f.publishMu.Unlock()
	prev := f.current.Load()
	g := prev.next(f.cfg.TypeURL, encoded)
	if g == nil {
		return prev
	}
	f.current.Store(g)
	close(prev.superseded)
	return g
}

// Stream is the server side of a delta xDS stream, as gRPC gives it.
type Stream interface {
	Context() context.Context
	SendMsg(m any) error
	RecvMsg(m any) error
	Recv() (*discovery.DeltaDiscoveryRequest, error)
}

// Serve runs one subscriber's stream until it ends. check is called with
// every request (including the first) and may refuse it; its error ends
// the stream.
func (f *Feed) Serve(ss Stream, check func(*discovery.DeltaDiscoveryRequest) error) error {
	s := &stream{feed: f, grpc: ss, check: check}
	return s.run()
}

// StreamStatus is what the feed knows about one subscriber's stream.
type StreamStatus struct {
	ID    int64     `json:"id"`
	Node  string    `json:"node"`
	Since time.Time `json:"since"`
	// Acked is the generation the subscriber confirmed: it holds every
	// resource as of Acked, except those in Rejected.
	Acked uint64 `json:"acked"`
	// Sent is the generation of the last response sent.
	Sent uint64 `json:"sent"`
	// Rejected maps each resource the subscriber refused, and still holds
	// an older version of, to its reason.
	Rejected map[string]string `json:"rejected,omitempty"`
	ACKs     int               `json:"acks"`
	NACKs    int               `json:"nacks"`
	// LastNACK is the subscriber's last rejection, whole.
	LastNACK string `json:"lastNack,omitempty"`
}

// Streams lists the open streams, by node and then age.
func (f *Feed) Streams() []StreamStatus {
	f.streamsMu.Lock()
	out := make([]StreamStatus, 0, len(f.streams))
	for s := range f.streams {
		out = append(out, s.snapshotStatus())
	}
	f.streamsMu.Unlock()
	slices.SortFunc(out, func(a, b StreamStatus) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), a.Since.Compare(b.Since), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// StreamCount is the number of open streams.
func (f *Feed) StreamCount() int {
	f.streamsMu.Lock()
	defer f.streamsMu.Unlock()
	return len(f.streams)
}

func (f *Feed) register(s *stream) {
	f.streamsMu.Lock()
	f.streams[s] = struct{}{}
	f.streamsMu.Unlock()
}

func (f *Feed) unregister(s *stream) {
	f.streamsMu.Lock()
	delete(f.streams, s)
	f.streamsMu.Unlock()
}

// encode builds the response that brings a subscriber to generation g.
func (f *Feed) encode(g *Generation, nonce string, resources []*discovery.Resource, removed []string) (*Encoded, error) {
	return Encode(&discovery.DeltaDiscoveryResponse{
		SystemVersionInfo: strconv.FormatUint(g.version, 10),
		TypeUrl:           f.cfg.TypeURL,
		Resources:         resources,
		RemovedResources:  removed,
		Nonce:             nonce,
	})
}
