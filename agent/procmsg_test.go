package agent

import (
	"maps"
	"slices"
	"strconv"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// This file builds ext_proc messages the way Envoy 1.40 sends them with
// the configuration the control plane serves (snapshot/filter.go).

func headerMap(pseudo [][2]string, headers map[string]string) *corev3.HeaderMap {
	hm := &corev3.HeaderMap{}
	for _, kv := range pseudo {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
	}
	for _, k := range slices.Sorted(maps.Keys(headers)) {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(headers[k])})
	}
	return hm
}

// procAttributes are the request_attributes Envoy adds to the first
// message.
func procAttributes() map[string]*structpb.Struct {
	return map[string]*structpb.Struct{procAttributesKey: {Fields: map[string]*structpb.Value{
		"source.address":      structpb.NewStringValue("127.0.0.1:54321"),
		"source.port":         structpb.NewNumberValue(54321),
		"destination.address": structpb.NewStringValue("10.0.0.2:8080"),
		"destination.port":    structpb.NewNumberValue(8080),
		"request.protocol":    structpb.NewStringValue("HTTP/1.1"),
	}}}
}

// procRequest is the first message of a stream. body "" means the request
// ends with its headers.
func procRequest(method, host, path string, headers map[string]string, body string, mode filterv3.ProcessingMode_BodySendMode) *extprocv3.ProcessingRequest {
	headers = maps.Clone(headers) // callers pass shared maps such as formType
	if headers == nil {
		headers = map[string]string{}
	}
	if _, ok := headers["user-agent"]; !ok {
		headers["user-agent"] = "curl/8.5.0"
	}
	headers["x-request-id"] = "req-1"
	if body != "" {
		headers["content-length"] = strconv.Itoa(len(body))
	}
	return &extprocv3.ProcessingRequest{
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
			Headers:     headerMap([][2]string{{":authority", host}, {":path", path}, {":method", method}, {":scheme", "http"}}, headers),
			EndOfStream: body == "",
		}},
		Attributes: procAttributes(),
		// Responses are off until the agent asks for them.
		ProtocolConfig: &extprocv3.ProtocolConfiguration{
			RequestBodyMode:  mode,
			ResponseBodyMode: filterv3.ProcessingMode_NONE,
		},
	}
}

func procRequestBody(body string, endOfStream bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: endOfStream}}}
}

func procResponseHeaders(status int, contentType string, endOfStream bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
		ResponseHeaders: &extprocv3.HttpHeaders{
			Headers:     headerMap([][2]string{{":status", strconv.Itoa(status)}}, map[string]string{"content-type": contentType}),
			EndOfStream: endOfStream,
		}}}
}

func procResponseBody(body string, endOfStream bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: []byte(body), EndOfStream: endOfStream}}}
}

// exchangeOf runs msgs through a fresh stream of srv like Envoy would: it
// stops at the first immediate response, since Envoy sends nothing more
// then. It returns the answers and whether the stream denied.
func exchangeOf(t *testing.T, in *inspector, gateways []string, msgs ...*extprocv3.ProcessingRequest) ([]*extprocv3.ProcessingResponse, *extprocv3.ImmediateResponse) {
	t.Helper()
	ps := &procStream{in: in, gateways: gateways}
	defer ps.finish()
	var answers []*extprocv3.ProcessingResponse
	for _, m := range msgs {
		resp := ps.handle(m)
		answers = append(answers, resp)
		if ir := resp.GetImmediateResponse(); ir != nil {
			return answers, ir
		}
		if !answerMatches(m, resp) {
			t.Fatalf("answer %v does not match message %T", resp, m.GetRequest())
		}
	}
	return answers, nil
}

// answerMatches says whether resp is the answer type Envoy expects for req;
// anything else makes Envoy fail the request ("spurious message").
func answerMatches(req *extprocv3.ProcessingRequest, resp *extprocv3.ProcessingResponse) bool {
	switch req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return resp.GetRequestHeaders() != nil
	case *extprocv3.ProcessingRequest_RequestBody:
		return resp.GetRequestBody() != nil
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return resp.GetRequestTrailers() != nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return resp.GetResponseHeaders() != nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return resp.GetResponseBody() != nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return resp.GetResponseTrailers() != nil
	}
	return resp == nil
}
