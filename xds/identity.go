package xds

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshwaf/meshwaf/agentapi"
)

// Authenticator says who is at the other end of a stream. It is called once
// per stream with the stream's context (TLS peer, gRPC metadata); an error
// refuses the stream.
type Authenticator interface {
	Authenticate(ctx context.Context) (Peer, error)
}

// Peer is an authenticated caller.
type Peer struct {
	// Name identifies the caller in logs.
	Name string
	// Agent is true for meshwaf agents; only agents may receive host
	// policies.
	Agent bool
	// Node, when set, is the only node id the caller may claim.
	Node string
}

// streamIdentity is what a stream proved and claimed. Requests of one
// stream may be checked from more than one goroutine (one after another),
// so it has a lock of its own.
type streamIdentity struct {
	peer *Peer // nil when no Authenticator is configured
	mu   sync.Mutex
	node string
}

// identities pins each ECDS stream (by go-control-plane's stream id) to the
// node id of its first message, and to what its caller proved, for the
// stream's whole life. Agent streams keep their streamIdentity themselves.
type identities struct {
	auth    Authenticator
	mu      sync.Mutex
	streams map[int64]*streamIdentity
}

func newIdentities(auth Authenticator) *identities {
	return &identities{auth: auth, streams: map[int64]*streamIdentity{}}
}

// authenticate asks the Authenticator who opened the stream of ctx.
func (ids *identities) authenticate(ctx context.Context) (*streamIdentity, error) {
	st := &streamIdentity{}
	if ids.auth != nil {
		peer, err := ids.auth.Authenticate(ctx)
		if err != nil {
			return nil, status.Errorf(codes.Unauthenticated, "meshwaf: %v", err)
		}
		st.peer = &peer
	}
	return st, nil
}

// open authenticates a new ECDS stream.
func (ids *identities) open(ctx context.Context, id int64) error {
	st, err := ids.authenticate(ctx)
	if err != nil {
		return err
	}
	ids.mu.Lock()
	ids.streams[id] = st
	ids.mu.Unlock()
	return nil
}

// check admits one request of an ECDS stream.
func (ids *identities) check(id int64, node, typeURL string) error {
	ids.mu.Lock()
	st := ids.streams[id]
	ids.mu.Unlock()
	if st == nil {
		return status.Error(codes.Internal, "meshwaf: request on an unknown stream")
	}
	return st.check(node, typeURL)
}

// check admits one request: the node id may be set only once (later
// requests may omit it but never change it), an authenticated agent may
// only claim its own node, and only agents may ask for host policies.
func (st *streamIdentity) check(node, typeURL string) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.peer != nil {
		if typeURL == agentapi.HostPolicyTypeURL && !st.peer.Agent {
			return status.Errorf(codes.PermissionDenied, "meshwaf: %s is not an agent and may not receive host policies", st.peer.Name)
		}
		if node != "" && st.peer.Node != "" && node != st.peer.Node {
			return status.Errorf(codes.PermissionDenied, "meshwaf: %s may only act as node %q, not %q", st.peer.Name, st.peer.Node, node)
		}
	}
	switch {
	case node == "" || node == st.node:
	case st.node == "":
		st.node = node
	default:
		return status.Errorf(codes.InvalidArgument, "meshwaf: node id changed from %q to %q on one stream", st.node, node)
	}
	return nil
}

func (ids *identities) close(id int64) {
	ids.mu.Lock()
	delete(ids.streams, id)
	ids.mu.Unlock()
}

func (p Peer) String() string { return fmt.Sprintf("%s (agent %v, node %q)", p.Name, p.Agent, p.Node) }
