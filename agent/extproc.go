package agent

import (
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// procServer answers Envoy's ext_proc streams. Envoy opens one stream per
// HTTP request and sends a message per part (request headers, request
// body, response headers, response body); each drives one phase of the
// stream's exchange, the same pipeline ext_authz uses.
//
// Like Check, a stream never ends in a gRPC error because of what a
// request contains: a denial is an immediate_response, anything the agent
// cannot handle is passed through with an empty answer.
type procServer struct {
	extprocv3.UnimplementedExternalProcessorServer
	in *inspector
}

func (s *procServer) Process(stream extprocv3.ExternalProcessor_ProcessServer) error {
	ps := &procStream{in: s.in, gateways: gatewaysFrom(stream.Context()), timeout: procTimeout(stream.Context())}
	// A stream may end before the exchange did (the client went away, the
	// upstream never answered): what was found so far is still recorded.
	defer ps.finish()
	for {
		req, err := stream.Recv()
		if err != nil {
			// io.EOF or cancellation: Envoy is done with this request.
			return nil
		}
		resp := ps.handle(req)
		// In observability mode Envoy ignores answers and expects none;
		// closing the stream tells it nothing more is needed.
		if ps.observe {
			if ps.done {
				return nil
			}
			continue
		}
		if resp == nil {
			continue
		}
		if err := stream.Send(resp); err != nil {
			return nil
		}
	}
}
