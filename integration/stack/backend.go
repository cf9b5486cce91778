package stack

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// backend is the service behind the gateway: the echo handler unless the
// Config names another. It runs in-process: it is not under test, and an
// in-process server cannot be orphaned.
type backend struct {
	srv      *http.Server
	handler  http.Handler
	requests atomic.Int64
}

// echo is what the backend answers, so tests can see what Envoy forwarded.
type echo struct {
	Method   string `json:"method"`
	Path     string `json:"path"`
	Host     string `json:"host"`
	BodySize int    `json:"bodySize"`
}

func startBackend(addr string, handler http.Handler) (*backend, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	b := &backend{handler: handler}
	if b.handler == nil {
		b.handler = http.HandlerFunc(echoHandler)
	}
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	return b, nil
}

// serve counts every request, whichever handler answers it.
func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	b.handler.ServeHTTP(w, r)
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(echo{Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host, BodySize: len(body)})
}

func (b *backend) close() error { return b.srv.Close() }
