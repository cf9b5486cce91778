package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/integration/bench/scenario"
	"github.com/meshwaf/meshwaf/integration/stack"
)

// hostileAgentRSSBound is the agent's memory after the hostile requests
// below: the demo policy's WAF and its Go runtime take about 100 MiB, each
// request at most a few times its own size while it is inspected.
const hostileAgentRSSBound = 384 << 20

// Requests built to cost a WAF as much as possible, through Envoy with the
// demo's policy (Prevent, default limits, failureMode Closed): each gets an
// answer (the policy's verdict, or Envoy's own refusal for what it does
// not forward) within Envoy's timeout for the agent plus the time the
// client took to send it, the agent keeps running, no call to it fails,
// and its memory stays under hostileAgentRSSBound.
func TestHostileTrafficAtScale(t *testing.T) {
	s := startStack(t, stack.Config{Manifests: demoManifests(t)})
	waitStatus(t, s, sqliGET, http.StatusForbidden, hotReloadDeadline)
	before, err := agentRSS(s)
	if err != nil {
		t.Fatal(err)
	}
	// What each request may get: the policy's verdict, or Envoy's own
	// refusal for what it does not forward.
	anyOf := map[string][]int{
		// More than the 1,000 arguments Coraza parses: rule 419900 denies,
		// with the policy's block status.
		"10,000 query arguments": {403},
		// The two bodies that take the CRS longest (some 50 and 400 ms
		// here): on a loaded machine the agent may answer by the failure
		// mode (Closed: 503) at its deadline instead, which is the
		// contract for an inspection that does not fit Envoy's timeout.
		"JSON nested 10,000 deep":    {200, 403, 503},
		"multipart with 1,000 parts": {200, 403, 503},
		// Envoy's (and Istio's) limit is 100 headers: it answers 431
		// itself, and the agent is never asked.
		"1,000 headers":           {431},
		"a body of the limit + 1": {413},
	}
	type hostile struct {
		name    string
		head    string // request line and headers but Host, Content-Length and the blank line
		body    string
		trickle time.Duration // between body bytes; 0 sends the body at once
		anyOf   []int
	}
	// The bench sends the same requests to nginx + ModSecurity for the cost.
	var tests []hostile
	for _, sc := range scenario.Hostile(int(v1alpha1.DefaultRequestBodyLimitBytes)) {
		head := sc.Method + " " + sc.Target + " HTTP/1.1\r\n"
		for _, h := range sc.Headers {
			head += h[0] + ": " + h[1] + "\r\n"
		}
		if sc.ContentType != "" {
			head += "Content-Type: " + sc.ContentType + "\r\n"
		}
		if anyOf[sc.Name] == nil {
			t.Fatalf("no expected answer for %q", sc.Name)
		}
		tests = append(tests, hostile{name: sc.Name, head: head, body: string(sc.Body), anyOf: anyOf[sc.Name]})
	}
	tests = append(tests, hostile{name: "a body trickled one byte per 100 ms",
		head: "POST /c HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n",
		body: "a=1&b=2&c=3", trickle: 100 * time.Millisecond, anyOf: []int{200}})
	// Envoy waits this long for the agent (the control plane's default
	// --agent-timeout); the rest is slack for a loaded CI machine.
	const agentTimeout, slack = 500 * time.Millisecond, 1500 * time.Millisecond
	for _, tc := range tests {
		name := tc.name
		status, took, err := sendSlowly(s, "shop.example.com", tc.head, tc.body, tc.trickle)
		upload := time.Duration(len(tc.body)) * tc.trickle
		switch {
		case err != nil:
			t.Errorf("%s: %v", name, err)
		case !slices.Contains(tc.anyOf, status):
			t.Errorf("%s: status %d, want one of %v", name, status, tc.anyOf)
		case took > upload+agentTimeout+slack:
			t.Errorf("%s: answered after %s, want within %s of the upload (%s)", name, took.Round(time.Millisecond), agentTimeout+slack, upload)
		}
		t.Logf("%s: status %d after %s", name, status, took.Round(time.Millisecond))
	}
	checkAgentNeverFailed(t, s, "ext_authz")
	after, err := agentRSS(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("agent RSS %d MiB before, %d MiB after", before>>20, after>>20)
	if after > hostileAgentRSSBound {
		t.Errorf("agent RSS %d MiB after the hostile requests, bound %d MiB", after>>20, hostileAgentRSSBound>>20)
	}
}

// sendSlowly writes a request on a fresh connection, the body one byte
// every trickle (all at once for 0), and returns the answer's status and
// how long it took from the first byte sent.
func sendSlowly(s *stack.Stack, host, head, body string, trickle time.Duration) (int, time.Duration, error) {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(s.GatewayURL(), "http://"), 5*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	head += "Host: " + host + "\r\nConnection: close\r\n"
	if body != "" {
		head += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n"
	}
	if _, err := io.WriteString(conn, head+"\r\n"); err != nil {
		return 0, 0, err
	}
	if trickle == 0 {
		_, err = io.WriteString(conn, body)
	}
	for i := 0; trickle > 0 && i < len(body) && err == nil; i++ {
		time.Sleep(trickle)
		_, err = conn.Write([]byte{body[i]})
	}
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(start), nil
}

// agentRSS is the agent's resident memory (VmRSS).
func agentRSS(s *stack.Stack) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.PIDs().Agent))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", s.PIDs().Agent)
}
