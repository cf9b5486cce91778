package agent

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshwaf/meshwaf/agentapi"
)

// fuzzInspector serves one gateway-wide policy that inspects requests and
// responses, and discards audit lines (a fuzzer makes millions).
func fuzzInspector(f *testing.F) *inspector {
	f.Helper()
	reg := NewRegistry(sharedCompile)
	e, err := reg.Prepare(agentapi.ResourceName(testGateway, "*"), "1",
		testPolicy(testGateway, "*", withResponses(4096, leakRule)))
	if err != nil {
		f.Fatal(err)
	}
	reg.Replace(map[string]*Entry{e.Name: e})
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	return &inspector{reg: reg, audit: NewAuditLog(nil), metrics: m, log: discardLogger(), now: time.Now}
}

func checkConverted(t *testing.T, r httpRequest) {
	t.Helper()
	for _, hd := range r.headers {
		if strings.HasPrefix(hd.name, ":") {
			t.Fatalf("pseudo header %q reached Coraza", hd.name)
		}
	}
	if utf8.ValidString(r.host) && strings.ToLower(r.host) != r.host {
		t.Fatalf("host %q not lower-cased", r.host)
	}
	if r.method == "" || r.uri == "" || r.protocol == "" {
		t.Fatalf("request without method, uri or protocol: %+v", r)
	}
}

// FuzzCheckRequest drives arbitrary CheckRequests through the conversion
// and a real CRS transaction: neither may panic, Check may not return a
// gRPC error, and the answer must be one Envoy can send.
func FuzzCheckRequest(f *testing.F) {
	f.Add("GET", "shop.example.com", "/?id=1%27%20OR%201%3D1--", "user-agent", []byte("curl"), []byte(""), false, false)
	f.Add("POST", "SHOP.example.com:80", "/comment", "content-type", []byte("application/x-www-form-urlencoded"), []byte("a=<script>"), true, false)
	f.Add("POST", "[::1]:8080", "/api", "content-type", []byte("application/json"), []byte(`{"a":[1,{"b":"\u0000"}]}`), false, true)
	f.Add("", "", "", ":authority", []byte{0xff, 0x00, 0xc3}, []byte{0xff, 0xfe}, true, true)
	f.Add("PUT", "h", "*", "content-type", []byte("multipart/form-data; boundary=x"), []byte("--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--x--"), true, false)
	f.Add("GET", "h", "http://evil/%zz?%%", "cookie", []byte("a=b; c"), []byte{}, false, false)
	f.Add("POST", "h", "//a/%2e%2e/b", "content-type", []byte("text/xml"), []byte("<a><b></a>"), false, false)

	srv := &authzServer{in: fuzzInspector(f)}
	ctx := gatewayCtx(testGateway)
	f.Fuzz(func(t *testing.T, method, host, path, hk string, hv, body []byte, useMap, partial bool) {
		h := &authv3.AttributeContext_HttpRequest{Method: method, Host: host, Path: path, RawBody: body, Size: int64(len(body))}
		if useMap {
			h.Headers = map[string]string{hk: string(hv)}
			if partial {
				h.Headers[partialBodyHeader] = "true"
			}
		} else {
			h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: hk, RawValue: hv}}}
		}
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}}
		checkConverted(t, fromCheckRequest(req))
		resp, err := srv.Check(ctx, req)
		if err != nil {
			t.Fatalf("gRPC error: %v", err)
		}
		switch {
		case resp.GetOkResponse() != nil:
		case resp.GetDeniedResponse() != nil:
			if st := resp.GetDeniedResponse().GetStatus().GetCode(); st < 200 || st > 599 {
				t.Fatalf("denied with status %d", st)
			}
		default:
			t.Fatalf("answer is neither allow nor deny: %v", resp)
		}
	})
}

// FuzzProcessingRequest drives an ext_proc stream of arbitrary messages
// (request headers, body, response headers, body) through the conversion
// and a real CRS transaction: nothing may panic, every message gets the
// answer Envoy expects for it or the block response, and nothing follows
// a block response.
func FuzzProcessingRequest(f *testing.F) {
	f.Add("GET", "shop.example.com", "/?id=1%27%20OR%201%3D1--", "user-agent", []byte("curl"), []byte(""), true, "200", "application/json", []byte(`{"a":1}`), "127.0.0.1:1", 2.0)
	f.Add("POST", "SHOP.example.com:80", "/c", "content-type", []byte("application/x-www-form-urlencoded"), []byte("a=<script>"), false, "200", "text/html", []byte("ok"), "", 0.0)
	f.Add("POST", "h", "/up", "content-type", []byte("multipart/form-data; boundary=x"), []byte("--x\r\n\r\n"), false, "500", "text/plain", []byte("secret-leak"), "[::1]:8080", -1.0)
	f.Add("", "", "", ":status", []byte{0xff, 0xfe}, []byte{0xff}, true, "x", "", []byte{}, "not an address", 1e300)
	f.Add("CONNECT", "h:443", "h:443", "upgrade", []byte("websocket"), []byte("tunnel"), false, "101", "", []byte{}, "10.0.0.1", 65536.0)

	in := fuzzInspector(f)
	f.Fuzz(func(t *testing.T, method, host, path, hk string, hv, body []byte, partial bool, status, ctype string, respBody []byte, addr string, port float64) {
		headers := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":method", RawValue: []byte(method)}, {Key: ":authority", RawValue: []byte(host)},
			{Key: ":path", RawValue: []byte(path)}, {Key: hk, RawValue: hv},
		}}
		attrs := map[string]*structpb.Struct{procAttributesKey: {Fields: map[string]*structpb.Value{
			"source.address": structpb.NewStringValue(addr), "source.port": structpb.NewNumberValue(port),
		}}}
		first := &extprocv3.ProcessingRequest{
			Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{
				Headers: headers, EndOfStream: len(body) == 0}},
			Attributes:     attrs,
			ProtocolConfig: &extprocv3.ProtocolConfiguration{RequestBodyMode: filterv3.ProcessingMode_BUFFERED_PARTIAL},
		}
		checkConverted(t, fromProcHeaders(first.GetRequestHeaders(), attrs))
		msgs := []*extprocv3.ProcessingRequest{first}
		if len(body) > 0 {
			msgs = append(msgs, procRequestBody(string(body), !partial))
		}
		msgs = append(msgs,
			&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
				Headers: headerMap([][2]string{{":status", status}}, map[string]string{"content-type": ctype}), EndOfStream: len(respBody) == 0}}},
			procResponseBody(string(respBody), true))
		ps := &procStream{in: in, gateways: []string{testGateway}}
		defer ps.finish()
		for _, m := range msgs {
			resp := ps.handle(m)
			if ir := resp.GetImmediateResponse(); ir != nil {
				if st := ir.GetStatus().GetCode(); st < 200 || st > 599 {
					t.Fatalf("immediate response with status %d", st)
				}
				return
			}
			if !answerMatches(m, resp) {
				t.Fatalf("answer %v does not match message %T", resp, m.GetRequest())
			}
		}
	})
}
