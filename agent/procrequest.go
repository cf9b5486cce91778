package agent

import (
	"net"
	"strconv"
	"strings"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// procAttributesKey is where Envoy puts the request_attributes it was
// configured to send (agentapi.ExtProcRequestAttributes): under the
// ext_proc filter's canonical name.
const procAttributesKey = "envoy.filters.http.ext_proc"

// fromProcHeaders converts the request headers message of an ext_proc
// stream. The method, path and authority come from pseudo-headers; the
// connection from the attributes. The body arrives later, if at all.
func fromProcHeaders(h *extprocv3.HttpHeaders, attrs map[string]*structpb.Struct) httpRequest {
	var hs headerSet
	hs.addMap(h.GetHeaders().GetHeaders())
	a := attrs[procAttributesKey].GetFields()
	r := httpRequest{
		method:   hs.pseudo[":method"],
		uri:      hs.pseudo[":path"],
		host:     hs.pseudo[":authority"],
		protocol: a["request.protocol"].GetStringValue(),
		headers:  hs.regular,
		size:     contentLength(&hs),
	}
	if r.host == "" {
		r.host, _ = hs.get("host")
	}
	r.clientIP, r.clientPort = addressOf(a["source.address"], a["source.port"])
	r.serverIP, r.serverPort = addressOf(a["destination.address"], a["destination.port"])
	if h.GetEndOfStream() {
		r.size = 0
	}
	r.complete()
	return r
}

// addressOf reads an attribute address, which Envoy renders as "ip:port",
// and a port attribute, which it renders as a number.
func addressOf(addr, port *structpb.Value) (string, int) {
	ip := addr.GetStringValue()
	p := 0
	if host, ps, err := net.SplitHostPort(ip); err == nil {
		ip = host
		p, _ = strconv.Atoi(ps)
	}
	switch v := port.GetKind().(type) {
	case *structpb.Value_NumberValue:
		if v.NumberValue > 0 && v.NumberValue < 65536 {
			p = int(v.NumberValue)
		}
	case *structpb.Value_StringValue:
		if n, err := strconv.Atoi(v.StringValue); err == nil && n > 0 && n < 65536 {
			p = n
		}
	}
	return ip, p
}

// fromProcResponseHeaders reads the status and headers of the upstream
// response. A missing or malformed :status becomes 0, which Coraza accepts.
func fromProcResponseHeaders(h *extprocv3.HttpHeaders) (int, []header) {
	var hs headerSet
	hs.addMap(h.GetHeaders().GetHeaders())
	status, err := strconv.Atoi(hs.pseudo[":status"])
	if err != nil || status < 0 || status > 999 {
		status = 0
	}
	return status, hs.regular
}

// opensTunnel says whether the request asks for a tunnel (CONNECT, or an
// Upgrade such as WebSocket): its "body" is the tunnelled stream, which
// does not end before the response, so waiting for it would hang the
// request.
func opensTunnel(r *httpRequest) bool {
	if strings.EqualFold(r.method, "CONNECT") {
		return true
	}
	for _, h := range r.headers {
		if h.name == "upgrade" {
			return true
		}
	}
	return false
}
