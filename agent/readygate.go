package agent

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// An agent that has not compiled its first policy set knows no host: every
// Check would find no policy and be allowed, and an attack sent in the
// seconds after an agent (re)starts would pass a policy whose failure mode
// is Closed. Until then every ext_authz and ext_proc call is refused with
// Unavailable, which Envoy answers by the policy's failure mode (Closed: a
// 503; Open: the request passes), exactly as if the agent were down.

// errNotReady is the answer to a call before the first policy set.
var errNotReady = status.Error(codes.Unavailable, "meshwaf agent: policies not loaded yet")

// readyGate returns the interceptors that refuse calls until ready is
// closed; counted is told about each refusal.
func readyGate(ready <-chan struct{}, counted func()) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	isReady := func() bool {
		select {
		case <-ready:
			return true
		default:
			counted()
			return false
		}
	}
	unary := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !isReady() {
			return nil, errNotReady
		}
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !isReady() {
			return errNotReady
		}
		return handler(srv, ss)
	}
	return unary, stream
}
