package agent

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Until the first policy set is compiled, every call is refused with
// Unavailable (Envoy then applies the failure mode) and counted; after it,
// calls reach their handler.
func TestCallsBeforeTheFirstPolicySetAreUnavailable(t *testing.T) {
	ready := make(chan struct{})
	refused := 0
	unary, stream := readyGate(ready, func() { refused++ })
	handled := 0
	handler := func(context.Context, any) (any, error) { handled++; return "ok", nil }
	streamHandler := func(any, grpc.ServerStream) error { handled++; return nil }

	if _, err := unary(context.Background(), nil, nil, handler); status.Code(err) != codes.Unavailable {
		t.Errorf("Check before ready: %v, want Unavailable", err)
	}
	if err := stream(nil, nil, nil, streamHandler); status.Code(err) != codes.Unavailable {
		t.Errorf("ext_proc stream before ready: %v, want Unavailable", err)
	}
	close(ready)
	if out, err := unary(context.Background(), nil, nil, handler); err != nil || out != "ok" {
		t.Errorf("Check once ready: %v, %v", out, err)
	}
	if err := stream(nil, nil, nil, streamHandler); err != nil {
		t.Errorf("ext_proc stream once ready: %v", err)
	}
	if refused != 2 || handled != 2 {
		t.Errorf("refused %d, handled %d; want 2 and 2", refused, handled)
	}
}
