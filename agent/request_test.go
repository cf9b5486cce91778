package agent

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
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

// ext_authz names the peer of an mTLS connection in source.principal; it is
// carried to the audit line.
func TestFromCheckRequestKeepsSourcePrincipal(t *testing.T) {
	const caller = "spiffe://cluster.local/ns/shop/sa/client"
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: caller, Address: socketAddr("10.1.2.3", 41000)},
	}}
	if r := fromCheckRequest(req); r.sourcePrincipal != caller || r.clientIP != "10.1.2.3" {
		t.Errorf("source principal %q, client %q", r.sourcePrincipal, r.clientIP)
	}
}
