package fleet

import (
	"slices"
	"time"
)

// Dist summarises a sample of durations.
type Dist struct {
	N             int
	P50, P99, Max time.Duration
}

// distOf computes nearest-rank percentiles, so p99 of 20 samples is the
// largest: with few samples, rounding down would flatter the tail.
func distOf(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return Dist{N: len(s), P50: rank(0.50), P99: rank(0.99), Max: s[len(s)-1]}
}

// ByteStats summarises bytes per agent.
type ByteStats struct {
	Mean float64
	Max  int64
}

func byteStatsOf(values []int64) ByteStats {
	var b ByteStats
	for _, v := range values {
		b.Mean += float64(v)
		b.Max = max(b.Max, v)
	}
	if len(values) > 0 {
		b.Mean /= float64(len(values))
	}
	return b
}

// Traffic is what a set of agents received in some interval, per agent.
type Traffic struct {
	// Resources and Responses per agent (max over agents).
	MaxResources, MaxResponses int64
	// Streams and StreamErrors are totals over the agents: a stream that
	// broke mid-resync makes its agent start over.
	Streams, StreamErrors int64
	// TCP is bytes read from the connection (everything the control plane
	// sent); Wire is gRPC's count of message, header and trailer bytes;
	// Proto the protobuf size of the responses; Out what the agent sent.
	TCP, Wire, Proto, Out ByteStats
}

func trafficOf(before, after []Counters) Traffic {
	var t Traffic
	tcp, wire, protoB, out := make([]int64, len(after)), make([]int64, len(after)), make([]int64, len(after)), make([]int64, len(after))
	for i := range after {
		d := after[i].Sub(before[i])
		t.MaxResources = max(t.MaxResources, d.Resources+d.Removed)
		t.MaxResponses = max(t.MaxResponses, d.Responses)
		t.Streams += d.Streams
		t.StreamErrors += d.StreamErrors
		tcp[i], wire[i], protoB[i], out[i] = d.TCPIn, d.WireBytes, d.ProtoBytes, d.TCPOut
	}
	t.TCP, t.Wire, t.Proto, t.Out = byteStatsOf(tcp), byteStatsOf(wire), byteStatsOf(protoB), byteStatsOf(out)
	return t
}
