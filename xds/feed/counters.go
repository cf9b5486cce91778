package feed

import "sync/atomic"

// counters are the feed's running totals, read by metrics.
type counters struct {
	responses, bytes, nacks, resyncs atomic.Uint64
}

// Counters is a copy of the feed's running totals.
type Counters struct {
	// Responses and Bytes count what was sent on every stream (a shared
	// response counts once per stream).
	Responses, Bytes uint64
	// NACKs counts rejected responses.
	NACKs uint64
	// Resyncs counts streams closed because they fell too far behind.
	Resyncs uint64
}

// Counters returns the running totals.
func (f *Feed) Counters() Counters {
	return Counters{
		Responses: f.counters.responses.Load(),
		Bytes:     f.counters.bytes.Load(),
		NACKs:     f.counters.nacks.Load(),
		Resyncs:   f.counters.resyncs.Load(),
	}
}
