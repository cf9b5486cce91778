package bench

import (
	"bytes"
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

// send sends sc and says whether the WAF blocked it (403); any other
// answer but 2xx is a *statusError.
func (g *gatewayClient) send(sc Scenario, host string, _ int) (blocked bool, err error) {
	status, err := g.status(sc, host)
	switch {
	case err != nil:
		return false, err
	case status >= 200 && status < 300:
		return false, nil
	case status == http.StatusForbidden:
		return true, nil
	default:
		return false, &statusError{status: status}
	}
}

// status sends sc and returns the answer's status code, having read the
// whole answer so that the connection is reused.
func (g *gatewayClient) status(sc Scenario, host string) (int, error) {
	var body io.Reader
	if len(sc.Body) > 0 {
		body = bytes.NewReader(sc.Body)
	}
	req, err := http.NewRequest(sc.Method, g.base+sc.Target, body)
	if err != nil {
		return 0, err
	}
	req.Host = host
	for _, h := range append(browserHeaders, sc.Headers...) {
		req.Header.Set(h[0], h[1])
	}
	if len(sc.Body) > 0 {
		req.Header.Set("content-type", sc.ContentType)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}
