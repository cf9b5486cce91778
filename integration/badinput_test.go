package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// badCase is one malformed or hostile request, written byte for byte, and
// the status the Prevent policy on shop.example.com (2 KiB body limit)
// gives it. Values stay small enough for the CRS to inspect well within
// Envoy's 500 ms on a loaded 2-core machine (it needs about 9 ms per KiB of
// a single value); "body of 128 KiB" shows what happens beyond.
type badCase struct {
	raw  string // HTTP/1.1 request; Host and Content-Length are filled in
	body string
	want int
	// host, when set, is api.example.com, whose policy has the default
	// 128 KiB limit; anyOf then lists the acceptable verdicts.
	host  string
	anyOf []int
}

const badLimit = 2 << 10

func form(target, contentType, body string) badCase {
	return badCase{raw: "POST " + target + " HTTP/1.1\r\nContent-Type: " + contentType + "\r\n", body: body}
}

func withWant(c badCase, want int) badCase { c.want = want; return c }

// numberedArgs is a form body of n arguments f0=v&f1=v&...
func numberedArgs(n int) string {
	args := make([]string, n)
	for i := range args {
		args[i] = fmt.Sprintf("f%d=v", i)
	}
	return strings.Join(args, "&")
}

var sqliQuery = "id=1%27%20OR%201=1--"

