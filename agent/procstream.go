package agent

import (
	"slices"
	"time"

	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
)

// procStream is the state of one ext_proc stream: which phases ran, the
// body bytes gathered so far and how Envoy was configured to send them.
type procStream struct {
	in       *inspector
	gateways []string
	timeout  time.Duration // Envoy's message timeout; zero for none known
	x        *exchange     // nil until request headers, and for requests not inspected
	// done means nothing more is inspected: every further message is
	// answered unchanged.
	done bool
	// observe is Envoy's observability mode: answers are ignored.
	observe bool
	// reqMode is the request body mode Envoy announced in its first
	// message (buffered when it does not say); respMode is the response
	// body mode in force, the one the agent asked for once it did.
	reqMode, respMode filterv3.ProcessingMode_BodySendMode
	reqBody, respBody bodyBuffer
}

func (ps *procStream) finish() {
	if ps.x != nil {
		ps.x.finish()
	}
	ps.done = true
}

// handle answers one message. A panic in the adapter is answered as the
// mode implies and ends inspection for the stream.
func (ps *procStream) handle(req *extprocv3.ProcessingRequest) (resp *extprocv3.ProcessingResponse) {
	defer func() {
		if p := recover(); p != nil {
			ps.done = true
			resp = recovered(ps.in, ps.x, p, func() *extprocv3.ProcessingResponse { return passResponse(req) },
				func(v verdict) *extprocv3.ProcessingResponse { return immediateResponse(ps.x.policy, v) })
		}
	}()
	if ps.done {
		return passResponse(req)
	}
	deadline := deadlineWithin(ps.timeout)
	if ps.x != nil {
		ps.x.deadline = deadline
	}
	// An overloaded exchange is settled by the failure mode (and a late one
	// belongs to its goroutine): the stream is done with it.
	defer func() {
		if ps.x != nil && ps.x.overloaded() {
			ps.done = true
		}
	}()
	switch m := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return ps.onRequestHeaders(req, m.RequestHeaders, deadline)
	case *extprocv3.ProcessingRequest_RequestBody:
		return ps.onRequestBody(req, m.RequestBody)
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return ps.onRequestEnd(req)
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return ps.onResponseHeaders(req, m.ResponseHeaders)
	case *extprocv3.ProcessingRequest_ResponseBody:
		return ps.onResponseBody(req, m.ResponseBody)
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return ps.onResponseEnd(req)
	}
	return nil
}

// deny ends the exchange with the block response.
func (ps *procStream) deny(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	v := ps.x.finish()
	ps.done = true
	if !v.denies() {
		return passResponse(req)
	}
	return immediateResponse(ps.x.policy, v)
}

func (ps *procStream) inspectsResponse() bool {
	return ps.x != nil && ps.x.policy.GetResponseBody().GetInspect()
}

// finishIfComplete ends the exchange as soon as the policy needs nothing
// more from the stream.
func (ps *procStream) finishIfComplete() {
	if ps.x.reqDone && !ps.inspectsResponse() || ps.x.respDone {
		ps.finish()
	}
}

func (ps *procStream) onRequestHeaders(req *extprocv3.ProcessingRequest, h *extprocv3.HttpHeaders, deadline time.Time) *extprocv3.ProcessingResponse {
	ps.observe = req.GetObservabilityMode()
	ps.reqMode, ps.respMode = filterv3.ProcessingMode_BUFFERED, filterv3.ProcessingMode_NONE
	if pc := req.GetProtocolConfig(); pc != nil {
		ps.reqMode, ps.respMode = pc.GetRequestBodyMode(), pc.GetResponseBodyMode()
	}
	r := fromProcHeaders(h, req.GetAttributes())
	ps.x = ps.in.begin(ps.gateways, &r, protocolExtProc)
	if ps.x == nil {
		ps.done = true
		return headersResponse(req, ps.modeOverride())
	}
	x := ps.x
	x.observe, x.deadline = ps.observe, deadline
	// Without a body to come, with a policy that ignores bodies, or for a
	// tunnel, phase 2 runs now, in the same step as phase 1, and Envoy is
	// told not to send the body.
	deny := false
	if h.GetEndOfStream() || !x.policy.GetRequestBody().GetInspect() || opensTunnel(&r) {
		deny = x.request(nil, false)
	} else {
		deny = x.requestHeaders()
	}
	if deny {
		return ps.deny(req)
	}
	ps.finishIfComplete()
	return headersResponse(req, ps.modeOverride())
}

func (ps *procStream) onRequestBody(req *extprocv3.ProcessingRequest, b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	x := ps.x
	if x == nil || x.reqDone {
		return passResponse(req)
	}
	limit := x.policy.GetRequestBody().GetLimitBytes()
	ps.reqBody.add(b.GetBody(), limit)
	complete, partial := ps.reqBody.complete(ps.reqMode, b.GetEndOfStream(), limit)
	if !complete {
		return passResponse(req)
	}
	return ps.endRequest(req, partial)
}

// onRequestEnd handles request trailers, which end the body.
func (ps *procStream) onRequestEnd(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	if ps.x == nil || ps.x.reqDone {
		return passResponse(req)
	}
	return ps.endRequest(req, false)
}

