package feed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Wildcard is the subscription to every resource, the only one served.
const Wildcard = "*"

// errTooFarBehind ends a stream whose subscriber holds a generation the
// change log no longer reaches. The subscriber reconnects and lists what
// it holds, which is compared in full once.
var errTooFarBehind = status.Error(codes.Aborted,
	"meshwaf: this stream fell too far behind to be sent a diff; reconnect to resync")

// inflight is the one response a stream waits to have ACKed or NACKed.
type inflight struct {
	nonce   string
	version uint64
	// names is what the response updated or removed (shared, read only);
	// nil for a response that carried everything.
	names []string
	// all is set when the response carried gen's full state.
	all bool
	gen *Generation
}

// stream is one subscriber. Only its run goroutine writes pending and
// status, so it reads them without the lock; Streams reads status under
// it.
type stream struct {
	feed  *Feed
	grpc  Stream
	check func(*discovery.DeltaDiscoveryRequest) error

	pending *inflight

	mu     sync.Mutex
	status StreamStatus
}

func (s *stream) run() (err error) {
	ctx := s.grpc.Context()
	first, err := s.receiveFirst(ctx)
	if err != nil {
		s.feed.log.Info("subscription refused", "error", err)
		return err
	}
	s.status = StreamStatus{ID: s.feed.nextID.Add(1), Node: first.GetNode().GetId(), Since: time.Now()}
	s.feed.register(s)
	s.feed.log.Info("subscriber connected", "node", s.status.Node, "stream", s.status.ID,
		"holds", first.holds, "generation", s.feed.Current().Version())
	defer func() {
		s.feed.unregister(s)
		st := s.snapshotStatus()
		s.feed.log.Info("subscriber disconnected", "node", st.Node, "stream", st.ID, "acked", st.Acked, "error", err)
	}()

	g := s.feed.Current()
	err = s.resume(g, first)
	// The version list is compared: the next stream may read its own.
	<-s.feed.firstSlots
	if err != nil {
		return err
	}
	requests, recvErr := s.receiveRest(ctx)
	for {
		if s.pending == nil && s.status.Sent < g.version {
			if err := s.sendUpdate(g); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-recvErr:
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		case req := <-requests:
			if err := s.handle(req); err != nil {
				return err
			}
		case <-g.superseded:
			g = s.feed.Current()
		}
	}
}

