package integration

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

var (
	repoRoot string
	// builder builds the binaries once, shared by every stack of this run.
	builder stack.Builder
)

func TestMain(m *testing.M) {
	var err error
	if repoRoot, err = stack.RepoRoot("."); err != nil {
		panic(err)
	}
	builder.RepoRoot = repoRoot
	code := m.Run()
	builder.Close()
	os.Exit(code)
}

// binaries builds cmd/xds and cmd/agent once per test run.
func binaries(t *testing.T) *stack.Binaries { return builder.Binaries(t) }

// startStack starts a stack of this build's binaries for t and stops it
// when t ends (stack.StartForTest).
func startStack(t *testing.T, cfg stack.Config) *stack.Stack {
	t.Helper()
	if !cfg.EnvoyOnly && cfg.Binaries == nil {
		cfg.Binaries = binaries(t)
	}
	cfg.RepoRoot = repoRoot
	return stack.StartForTest(t, cfg)
}

// request is one client request to the gateway.
type request struct {
	method      string
	host        string
	target      string // path and query, already encoded
	contentType string
	body        string
}

func (r request) String() string { return r.method + " " + r.host + r.target }

type response struct {
	status int
	header http.Header
	body   string
}

var gatewayClient = &http.Client{Timeout: 10 * time.Second}

func send(t *testing.T, s *stack.Stack, r request) response {
	t.Helper()
	resp, err := trySend(s, r)
	if err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	return resp
}

func trySend(s *stack.Stack, r request) (response, error) {
	method := r.method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(method, s.GatewayURL()+r.target, body)
	if err != nil {
		return response{}, err
	}
	req.Host = r.host
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	resp, err := gatewayClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}, err
}

// waitStatus sends r until it gets want or timeout passes, and returns how
// long that took.
func waitStatus(t *testing.T, s *stack.Stack, r request, want int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last response
	var lastErr error
	for time.Since(start) < timeout {
		last, lastErr = trySend(s, r)
		if lastErr == nil && last.status == want {
			return time.Since(start)
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s: no %d within %s; last status %d body %q error %v", r, want, timeout, last.status, last.body, lastErr)
	return 0
}
