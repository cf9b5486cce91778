package feed

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strings"
	"sync"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// entry is one resource as served: its wire form is built once at publish
// time and shared by every response that carries it.
type entry struct {
	resource *discovery.Resource
	// changedAt is the generation at which the content last changed.
	changedAt uint64
}

// change lists the names updated or removed by one generation.
type change struct {
	version uint64
	names   []string
}

// Generation is one published state of the feed. It never changes after
// publication; a newer generation supersedes it.
type Generation struct {
	version uint64
	entries map[string]*entry
	// log holds the changes of the most recent generations, oldest first,
	// ending with this one's. A subscriber that holds a generation older
	// than the log covers cannot be given a diff; it resyncs (stream.go).
	log []change
	// superseded is closed when a newer generation is published: the
	// broadcast every stream waits on.
	superseded chan struct{}

	// responses caches, by the generation a subscriber holds, the encoded
	// response that brings it here.
	mu        sync.Mutex
	responses map[uint64]*sharedResponse
}

// sharedResponse is built by the first stream that needs it; the others
// wait for it and send the same bytes.
type sharedResponse struct {
	once sync.Once
	msg  *Encoded
	// names lists what the response updates or removes, sorted; nil when
	// it carries the full state.
	names []string
	err   error
}

func emptyGeneration() *Generation {
	return &Generation{entries: map[string]*entry{}, superseded: make(chan struct{}), responses: map[uint64]*sharedResponse{}}
}

// Version is the generation's number; the first publication is 1.
func (g *Generation) Version() uint64 { return g.version }

// ChangedAt is the generation at which name's content last changed, or 0
// if the feed does not hold name.
func (g *Generation) ChangedAt(name string) uint64 {
	if e := g.entries[name]; e != nil {
		return e.changedAt
	}
	return 0
}

// ResourceVersion is the delta xDS version of name (a hash of its
// encoding), or "" if the feed does not hold name.
func (g *Generation) ResourceVersion(name string) string {
	if e := g.entries[name]; e != nil {
		return e.resource.GetVersion()
	}
	return ""
}

// Limits on the change log. A subscriber further behind than the log
// reaches is rare (it stopped reading for that many publications) and
// resyncs by reconnecting, which costs one full comparison.
const (
	maxLogGenerations = 256
	// maxLogNamesFactor bounds the names kept in the log to this many times
	// the resource count (plus a floor for small feeds).
	maxLogNamesFactor = 4
	minLogNames       = 4096
)

// next builds the generation that follows g with the given encoded
// resources (name → serialized message of typeURL). It returns nil if
// nothing changed.
func (g *Generation) next(typeURL string, encoded map[string][]byte) *Generation {
	version := g.version + 1
	entries := make(map[string]*entry, len(encoded))
	var changed []string
	for name, body := range encoded {
		hash := hashOf(body)
		if old := g.entries[name]; old != nil && old.resource.GetVersion() == hash {
			entries[name] = old
			continue
		}
		entries[name] = &entry{
			resource: &discovery.Resource{
				Name: name, Version: hash,
				Resource: &anypb.Any{TypeUrl: typeURL, Value: body},
			},
			changedAt: version,
		}
		changed = append(changed, name)
	}
	for name := range g.entries {
		if _, kept := entries[name]; !kept {
			changed = append(changed, name)
		}
	}
	// The first publication is a change even when empty: it is what fresh
	// subscribers wait for.
	if len(changed) == 0 && g.version > 0 {
		return nil
	}
	slices.Sort(changed)
	return &Generation{
		version:    version,
		entries:    entries,
		log:        trimLog(append(slices.Clone(g.log), change{version: version, names: changed}), len(entries)),
		superseded: make(chan struct{}),
		responses:  map[uint64]*sharedResponse{},
	}
}

// trimLog drops the oldest changes beyond the limits; the newest is kept
// whatever its size.
func trimLog(log []change, resources int) []change {
	budget := max(maxLogNamesFactor*resources, minLogNames)
	keep := len(log) - 1
	names := len(log[keep].names)
	for keep > 0 && len(log)-keep < maxLogGenerations && names+len(log[keep-1].names) <= budget {
		keep--
		names += len(log[keep].names)
	}
	return log[keep:]
}

// hashOf is a resource's version: the first 64 bits of the SHA-256 of its
// deterministic encoding, in hex, so versions are equal across control
// plane restarts and replicas. A version is only ever compared with another
// version of the same resource, where 64 bits make a collision negligible;
// every reconnecting agent lists one version per resource, so the full
// 256 bits would make that list (and every response) a quarter larger.
func hashOf(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:8])
}

// VersionOf is the version the feed gives a resource encoded as body.
func VersionOf(body []byte) string { return hashOf(body) }

// changedSince lists the names updated or removed after generation from,
// sorted; ok is false when the log no longer reaches back to from.
func (g *Generation) changedSince(from uint64) (names []string, ok bool) {
	if from >= g.version {
		return nil, true
	}
	if len(g.log) == 0 || g.log[0].version > from+1 {
		return nil, false
	}
	set := map[string]struct{}{}
	for _, c := range g.log {
		if c.version > from {
			for _, n := range c.names {
				set[n] = struct{}{}
			}
		}
	}
	return slices.Sorted(maps.Keys(set)), true
}

// diff splits names into what a subscriber must receive and what it must
// drop. A removal of a name the subscriber never held is harmless.
func (g *Generation) diff(names []string) (resources []*discovery.Resource, removed []string) {
	for _, name := range names {
		if e := g.entries[name]; e != nil {
			resources = append(resources, e.resource)
		} else {
			removed = append(removed, name)
		}
	}
	return resources, removed
}

// all lists every resource, sorted by name.
func (g *Generation) all() []*discovery.Resource {
	out := make([]*discovery.Resource, 0, len(g.entries))
	for _, name := range slices.Sorted(maps.Keys(g.entries)) {
		out = append(out, g.entries[name].resource)
	}
	return out
}

// diffHeld compares what a reconnecting subscriber says it holds with this
// generation. Only the differences are sorted: after a control plane
// restart every agent of the fleet comes through here at once, mostly in
// sync, so the cost per agent stays one pass over each side.
func (g *Generation) diffHeld(held map[string]string) (resources []*discovery.Resource, removed []string) {
	for name, e := range g.entries {
		if held[name] != e.resource.GetVersion() {
			resources = append(resources, e.resource)
		}
	}
	for name := range held {
		if _, ok := g.entries[name]; !ok {
			removed = append(removed, name)
		}
	}
	slices.SortFunc(resources, func(a, b *discovery.Resource) int { return strings.Compare(a.GetName(), b.GetName()) })
	slices.Sort(removed)
	return resources, removed
}

// shared returns the response from generation from (0: nothing held) to
// g, building it on first use.
func (g *Generation) shared(from uint64, build func() (*Encoded, []string, error)) *sharedResponse {
	g.mu.Lock()
	r := g.responses[from]
	if r == nil {
		r = &sharedResponse{}
		g.responses[from] = r
	}
	g.mu.Unlock()
	r.once.Do(func() { r.msg, r.names, r.err = build() })
	return r
}