// receiveFirst reads and checks the subscription. On success it returns
// holding one of the feed's first-request slots (see Config), which the
// caller releases once the request's version list has been compared.
func (s *stream) receiveFirst(ctx context.Context) (*firstRequest, error) {
	select {
	case s.feed.firstSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	type result struct {
		req *firstRequest
		err error
	}
	got := make(chan result, 1)
	go func() {
		var raw Raw
		if err := s.grpc.RecvMsg(&raw); err != nil {
			got <- result{err: err}
			return
		}
		req, err := parseFirstRequest(raw.Bytes)
		if err != nil {
			err = status.Error(codes.InvalidArgument, "meshwaf: "+err.Error())
		}
		got <- result{req, err}
	}()
	timeout := time.NewTimer(s.feed.cfg.FirstRequestTimeout)
	defer timeout.Stop()
	var r result
	select {
	case r = <-got:
	case <-timeout.C:
		// Returning ends the stream, which ends the receive above.
		r.err = status.Errorf(codes.DeadlineExceeded, "meshwaf: no subscription within %s", s.feed.cfg.FirstRequestTimeout)
	}
	if r.err == nil {
		r.err = s.validate(r.req.DeltaDiscoveryRequest)
	}
	if r.err != nil {
		<-s.feed.firstSlots
		return nil, r.err
	}
	return r.req, nil
}

// receiveRest forwards requests after the first to the run loop.
func (s *stream) receiveRest(ctx context.Context) (<-chan *discovery.DeltaDiscoveryRequest, <-chan error) {
	requests := make(chan *discovery.DeltaDiscoveryRequest)
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := s.grpc.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case requests <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	return requests, errc
}

// validate admits a request: the caller's check, the feed's type, and a
// wildcard subscription.
func (s *stream) validate(req *discovery.DeltaDiscoveryRequest) error {
	if err := s.check(req); err != nil {
		return err
	}
	if t := req.GetTypeUrl(); t != s.feed.cfg.TypeURL {
		return status.Errorf(codes.InvalidArgument, "meshwaf: this stream serves %s, not %q", s.feed.cfg.TypeURL, t)
	}
	for _, name := range req.GetResourceNamesSubscribe() {
		if name != Wildcard {
			return status.Errorf(codes.InvalidArgument, "meshwaf: subscribe to %q (every resource); %q alone is not served", Wildcard, name)
		}
	}
	if len(req.GetResourceNamesUnsubscribe()) > 0 {
		return status.Errorf(codes.InvalidArgument, "meshwaf: unsubscribing is not supported")
	}
	return nil
}

// resume answers a subscriber that reconnects holding resources with
// exactly what differs. The answer is sent even when nothing differs: an
// xDS client counts a subscription as initialised only once answered. A
// subscriber that holds nothing is left to the run loop, which sends it
// the shared full state.
func (s *stream) resume(g *Generation, first *firstRequest) error {
	if first.holds == 0 {
		return nil
	}
	var resources []*discovery.Resource
	var removed []string
	inSync, err := first.inSyncWith(g)
	if err == nil && !inSync {
		var held map[string]string
		if held, err = first.held(); err == nil {
			resources, removed = g.diffHeld(held)
		}
	}
	if err != nil {
		return status.Error(codes.InvalidArgument, "meshwaf: initial_resource_versions: "+err.Error())
	}
	nonce := fmt.Sprintf("resume-%d", g.version)
	names := make([]string, 0, len(resources)+len(removed))
	for _, r := range resources {
		names = append(names, r.GetName())
	}
	names = append(names, removed...)
	slices.Sort(names)
	msg, err := s.feed.encode(g, nonce, resources, removed)
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	return s.send(msg, &inflight{nonce: nonce, version: g.version, names: names, gen: g})
}

// sendUpdate sends what changed between the generation last sent and g:
// a response shared with every stream that held the same generation.
func (s *stream) sendUpdate(g *Generation) error {
	from := s.status.Sent
	nonce := fmt.Sprintf("%d-%d", from, g.version)
	r := g.shared(from, func() (*Encoded, []string, error) {
		if from == 0 {
			msg, err := s.feed.encode(g, nonce, g.all(), nil)
			return msg, nil, err
		}
		changed, ok := g.changedSince(from)
		if !ok {
			return nil, nil, errTooFarBehind
		}
		resources, removed := g.diff(changed)
		msg, err := s.feed.encode(g, nonce, resources, removed)
		return msg, changed, err
	})
	if errors.Is(r.err, errTooFarBehind) {
		s.feed.counters.resyncs.Add(1)
		s.feed.log.Warn("subscriber too far behind; closing its stream so it resyncs", "node", s.status.Node, "holds", from, "current", g.version)
		return r.err
	}
	if r.err != nil {
		return status.Error(codes.Internal, r.err.Error())
	}
	return s.send(r.msg, &inflight{nonce: nonce, version: g.version, names: r.names, all: from == 0, gen: g})
}

func (s *stream) send(msg *Encoded, p *inflight) error {
	if err := s.grpc.SendMsg(msg); err != nil {
		return err
	}
	s.feed.counters.responses.Add(1)
	s.feed.counters.bytes.Add(uint64(msg.Size()))
	s.pending = p
	s.update(func(st *StreamStatus) { st.Sent = p.version })
	return nil
}

// handle takes one request after the first: an ACK or NACK of the
// response in flight. A stale or unknown nonce (a response superseded on a
// previous stream, say) is ignored, as xDS prescribes.
func (s *stream) handle(req *discovery.DeltaDiscoveryRequest) error {
	if err := s.validate(req); err != nil {
		return err
	}
	p := s.pending
	if p == nil || req.GetResponseNonce() != p.nonce {
		return nil
	}
	s.pending = nil
	detail := req.GetErrorDetail()
	s.update(func(st *StreamStatus) {
		// A subscriber applies what it accepted of a response it NACKs, so
		// either way it now holds the response's generation, except what
		// it names as rejected.
		st.Acked = max(st.Acked, p.version)
		for name := range st.Rejected {
			if _, carried := slices.BinarySearch(p.names, name); p.all || carried {
				delete(st.Rejected, name)
			}
		}
		if detail == nil {
			st.ACKs++
			return
		}
		st.NACKs++
		st.LastNACK = detail.GetMessage()
		for name, reason := range rejectedNames(p, detail.GetMessage()) {
			if st.Rejected == nil {
				st.Rejected = map[string]string{}
			}
			st.Rejected[name] = reason
		}
	})
	if detail != nil {
		s.feed.counters.nacks.Add(1)
		s.feed.log.Warn("subscriber rejected resources", "node", s.status.Node, "version", p.version, "error", detail.GetMessage())
	}
	return nil
}

// rejectedNames reads which resources a NACK refuses. Subscribers name
// them one per line as "<resource name>: <reason>"; a NACK that names
// none of the response's resources is taken to refuse all of them.
func rejectedNames(p *inflight, message string) map[string]string {
	sent := p.names
	if p.all {
		sent = slices.Sorted(maps.Keys(p.gen.entries))
	}
	out := map[string]string{}
	for _, line := range strings.Split(message, "\n") {
		name, reason, ok := strings.Cut(line, ": ")
		if _, found := slices.BinarySearch(sent, name); ok && found {
			out[name] = reason
		}
	}
	if len(out) == 0 {
		for _, name := range sent {
			out[name] = message
		}
	}
	return out
}

func (s *stream) update(fn func(*StreamStatus)) {
	s.mu.Lock()
	fn(&s.status)
	s.mu.Unlock()
}

func (s *stream) snapshotStatus() StreamStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Rejected = maps.Clone(st.Rejected)
	return st
}
