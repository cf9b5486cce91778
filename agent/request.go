package agent

import (
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// partialBodyHeader is set by Envoy on the check request when it truncated
// the body at with_request_body.max_request_bytes.
const partialBodyHeader = "x-envoy-auth-partial-body"

// maxAuditPath bounds the path copied into an audit line.
const maxAuditPath = 4096

type header struct{ name, value string }

// httpRequest is the part of an Envoy request the agent inspects, whichever
// protocol brought it. Building it is pure so that it can be fuzzed and
// tested without Coraza.
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
	// sourcePrincipal is the peer certificate's identity (ext_authz's
	// source.principal), for the audit line only: the rules judge
	// requests, not callers.
	sourcePrincipal string
}

// fromCheckRequest converts an ext_authz CheckRequest.
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
		host:       h.GetHost(),
		size:       h.GetSize(),
	}
	r.sourcePrincipal = attrs.GetSource().GetPrincipal()
	// Room for every header and the host complete may add, so that the
	// list is allocated once.
	hs := headerSet{authz: true, regular: make([]header, 0, len(h.GetHeaderMap().GetHeaders())+len(h.GetHeaders())+1)}
	if hm := h.GetHeaderMap().GetHeaders(); len(hm) > 0 {
		hs.addMap(hm)
	} else {
		keys := make([]string, 0, len(h.GetHeaders()))
		for k := range h.GetHeaders() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			hs.add(k, h.GetHeaders()[k])
		}
	}
	r.headers, r.partial = hs.regular, hs.partial
	if raw := h.GetRawBody(); len(raw) > 0 {
		r.body = raw
	} else if b := h.GetBody(); b != "" {
		r.body = []byte(b)
	}
	r.complete()
	return r
}

// headerSet sorts Envoy's headers into what the application sees and what
// only Envoy knows: pseudo-headers (kept aside, not passed to Coraza, as
// the application never sees them) and ext_authz's partial-body marker.
type headerSet struct {
	regular []header
	pseudo  map[string]string
	partial bool
	// authz says the headers come from ext_authz, the only protocol where
	// Envoy adds the partial-body marker; elsewhere a client could send it.
	authz bool
}

func (hs *headerSet) add(name, value string) {
	name = strings.ToLower(name)
	switch {
	case hs.authz && name == partialBodyHeader:
		hs.partial = strings.EqualFold(strings.TrimSpace(value), "true")
	case strings.HasPrefix(name, ":"):
		if hs.pseudo == nil {
			hs.pseudo = map[string]string{}
		}
		hs.pseudo[name] = value
	default:
		hs.regular = append(hs.regular, header{name, value})
	}
}

// addMap prefers raw_value, which carries header bytes that are not valid
// UTF-8 intact; ext_proc sends values only there.
func (hs *headerSet) addMap(hm []*corev3.HeaderValue) {
	for _, hv := range hm {
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		hs.add(hv.GetKey(), v)
	}
}

func (hs *headerSet) get(name string) (string, bool) {
	for _, h := range hs.regular {
		if h.name == name {
			return h.value, true
		}
	}
	return "", false
}

// complete fills defaults Coraza needs and derives fields both protocols
// share. r.host holds the raw authority on entry.
func (r *httpRequest) complete() {
	if r.method == "" {
		r.method = "GET"
	}
	if r.uri == "" {
		r.uri = "/"
	}
	if r.protocol == "" {
		r.protocol = "HTTP/1.1"
	}
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
	if !hasHost && r.host != "" {
		r.headers = append(r.headers, header{"host", r.host})
	}
	r.host = normalizeHost(r.host)
}

// contentLength is the declared body size, -1 when absent or not a number.
func contentLength(hs *headerSet) int64 {
	v, ok := hs.get("content-length")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
