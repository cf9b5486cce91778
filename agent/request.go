package agent

import (
	"sort"
	"strings"

	"github.com/corazawaf/coraza/v3/types"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// partialBodyHeader is set by Envoy on the check request when it truncated
// the body at with_request_body.max_request_bytes.
const partialBodyHeader = "x-envoy-auth-partial-body"

// maxAuditPath bounds the path copied into an audit line.
const maxAuditPath = 4096

type header struct{ name, value string }

// httpRequest is the part of a CheckRequest the agent inspects. Building it
// is pure so that it can be fuzzed and tested without Coraza.
type httpRequest struct {
	clientIP   string
	clientPort int
	serverIP   string
	serverPort int
	method     string
	uri        string // path with query, as Envoy saw it
	protocol   string
	host       string // normalized: lower case, no port
	requestID  string
	headers    []header
	body       []byte
	partial    bool  // Envoy truncated the body
	size       int64 // declared body size, -1 when unknown
}

func fromCheckRequest(req *authv3.CheckRequest) httpRequest {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	src := attrs.GetSource().GetAddress().GetSocketAddress()
	dst := attrs.GetDestination().GetAddress().GetSocketAddress()
	r := httpRequest{
		clientIP:   src.GetAddress(),
		clientPort: int(src.GetPortValue()),
		serverIP:   dst.GetAddress(),
		serverPort: int(dst.GetPortValue()),
		method:     h.GetMethod(),
		uri:        h.GetPath(),
		protocol:   h.GetProtocol(),
		host:       normalizeHost(h.GetHost()),
		size:       h.GetSize(),
	}
	if r.method == "" {
		r.method = "GET"
	}
	if r.uri == "" {
		r.uri = "/"
	}
	if r.protocol == "" {
		r.protocol = "HTTP/1.1"
	}
	r.headers, r.partial = headersOf(h)
	hasHost := false
	for _, hd := range r.headers {
		switch hd.name {
		case "host":
			hasHost = true
		case "x-request-id":
			r.requestID = hd.value
		}
	}
	// HTTP/2 requests carry :authority instead of Host; CRS expects Host.
	if !hasHost && h.GetHost() != "" {
		r.headers = append(r.headers, header{"host", h.GetHost()})
	}
	if raw := h.GetRawBody(); len(raw) > 0 {
		r.body = raw
	} else if b := h.GetBody(); b != "" {
		r.body = []byte(b)
	}
	return r
}

// headersOf prefers header_map, whose raw_value survives header bytes that
// are not valid UTF-8, and falls back to the headers map in sorted order.
// Pseudo-headers and Envoy's partial-body marker are not request headers
// the application sees, so rules do not see them either.
func headersOf(h *authv3.AttributeContext_HttpRequest) (out []header, partial bool) {
	add := func(name, value string) {
		name = strings.ToLower(name)
		switch {
		case name == partialBodyHeader:
			partial = strings.EqualFold(strings.TrimSpace(value), "true")
		case strings.HasPrefix(name, ":"):
		default:
			out = append(out, header{name, value})
		}
	}
	if hm := h.GetHeaderMap().GetHeaders(); len(hm) > 0 {
		for _, hv := range hm {
			v := hv.GetValue()
			if raw := hv.GetRawValue(); len(raw) > 0 {
				v = string(raw)
			}
			add(hv.GetKey(), v)
		}
		return out, partial
	}
	keys := make([]string, 0, len(h.GetHeaders()))
	for k := range h.GetHeaders() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		add(k, h.GetHeaders()[k])
	}
	return out, partial
}

// feed runs the request phases of tx over r and returns the interruption,
// if any. body is what to inspect (nil for none).
func feed(tx types.Transaction, r *httpRequest, body []byte) *types.Interruption {
	tx.ProcessConnection(r.clientIP, r.clientPort, r.serverIP, r.serverPort)
	tx.ProcessURI(r.uri, r.method, r.protocol)
	for _, h := range r.headers {
		tx.AddRequestHeader(h.name, h.value)
	}
	if r.host != "" {
		tx.SetServerName(r.host)
	}
	if it := tx.ProcessRequestHeaders(); it != nil {
		return it
	}
	if len(body) > 0 && tx.IsRequestBodyAccessible() {
		// A write error (Coraza refusing the buffer) must not skip phase 2,
		// so only an interruption ends the request here.
		if it, _, _ := tx.WriteRequestBody(body); it != nil {
			return it
		}
	}
	// Phase 2 runs even without a body: most CRS rules live there.
	it, _ := tx.ProcessRequestBody()
	return it
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
