package feed

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"go.uber.org/goleak"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Resources in these tests are StringValues; the type URL is only a label.
const thingType = "type.googleapis.com/google.protobuf.StringValue"

type service struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	feed *Feed
}

func (s service) DeltaAggregatedResources(stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return s.feed.Serve(stream, func(*discovery.DeltaDiscoveryRequest) error { return nil })
}

// serve runs f on a real gRPC server over loopback and returns a client.
func serve(t *testing.T, f *Feed) discovery.AggregatedDiscoveryServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(Codec()))
	discovery.RegisterAggregatedDiscoveryServiceServer(srv, service{feed: f})
	go srv.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		srv.Stop()
	})
	return discovery.NewAggregatedDiscoveryServiceClient(conn)
}

// things encodes name, content pairs as StringValues.
func things(kv ...string) map[string][]byte {
	out := map[string][]byte{}
	for i := 0; i+1 < len(kv); i += 2 {
		b, err := proto.Marshal(wrapperspb.String(kv[i+1]))
		if err != nil {
			panic(err)
		}
		out[kv[i]] = b
	}
	return out
}

type subscriber struct {
	t      *testing.T
	stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
}

func subscribe(t *testing.T, client discovery.AggregatedDiscoveryServiceClient, node string, held map[string]string) *subscriber {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{
		Node: &corev3.Node{Id: node}, TypeUrl: thingType,
		ResourceNamesSubscribe: []string{Wildcard}, InitialResourceVersions: held,
	}); err != nil {
		t.Fatal(err)
	}
	return &subscriber{t: t, stream: stream}
}

// recv returns the next response, failing the test after 5 s.
func (s *subscriber) recv() *discovery.DeltaDiscoveryResponse {
	s.t.Helper()
	type result struct {
		resp *discovery.DeltaDiscoveryResponse
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := s.stream.Recv()
		got <- result{resp, err}
	}()
	select {
	case r := <-got:
		if r.err != nil {
			s.t.Fatalf("recv: %v", r.err)
		}
		return r.resp
	case <-time.After(5 * time.Second):
		s.t.Fatal("no response within 5s")
		return nil
	}
}

func (s *subscriber) ack(resp *discovery.DeltaDiscoveryResponse, nackMessage string) {
	s.t.Helper()
	req := &discovery.DeltaDiscoveryRequest{TypeUrl: thingType, ResponseNonce: resp.GetNonce()}
	if nackMessage != "" {
		req.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: nackMessage}
	}
	if err := s.stream.Send(req); err != nil {
		s.t.Fatal(err)
	}
}

func resourceNames(resp *discovery.DeltaDiscoveryResponse) []string {
	out := []string{}
	for _, r := range resp.GetResources() {
		out = append(out, r.GetName())
	}
	return out
}

