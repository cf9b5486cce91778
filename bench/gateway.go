package bench

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"time"
)

// gatewayClient sends scenarios through an Envoy gateway over keep-alive
// connections, one per request in flight, so that every request costs
// Envoy the same and no connection setup lands in a latency sample.
type gatewayClient struct {
	base   string
	client *http.Client
}

// newGatewayClient keeps up to inFlight idle connections: with fewer, the
// transport would close a connection after each concurrent request and
// open a new one for the next.
func newGatewayClient(base string, inFlight int) *gatewayClient {
	return &gatewayClient{base: base, client: &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: max(inFlight, 1), DisableCompression: true},
	}}
}

func (g *gatewayClient) close() { g.client.CloseIdleConnections() }

func (g *gatewayClient) send(sc Scenario, host string, _ int) (blocked bool, err error) {
	var body io.Reader
	if len(sc.Body) > 0 {
		body = bytes.NewReader(sc.Body)
	}
	req, err := http.NewRequest(sc.Method, g.base+sc.Target, body)
	if err != nil {
		return false, err
	}
	req.Host = host
	for _, h := range browserHeaders {
		req.Header.Set(h[0], h[1])
	}
	if len(sc.Body) > 0 {
		req.Header.Set("content-type", sc.ContentType)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return false, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return false, nil
	case http.StatusForbidden:
		return true, nil
	default:
		return false, fmt.Errorf("%s %s: status %d", sc.Method, sc.Target, resp.StatusCode)
	}
}
