package agent

import (
	"strings"
	"testing"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/meshwaf/meshwaf/agentapi"
)

func TestFromCheckRequest(t *testing.T) {
	tests := map[string]struct {
		http  *authv3.AttributeContext_HttpRequest
		check func(t *testing.T, r httpRequest)
	}{
		"raw header bytes win over value": {
			http: &authv3.AttributeContext_HttpRequest{HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: "x-bin", Value: "ignored", RawValue: []byte{0xff, 0xfe}},
			}}},
			check: func(t *testing.T, r httpRequest) {
				if len(r.headers) < 1 || r.headers[0].value != "\xff\xfe" {
					t.Errorf("headers = %q", r.headers)
				}
			},
		},
		"headers map is used without header_map, sorted": {
			http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{"b": "2", "a": "1", "host": "h"}},
			check: func(t *testing.T, r httpRequest) {
				if len(r.headers) != 3 || r.headers[0].name != "a" || r.headers[1].name != "b" {
					t.Errorf("headers = %q", r.headers)
				}
			},
		},
		"pseudo headers dropped and host added from authority": {
			http: &authv3.AttributeContext_HttpRequest{Host: "Shop.Example.com:443", Headers: map[string]string{":authority": "x", ":path": "/"}},
			check: func(t *testing.T, r httpRequest) {
				if len(r.headers) != 1 || r.headers[0] != (header{"host", "Shop.Example.com:443"}) || r.host != "shop.example.com" {
					t.Errorf("headers = %q host = %q", r.headers, r.host)
				}
			},
		},
		"partial body marker is read and hidden": {
			http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{partialBodyHeader: "true"}},
			check: func(t *testing.T, r httpRequest) {
				if !r.partial {
					t.Error("partial not set")
				}
				for _, h := range r.headers {
					if h.name == partialBodyHeader {
						t.Error("partial body marker passed to Coraza")
					}
				}
			},
		},
		"raw body wins over body": {
			http: &authv3.AttributeContext_HttpRequest{RawBody: []byte("raw"), Body: "text"},
			check: func(t *testing.T, r httpRequest) {
				if string(r.body) != "raw" {
					t.Errorf("body = %q", r.body)
				}
			},
		},
		"string body when no raw body": {
			http: &authv3.AttributeContext_HttpRequest{Body: "text"},
			check: func(t *testing.T, r httpRequest) {
				if string(r.body) != "text" {
					t.Errorf("body = %q", r.body)
				}
			},
		},
		"empty request gets safe defaults": {
			http: nil,
			check: func(t *testing.T, r httpRequest) {
				if r.method != "GET" || r.uri != "/" || r.protocol != "HTTP/1.1" {
					t.Errorf("got %q %q %q", r.method, r.uri, r.protocol)
				}
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: tt.http},
			}}
			tt.check(t, fromCheckRequest(req))
		})
	}
}

// FuzzCheckRequest drives arbitrary CheckRequests through the conversion
// and a real CRS transaction: neither may panic, and the verdict must be
// one Envoy can send.
func FuzzCheckRequest(f *testing.F) {
	f.Add("GET", "shop.example.com", "/?id=1%27%20OR%201%3D1--", "user-agent", []byte("curl"), []byte(""), false, false)
	f.Add("POST", "SHOP.example.com:80", "/comment", "content-type", []byte("application/x-www-form-urlencoded"), []byte("a=<script>"), true, false)
	f.Add("POST", "[::1]:8080", "/api", "content-type", []byte("application/json"), []byte(`{"a":[1,{"b":"\u0000"}]}`), false, true)
	f.Add("", "", "", ":authority", []byte{0xff, 0x00, 0xc3}, []byte{0xff, 0xfe}, true, true)
	f.Add("PUT", "h", "*", "content-type", []byte("multipart/form-data; boundary=x"), []byte("--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--x--"), true, false)
	f.Add("GET", "h", "http://evil/%zz?%%", "cookie", []byte("a=b; c"), []byte{}, false, false)

	reg := NewRegistry(sharedCompile)
	e, err := reg.Prepare(agentapi.ResourceName(testGateway, "*"), "1", testPolicy(testGateway, "*"))
	if err != nil {
		f.Fatal(err)
	}
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
		r := fromCheckRequest(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: h},
		}})
		for _, hd := range r.headers {
			if strings.HasPrefix(hd.name, ":") {
				t.Fatalf("pseudo header %q reached Coraza", hd.name)
			}
		}
		if utf8.ValidString(r.host) && strings.ToLower(r.host) != r.host {
			t.Fatalf("host %q not lower-cased", r.host)
		}
		v := inspect(e, &r)
		switch v.action {
		case actionAllowed, actionDetected:
		case actionBlocked:
			if v.status < 200 || v.status > 599 {
				t.Fatalf("blocked with status %d", v.status)
			}
		default:
			t.Fatalf("unknown action %q", v.action)
		}
		if resp := denyResponse(e.Policy, v); resp.GetDeniedResponse() == nil {
			t.Fatal("no denied response")
		}
	})
}