// waitStatus polls the feed's only stream until cond holds.
func waitStatus(t *testing.T, f *Feed, cond func(StreamStatus) bool) StreamStatus {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st := f.Streams(); len(st) == 1 && cond(st[0]) {
			return st[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream status never met the condition: %+v", f.Streams())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFreshSubscribersShareOneEncodedResponse(t *testing.T) {
	f := New(Config{TypeURL: thingType})
	g := f.Publish(things("a", "1", "b", "1", "c", "1"))
	client := serve(t, f)
	var nonces []string
	for i := range 3 {
		resp := subscribe(t, client, fmt.Sprint("agent-", i), nil).recv()
		if got := resourceNames(resp); !slices.Equal(got, []string{"a", "b", "c"}) {
			t.Fatalf("fresh subscriber got %v, want a b c", got)
		}
		if resp.GetSystemVersionInfo() != "1" || resp.GetTypeUrl() != thingType {
			t.Fatalf("system version %q type %q", resp.GetSystemVersionInfo(), resp.GetTypeUrl())
		}
		nonces = append(nonces, resp.GetNonce())
	}
	if nonces[0] != nonces[1] || nonces[1] != nonces[2] {
		t.Fatalf("nonces %v: the same response should have been shared", nonces)
	}
	if n := len(g.responses); n != 1 {
		t.Fatalf("generation built %d responses for 3 fresh subscribers, want 1", n)
	}
	if c := f.Counters(); c.Responses != 3 {
		t.Fatalf("counted %d responses, want 3", c.Responses)
	}
}

// A subscriber that has not answered gets nothing more; once it does, one
// response carries everything that changed meanwhile.
func TestOneResponseInFlightCarriesEverythingSince(t *testing.T) {
	f := New(Config{TypeURL: thingType})
	f.Publish(things("a", "1", "b", "1"))
	sub := subscribe(t, serve(t, f), "agent", nil)
	first := sub.recv()

	f.Publish(things("a", "2", "b", "1"))
	f.Publish(things("a", "2", "c", "1"))
	waitStatus(t, f, func(st StreamStatus) bool { return st.Sent == 1 && st.Acked == 0 })

	sub.ack(first, "")
	next := sub.recv()
	if got := resourceNames(next); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("merged update carries %v, want a c", got)
	}
	if got := next.GetRemovedResources(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("merged update removes %v, want b", got)
	}
	if next.GetSystemVersionInfo() != "3" {
		t.Fatalf("merged update is for generation %s, want 3", next.GetSystemVersionInfo())
	}
	sub.ack(next, "")
	st := waitStatus(t, f, func(st StreamStatus) bool { return st.Acked == 3 })
	if st.ACKs != 2 || st.Node != "agent" {
		t.Fatalf("status %+v, want 2 ACKs from agent", st)
	}
}

func TestStaleNonceIsIgnored(t *testing.T) {
	f := New(Config{TypeURL: thingType})
	f.Publish(things("a", "1"))
	sub := subscribe(t, serve(t, f), "agent", nil)
	resp := sub.recv()
	sub.ack(&discovery.DeltaDiscoveryResponse{Nonce: "0-1-from-an-older-stream"}, "")
	time.Sleep(50 * time.Millisecond)
	if st := waitStatus(t, f, func(StreamStatus) bool { return true }); st.Acked != 0 || st.ACKs != 0 {
		t.Fatalf("a stale nonce was taken as an ACK: %+v", st)
	}
	sub.ack(resp, "")
	waitStatus(t, f, func(st StreamStatus) bool { return st.Acked == 1 && st.ACKs == 1 })
}

func TestResumeSendsOnlyTheDifference(t *testing.T) {
	f := New(Config{TypeURL: thingType})
	g := f.Publish(things("a", "1", "b", "1"))
	client := serve(t, f)

	t.Run("in sync: an empty answer", func(t *testing.T) {
		sub := subscribe(t, client, "agent", map[string]string{"a": g.ResourceVersion("a"), "b": g.ResourceVersion("b")})
		resp := sub.recv()
		if len(resp.GetResources())+len(resp.GetRemovedResources()) != 0 || resp.GetSystemVersionInfo() != "1" {
			t.Fatalf("an agent in sync was sent %v", resp)
		}
		sub.ack(resp, "")
		waitStatus(t, f, func(st StreamStatus) bool { return st.Acked == 1 })
	})
	waitCount(t, f, 0)
	t.Run("one stale and one gone", func(t *testing.T) {
		sub := subscribe(t, client, "agent", map[string]string{"a": "stale", "b": g.ResourceVersion("b"), "gone": "x"})
		resp := sub.recv()
		if got := resourceNames(resp); !slices.Equal(got, []string{"a"}) {
			t.Fatalf("resume sends %v, want a", got)
		}
		if got := resp.GetRemovedResources(); !slices.Equal(got, []string{"gone"}) {
			t.Fatalf("resume removes %v, want gone", got)
		}
		sub.ack(resp, "")
		waitStatus(t, f, func(st StreamStatus) bool { return st.Acked == 1 })
	})
}

func waitCount(t *testing.T, f *Feed, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.StreamCount() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open, want %d", f.StreamCount(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A NACK names what it refuses; the subscriber holds the rest, and the
// refusal stands until a later response carries that resource again.
func TestNACKRecordsRejectedResources(t *testing.T) {
	f := New(Config{TypeURL: thingType})
	f.Publish(things("a", "1", "b", "1"))
	sub := subscribe(t, serve(t, f), "agent", nil)
	sub.ack(sub.recv(), "a: does not compile")
	st := waitStatus(t, f, func(st StreamStatus) bool { return st.NACKs == 1 })
	if st.Acked != 1 || len(st.Rejected) != 1 || st.Rejected["a"] != "does not compile" {
		t.Fatalf("after the NACK: %+v, want generation 1 held with a rejected", st)
	}
	if c := f.Counters(); c.NACKs != 1 {
		t.Fatalf("counted %d NACKs, want 1", c.NACKs)
	}

	f.Publish(things("a", "1", "b", "2"))
	resp := sub.recv()
	sub.ack(resp, "")
	st = waitStatus(t, f, func(st StreamStatus) bool { return st.Acked == 2 })
	if st.Rejected["a"] == "" {
		t.Fatal("an ACK of a response without a cleared the rejection of a")
	}
	f.Publish(things("a", "2", "b", "2"))
	sub.ack(sub.recv(), "")
	st = waitStatus(t, f, func(st StreamStatus) bool { return st.Acked == 3 })
	if len(st.Rejected) != 0 {
		t.Fatalf("a was accepted again but is still rejected: %+v", st.Rejected)
	}

	f.Publish(things("a", "3", "b", "3"))
	sub.ack(sub.recv(), "something went wrong")
	st = waitStatus(t, f, func(st StreamStatus) bool { return st.NACKs == 2 })
	if len(st.Rejected) != 2 {
		t.Fatalf("a NACK naming nothing should reject everything it answered, got %v", st.Rejected)
	}
}

func TestTooFarBehindResyncs(t *testing.T) {
	f := New(Config{TypeURL: thingType})
	f.Publish(things("a", "0"))
	sub := subscribe(t, serve(t, f), "agent", nil)
	first := sub.recv()
	for i := range maxLogGenerations + 1 {
		f.Publish(things("a", fmt.Sprint(i+1)))
	}
	sub.ack(first, "")
	_, err := sub.stream.Recv()
	if status.Code(err) != codes.Aborted {
		t.Fatalf("stream ended with %v, want Aborted", err)
	}
	if c := f.Counters(); c.Resyncs != 1 {
		t.Fatalf("counted %d resyncs, want 1", c.Resyncs)
	}
}

func TestBadSubscriptionsAreRefused(t *testing.T) {
	f := New(Config{TypeURL: thingType, FirstRequestTimeout: 100 * time.Millisecond})
	f.Publish(things("a", "1"))
	client := serve(t, f)
	tests := map[string]struct {
		req  *discovery.DeltaDiscoveryRequest
		want codes.Code
	}{
		"named resources": {
			req:  &discovery.DeltaDiscoveryRequest{TypeUrl: thingType, ResourceNamesSubscribe: []string{"a"}},
			want: codes.InvalidArgument,
		},
		"another type": {
			req:  &discovery.DeltaDiscoveryRequest{TypeUrl: "type.googleapis.com/other"},
			want: codes.InvalidArgument,
		},
		"no subscription in time": {want: codes.DeadlineExceeded},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stream, err := client.DeltaAggregatedResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if tc.req != nil {
				if err := stream.Send(tc.req); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := stream.Recv(); status.Code(err) != tc.want {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
		})
	}
	waitCount(t, f, 0)
}

// An agent that reconnects and, on its new stream, still answers the nonce
// of a response from its old stream is not taken to have ACKed anything:
// it gets its resume response and ACKs that.
func TestReconnectWithStaleNonce(t *testing.T) {
	f := New(Config{TypeURL: thingType})
	g := f.Publish(things("a", "1", "b", "1"))
	client := serve(t, f)
	old := subscribe(t, client, "agent", nil)
	stale := old.recv()
	old.stream.CloseSend()
	waitCount(t, f, 0)

	f.Publish(things("a", "2", "b", "1"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sub := &subscriber{t: t, stream: stream}
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{
		Node: &corev3.Node{Id: "agent"}, TypeUrl: thingType, ResponseNonce: stale.GetNonce(),
		InitialResourceVersions: map[string]string{"a": g.ResourceVersion("a"), "b": g.ResourceVersion("b")},
	}); err != nil {
		t.Fatal(err)
	}
	sub.ack(stale, "")
	resp := sub.recv()
	if got := resourceNames(resp); !slices.Equal(got, []string{"a"}) || resp.GetNonce() == stale.GetNonce() {
		t.Fatalf("resume response %v (nonce %s), want only a under a new nonce", got, resp.GetNonce())
	}
	if st := waitStatus(t, f, func(StreamStatus) bool { return true }); st.ACKs != 0 || st.Acked != 0 {
		t.Fatalf("the stale nonce counted: %+v", st)
	}
	sub.ack(resp, "")
	waitStatus(t, f, func(st StreamStatus) bool { return st.Acked == 2 && st.ACKs == 1 })
}