func (ps *procStream) endRequest(req *extprocv3.ProcessingRequest, partial bool) *extprocv3.ProcessingResponse {
	if ps.x.requestBody(ps.reqBody.data, partial) {
		return ps.deny(req)
	}
	ps.reqBody = bodyBuffer{}
	ps.finishIfComplete()
	return passResponse(req)
}

func (ps *procStream) onResponseHeaders(req *extprocv3.ProcessingRequest, h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	x := ps.x
	if x == nil {
		return passResponse(req)
	}
	// The upstream may answer before the request body ended (or Envoy may
	// not have sent it); the request phases run on what arrived.
	if !x.reqDone {
		if x.requestBody(ps.reqBody.data, false) {
			return ps.deny(req)
		}
		ps.reqBody = bodyBuffer{}
	}
	if !ps.inspectsResponse() {
		ps.finish()
		return passResponse(req)
	}
	status, headers := fromProcResponseHeaders(h)
	if x.responseHeaders(status, headers) {
		return ps.deny(req)
	}
	// A body Coraza would not inspect (an image, a download) is not worth
	// sending: phase 4 runs now and Envoy is told to skip the body.
	if h.GetEndOfStream() || !x.wantsResponseBody() {
		if x.responseBody(nil) {
			return ps.deny(req)
		}
		ps.finish()
		return headersResponse(req, ps.modeOverride())
	}
	return passResponse(req)
}

func (ps *procStream) onResponseBody(req *extprocv3.ProcessingRequest, b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	x := ps.x
	if x == nil || x.respDone {
		return passResponse(req)
	}
	limit := x.policy.GetResponseBody().GetLimitBytes()
	ps.respBody.add(b.GetBody(), limit)
	if complete, _ := ps.respBody.complete(ps.respMode, b.GetEndOfStream(), limit); !complete {
		return passResponse(req)
	}
	return ps.endResponse(req)
}

// onResponseEnd handles response trailers, which end the body.
func (ps *procStream) onResponseEnd(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	if ps.x == nil || ps.x.respDone {
		return passResponse(req)
	}
	return ps.endResponse(req)
}

func (ps *procStream) endResponse(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	if ps.x.responseBody(ps.respBody.data) {
		return ps.deny(req)
	}
	ps.respBody = bodyBuffer{}
	ps.finish()
	return passResponse(req)
}

// responseBodyMode is how the agent asks for response bodies: buffered up
// to Envoy's limit and sent even when cut there, since a response over the
// policy's limit passes after its first limit bytes were inspected.
const responseBodyMode = filterv3.ProcessingMode_BUFFERED_PARTIAL

// modeOverride tells Envoy, in a headers answer, what to send for the rest
// of the stream: the request body only while phase 2 still needs it, the
// response only for a policy that inspects responses and an exchange not yet
// finished. Envoy's configuration sends no response by default (see
// snapshot/filter.go); Envoy applies the override because the control plane
// sets allow_mode_override. In observability mode answers are ignored.
func (ps *procStream) modeOverride() *filterv3.ProcessingMode {
	if ps.observe {
		return nil
	}
	m := &filterv3.ProcessingMode{
		RequestHeaderMode:   filterv3.ProcessingMode_SEND,
		RequestBodyMode:     ps.reqMode,
		RequestTrailerMode:  filterv3.ProcessingMode_SKIP,
		ResponseHeaderMode:  filterv3.ProcessingMode_SKIP,
		ResponseBodyMode:    filterv3.ProcessingMode_NONE,
		ResponseTrailerMode: filterv3.ProcessingMode_SKIP,
	}
	// An overloaded exchange needs nothing more.
	late := ps.x != nil && ps.x.overloaded()
	if ps.x == nil || ps.x.reqDone || late {
		m.RequestBodyMode = filterv3.ProcessingMode_NONE
	}
	if !ps.done && !late && ps.inspectsResponse() {
		m.ResponseHeaderMode, m.ResponseBodyMode = filterv3.ProcessingMode_SEND, responseBodyMode
	}
	ps.respMode = m.ResponseBodyMode
	return m
}

// bodyBuffer gathers body chunks up to one byte past the policy's limit:
// enough to inspect the limit and to know there was more.
type bodyBuffer struct{ data []byte }

func (b *bodyBuffer) add(chunk []byte, limit int64) {
	room := limit + 1 - int64(len(b.data))
	if room <= 0 {
		return
	}
	if int64(len(chunk)) > room {
		chunk = chunk[:room]
	}
	if b.data == nil {
		// The first (in buffered modes the only) chunk is used in place.
		b.data = slices.Clip(chunk)
		return
	}
	b.data = append(b.data, chunk...)
}

// complete says whether the body can be inspected now and whether Envoy
// cut it short. Buffered modes send the body in one message; the partial
// mode marks a body cut at Envoy's buffer limit by not ending the stream.
// Streamed bodies (observability mode) are complete at their end or once
// they pass the limit.
func (b *bodyBuffer) complete(mode filterv3.ProcessingMode_BodySendMode, endOfStream bool, limit int64) (complete, partial bool) {
	switch mode {
	case filterv3.ProcessingMode_BUFFERED:
		return true, false
	case filterv3.ProcessingMode_STREAMED, filterv3.ProcessingMode_FULL_DUPLEX_STREAMED, filterv3.ProcessingMode_GRPC:
		if int64(len(b.data)) > limit {
			return true, true
		}
		return endOfStream, false
	default: // BUFFERED_PARTIAL, or not announced
		return true, !endOfStream
	}
}
