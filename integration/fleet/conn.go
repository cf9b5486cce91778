package fleet

import (
	"context"
	"net"
	"sync/atomic"

	"google.golang.org/grpc/stats"
)

// Counters are an agent's running totals. The byte counts look at one
// response three ways: as the protobuf the control plane built
// (ProtoBytes), as gRPC framed it (WireBytes: messages with their 5-byte
// prefix, plus headers and trailers) and as the kernel carried it (TCPIn:
// everything, HTTP/2 framing, flow control and pings included).
type Counters struct {
	Streams      int64 // streams opened
	StreamErrors int64 // streams that ended with an error
	Responses    int64
	Resources    int64 // resources received (added or changed)
	Removed      int64 // resource names removed
	ACKs, NACKs  int64
	Invalid      int64 // resources that did not decode or whose body disagreed with their name
	ProtoBytes   int64 // sum of proto.Size of every DeltaDiscoveryResponse
	WireBytes    int64 // gRPC wire length of everything received
	TCPIn        int64 // bytes read from the connection
	TCPOut       int64 // bytes written to the connection
}

// Sub returns c - o, field by field: what happened between two readings.
func (c Counters) Sub(o Counters) Counters {
	return Counters{
		Streams: c.Streams - o.Streams, StreamErrors: c.StreamErrors - o.StreamErrors,
		Responses: c.Responses - o.Responses, Resources: c.Resources - o.Resources, Removed: c.Removed - o.Removed,
		ACKs: c.ACKs - o.ACKs, NACKs: c.NACKs - o.NACKs, Invalid: c.Invalid - o.Invalid,
		ProtoBytes: c.ProtoBytes - o.ProtoBytes, WireBytes: c.WireBytes - o.WireBytes,
		TCPIn: c.TCPIn - o.TCPIn, TCPOut: c.TCPOut - o.TCPOut,
	}
}

// counters is the atomic form of Counters, written by an agent's stream
// goroutine and gRPC's transport goroutines, read by the harness.
type counters struct {
	streams, streamErrors, responses, resources, removed atomic.Int64
	acks, nacks, invalid, protoBytes, wireBytes          atomic.Int64
	tcpIn, tcpOut                                        atomic.Int64
}

func (c *counters) load() Counters {
	return Counters{
		Streams: c.streams.Load(), StreamErrors: c.streamErrors.Load(),
		Responses: c.responses.Load(), Resources: c.resources.Load(), Removed: c.removed.Load(),
		ACKs: c.acks.Load(), NACKs: c.nacks.Load(), Invalid: c.invalid.Load(),
		ProtoBytes: c.protoBytes.Load(), WireBytes: c.wireBytes.Load(),
		TCPIn: c.tcpIn.Load(), TCPOut: c.tcpOut.Load(),
	}
}

// countingConn counts the bytes of one TCP connection.
type countingConn struct {
	net.Conn
	c *counters
}

func (cc countingConn) Read(p []byte) (int, error) {
	n, err := cc.Conn.Read(p)
	cc.c.tcpIn.Add(int64(n))
	return n, err
}

func (cc countingConn) Write(p []byte) (int, error) {
	n, err := cc.Conn.Write(p)
	cc.c.tcpOut.Add(int64(n))
	return n, err
}

// dialer returns a gRPC context dialer whose connections count into c.
func dialer(c *counters) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: conn, c: c}, nil
	}
}

// wireStats is a gRPC stats.Handler adding the wire length of everything
// received (messages, headers, trailers) to c.
type wireStats struct{ c *counters }

func (w wireStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (w wireStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (w wireStats) HandleConn(context.Context, stats.ConnStats)                       {}

func (w wireStats) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch s := s.(type) {
	case *stats.InPayload:
		w.c.wireBytes.Add(int64(s.WireLength))
	case *stats.InHeader:
		w.c.wireBytes.Add(int64(s.WireLength))
	case *stats.InTrailer:
		w.c.wireBytes.Add(int64(s.WireLength))
	}
}
