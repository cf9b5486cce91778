package bench

import (
	"context"
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/meshwaf/meshwaf/agentapi"
)

// authzClient calls the agent's ext_authz Check the way Envoy does with
// meshwaf's filter configuration: headers as raw bytes (encode_raw_headers),
// the body as raw bytes (pack_as_bytes) and the gateway in the metadata.
type authzClient struct {
	conn   *grpc.ClientConn
	client authv3.AuthorizationClient
	ctx    context.Context
	port   int // the gateway port the requests pretend to arrive on
}

func dialAgent(addr string, gatewayPort int) (*authzClient, error) {
	// Static flow-control windows, as Envoy's HTTP/2 client has: with gRPC's
	// default dynamic windows the client pings the agent after every
	// response (BDP estimation), and the agent's CPU would include answering
	// pings no gateway sends.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStaticStreamWindowSize(1<<20), grpc.WithStaticConnWindowSize(1<<20))
	if err != nil {
		return nil, err
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), agentapi.GatewayMetadataKey, gatewayName)
	return &authzClient{conn: conn, client: authv3.NewAuthorizationClient(conn), ctx: ctx, port: gatewayPort}, nil
}

func (c *authzClient) close() error { return c.conn.Close() }

func (c *authzClient) send(sc Scenario, host string, seq int) (blocked bool, err error) {
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	resp, err := c.client.Check(ctx, checkRequest(sc, host, seq, c.port))
	if err != nil {
		return false, err
	}
	return resp.GetStatus().GetCode() != int32(codes.OK), nil
}

// checkRequest is what Envoy sends for sc: pseudo-headers first, then the
// request headers, as Envoy's header map holds them.
func checkRequest(sc Scenario, host string, seq, gatewayPort int) *authv3.CheckRequest {
	headers := []*corev3.HeaderValue{
		{Key: ":authority", RawValue: []byte(host)},
		{Key: ":path", RawValue: []byte(sc.Target)},
		{Key: ":method", RawValue: []byte(sc.Method)},
		{Key: ":scheme", RawValue: []byte("http")},
	}
	for _, h := range requestHeaders(sc, host, seq) {
		if h[0] != "host" { // Envoy keeps it as :authority
			headers = append(headers, &corev3.HeaderValue{Key: h[0], RawValue: []byte(h[1])})
		}
	}
	size := int64(-1)
	if len(sc.Body) > 0 {
		size = int64(len(sc.Body))
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socket("127.0.0.1", 40000+seq%20000)},
		Destination: &authv3.AttributeContext_Peer{Address: socket("127.0.0.1", gatewayPort)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id:        fmt.Sprint(seq),
			Method:    sc.Method,
			HeaderMap: &corev3.HeaderMap{Headers: headers},
			Path:      sc.Target,
			Host:      host,
			Scheme:    "http",
			Protocol:  "HTTP/1.1",
			Size:      size,
			RawBody:   sc.Body,
		}},
	}}
}

func socket(ip string, port int) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}
}