var badCases = map[string]badCase{
	"non-UTF-8 header bytes":            {raw: "GET / HTTP/1.1\r\nX-Bin: \xff\xfe\xc3\r\nUser-Agent: \xc3\x28\r\n", want: 200},
	"non-UTF-8 header bytes and sqli":   {raw: "GET /?" + sqliQuery + " HTTP/1.1\r\nX-Bin: \xff\xfe\r\n", want: 403},
	"non-UTF-8 form body":               withWant(form("/c", "application/x-www-form-urlencoded", "a=\xff\xfe&b=\xc3"), 200),
	"multipart without a closing":       withWant(form("/up", "multipart/form-data; boundary=xyz", "--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue"), 403),
	"multipart that is not multipart":   withWant(form("/up", "multipart/form-data; boundary=xyz", "garbage"), 403),
	"invalid JSON":                      withWant(form("/api", "application/json", `{"a": [1, 2`), 403),
	"invalid XML is parsed leniently":   withWant(form("/api", "application/xml", "<a><b></a>"), 200),
	"chunked body with XSS":             {raw: "POST /c HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n5\r\na=%3C\r\n14\r\nscript%3Ealert(1)%3C\r\n9\r\n%2Fscript\r\n3\r\n%3E\r\n0\r\n\r\n", want: 403},
	"header of 16 KiB":                  {raw: "GET / HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 16<<10) + "\r\n", want: 200},
	"headers over Envoy's 60 KiB limit": {raw: "GET / HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n", want: 431},
	"body over the policy limit":        withWant(form("/c", "application/x-www-form-urlencoded", "a="+strings.Repeat("b", 2*badLimit)), 413),
	"body of exactly the policy limit":  withWant(form("/c", "application/x-www-form-urlencoded", "a="+strings.Repeat("b", badLimit-2)), 200),
	"body over Envoy's buffer":          withWant(form("/c", "application/x-www-form-urlencoded", "a="+strings.Repeat("b", 2<<20)), 413),
	// The CRS needs about a second for a 128 KiB value on a 2-core
	// machine, longer than Envoy waits (500 ms): the agent answers in time
	// per mode, 403 in Prevent, unless the inspection was quick enough.
	"body of 128 KiB": {raw: "POST /c HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n",
		body: "a=" + strings.Repeat("b c ", 32<<10-1), host: "api.example.com", anyOf: []int{200, 403}},
	"thousands of arguments": {raw: "GET /?" + strings.Repeat("a=1&", 1200) + "b=1 HTTP/1.1\r\n", want: 403},
	// 1,000 in all is refused before the CRS runs over them (rule 419903,
	// as ModSecurity's recommended configuration does).
	"1,000 form arguments": {raw: "POST /c HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n",
		body: numberedArgs(1000), host: "api.example.com", anyOf: []int{403}},
	"double slashes":               {raw: "GET //static//app.js HTTP/1.1\r\n", want: 200},
	"double slashes and sqli":      {raw: "GET //?" + sqliQuery + " HTTP/1.1\r\n", want: 403},
	"encoded dot segments":         {raw: "GET /a/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n", want: 200},
	"encoded dot segments and LFI": {raw: "GET /a/%2e%2e/x?file=..%2f..%2fetc%2fpasswd HTTP/1.1\r\n", want: 403},
}

// rawRequest sends c to the gateway on a fresh connection and returns the
// status of the answer.
func rawRequest(s *stack.Stack, host string, c badCase) (int, error) {
	addr := strings.TrimPrefix(s.GatewayURL(), "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	head := c.raw
	if !strings.Contains(head, "\r\n\r\n") {
		head += "Host: " + host + "\r\nConnection: close\r\n"
		if c.body != "" {
			head += fmt.Sprintf("Content-Length: %d\r\n", len(c.body))
		}
		head += "\r\n"
	} else {
		head = strings.Replace(head, "\r\n", "\r\nHost: "+host+"\r\nConnection: close\r\n", 1)
	}
	if _, err := io.WriteString(conn, head+c.body); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// h2cGet sends a GET over cleartext HTTP/2, whose :path may carry bytes an
// HTTP/1 request line may not.
func h2cGet(s *stack.Stack, host, path string) (int, error) {
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	req := &http.Request{Method: "GET", Host: host, Header: http.Header{},
		URL: &url.URL{Scheme: "http", Host: strings.TrimPrefix(s.GatewayURL(), "http://"), Opaque: path}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := (&http.Client{Transport: tr}).Do(req.WithContext(ctx))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// Malformed and hostile requests through the real Envoy, over both
// protocols: each gets the verdict of the host's policy (or Envoy's own
// refusal, for what Envoy does not forward), Envoy never sees the agent
// fail, and the agent neither crashes nor logs a panic.
func TestBadInputThroughEnvoy(t *testing.T) {
	smallBodies := fmt.Sprintf("  requestBody:\n    limitBytes: %d\n", badLimit)
	apiPrevent := policy{name: "api", namespace: "api", host: "api.example.com", mode: "Prevent"}
	for _, p := range []struct {
		protocol string
		policy   policy
	}{
		{"ext_authz", policy{name: "shop", namespace: "shop", host: "shop.example.com", mode: "Prevent", extraSpec: smallBodies}},
		{"ext_proc", policy{name: "shop", namespace: "shop", host: "shop.example.com", mode: "Prevent",
			extraSpec: smallBodies + "  responseBody:\n    inspect: true\n"}},
	} {
		t.Run(p.protocol, func(t *testing.T) {
			dir := demoManifests(t)
			writeFile(t, dir, "wafpolicy.yaml", policyYAML(p.policy, apiPrevent))
			s := startStack(t, stack.Config{Manifests: dir})
			for name, c := range badCases {
				host, want := "shop.example.com", []int{c.want}
				if c.host != "" {
					host, want = c.host, c.anyOf
				}
				got, err := rawRequest(s, host, c)
				if err != nil {
					t.Errorf("%s: %v", name, err)
				} else if !slices.Contains(want, got) {
					t.Errorf("%s: status %d, want one of %v", name, got, want)
				}
			}
			for path, want := range map[string]int{
				"/?q=caf\xc3\xa9\xff\xfe":        200,
				"/?" + sqliQuery + "\xff\xfe":    403,
				"/r\xff\xfe/x?" + "b=\xc3\x28ok": 200,
			} {
				if got, err := h2cGet(s, "shop.example.com", path); err != nil || got != want {
					t.Errorf("HTTP/2 GET %q: status %d (error %v), want %d", path, got, err, want)
				}
			}
			checkAgentNeverFailed(t, s, p.protocol)
		})
	}
}

// checkAgentNeverFailed reads Envoy's counters of failed calls to the
// agent, and the agent's log for panics.
func checkAgentNeverFailed(t *testing.T, s *stack.Stack, protocol string) {
	t.Helper()
	st, err := s.EnvoyStats(context.Background(), `^http\..*\.ext_(authz|proc)\.`)
	if err != nil {
		t.Fatal(err)
	}
	calls := uint64(0)
	for name, v := range st {
		for _, bad := range []string{".error", ".failure_mode_allowed", ".streams_failed", ".message_timeouts", ".spurious_msgs_received"} {
			if strings.HasSuffix(name, bad) && v != 0 {
				t.Errorf("Envoy counted %s = %d", name, v)
			}
		}
		if strings.HasSuffix(name, ".ok") || strings.HasSuffix(name, ".denied") || strings.HasSuffix(name, ".streams_started") {
			calls += v
		}
	}
	if calls == 0 {
		t.Errorf("Envoy counted no %s call at all: %v", protocol, st)
	}
	if err := s.Alive(); err != nil {
		t.Error(err)
	}
	if log, err := os.ReadFile(s.LogPaths().Agent); err != nil || strings.Contains(string(log), "panicked") {
		t.Errorf("agent log mentions a panic (read error %v)", err)
	}
}
