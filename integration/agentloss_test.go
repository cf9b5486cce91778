package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/integration/fixtures"
	"github.com/meshwaf/meshwaf/integration/stack"
)

// answer is one request of a load run, with when it was sent and answered.
type answer struct {
	req        request
	sent, done time.Time
	status     int // 0: no answer (err)
	body       string
	err        error
}

// startLoad sends the mix through the gateway from senders clients, each
// sending the mix in turn, until Stop.
func startLoad(s *stack.Stack, mix []request, senders int) *fixtures.Load[answer] {
	return fixtures.StartLoad(senders, func(_, n int) answer {
		r := mix[n%len(mix)]
		a := answer{req: r, sent: time.Now()}
		resp, err := trySend(s, r)
		a.done, a.status, a.body, a.err = time.Now(), resp.status, resp.body, err
		return a
	})
}

// tally counts answers by request and status, for the log.
type tally map[string]map[int]int

func (t tally) add(a answer) {
	k := a.req.String()
	if t[k] == nil {
		t[k] = map[int]int{}
	}
	t[k][a.status]++
}

func (t tally) String() string {
	var keys []string
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %-50s %v", k, t[k])
	}
	return b.String()
}

// The agent is in the path of every request, so what the gateway answers
// while it is gone decides whether users see errors, blocks or attacks
// passing. A steady mix of benign requests and attacks flows to two hosts
// while the agent is killed with SIGKILL and, two seconds later, started
// again, once with both hosts' policies failing Closed and once Open
// (Envoy has one failure mode per gateway, Open only if every policy on it
// says so: docs/wafpolicy.md, failureMode):
//   - while the agent is gone, Closed answers every request with Envoy's
//     503, never the 403 of a block, with the body the EnvoyFilter's reply
//     mapper gives it (the WAF is unavailable), and Open lets every request
//     through;
//   - while the new agent starts, it refuses calls until its policies are
//     compiled (agent/readygate.go), so every answer is either that one or
//     the right verdict;
//   - under Closed no attack passes, in any phase;
//   - from two seconds after the agent is ready, every verdict is right
//     again, as it was before.
func TestAgentKilledUnderLoad(t *testing.T) {
	for _, mode := range []string{"Closed", "Open"} {
		t.Run(mode, func(t *testing.T) { agentKilledUnderLoad(t, mode) })
	}
}

func agentKilledUnderLoad(t *testing.T, failureMode string) {
	dir := demoManifests(t)
	const api = "api.example.com"
	extra := "  failureMode: " + failureMode + "\n"
	writeFile(t, dir, "wafpolicy.yaml", policyYAML(
		policy{name: "shop", namespace: "shop", host: "shop.example.com", mode: "Prevent", extraSpec: extra},
		policy{name: "api", namespace: "api", host: api, mode: "Prevent", extraSpec: extra}))
	s := startStack(t, stack.Config{Manifests: dir})
	apiAttack, apiBenign := onHost(sqliGET, api), onHost(benign, api)
	waitStatus(t, s, sqliGET, http.StatusForbidden, hotReloadDeadline)
	waitStatus(t, s, apiAttack, http.StatusForbidden, hotReloadDeadline)

	l := startLoad(s, []request{benign, sqliGET, apiBenign, apiAttack}, 4)
	time.Sleep(time.Second)
	killed := time.Now()
	if err := s.KillAgent(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	restarted := time.Now()
	if err := s.RestartAgent(ctx); err != nil {
		l.Stop()
		t.Fatal(err)
	}
	ready := time.Now()
	const settle = 2 * time.Second
	time.Sleep(settle + 2*time.Second)
	answers := l.Stop()

	right := map[request]int{benign: http.StatusOK, sqliGET: http.StatusForbidden, apiBenign: http.StatusOK, apiAttack: http.StatusForbidden}
	unavailable := http.StatusServiceUnavailable
	if failureMode == "Open" {
		unavailable = http.StatusOK
	}
	phases := map[string]tally{"before": {}, "outage": {}, "starting": {}, "settling": {}, "after": {}, "across a boundary": {}}
	for _, a := range answers {
		attack := a.req == sqliGET || a.req == apiAttack
		if failureMode == "Closed" && attack && a.status == http.StatusOK {
			t.Errorf("an attack passed a Closed policy: %s sent %s after the kill (agent ready %s after it)",
				a.req, a.sent.Sub(killed).Round(time.Millisecond), ready.Sub(killed).Round(time.Millisecond))
		}
		var phase string
		var want int
		switch {
		case a.done.Before(killed):
			phase, want = "before", right[a.req]
		case a.sent.After(killed) && a.done.Before(restarted):
			phase, want = "outage", unavailable
		case a.sent.After(restarted) && a.done.Before(ready):
			// The new agent refuses calls until its policies are compiled,
			// then answers; RestartAgent sees it ready only at its next
			// poll. Either answer is right, nothing else is.
			phase = "starting"
			if a.status != unavailable && a.status != right[a.req] {
				t.Errorf("starting %s: status %d (body %q), want %d or %d", a.req, a.status, a.body, unavailable, right[a.req])
			}
		case a.sent.After(ready.Add(settle)):
			phase, want = "after", right[a.req]
		case a.sent.After(ready):
			phase = "settling"
		default:
			phase = "across a boundary"
		}
		phases[phase].add(a)
		if want != 0 && a.status != want {
			t.Errorf("%s %s: status %d (body %q, error %v), want %d", phase, a.req, a.status, a.body, a.err, want)
		}
		if phase == "outage" && failureMode == "Closed" && !saysUnavailable(a.body) {
			t.Errorf("outage %s: body %q does not say the WAF is unavailable", a.req, a.body)
		}
	}
	for _, phase := range []string{"before", "outage", "after"} {
		for r := range right {
			if phases[phase][r.String()] == nil {
				t.Errorf("no %s answered in phase %q: the load did not cover it", r, phase)
			}
		}
	}
	t.Logf("failureMode %s: agent killed, restarted 2 s later, ready %s after the kill; answers by phase and status:",
		failureMode, ready.Sub(killed).Round(time.Millisecond))
	for _, phase := range []string{"before", "across a boundary", "outage", "starting", "settling", "after"} {
		t.Logf("%s:%s", phase, phases[phase])
	}
}

// saysUnavailable reports whether body is the reply the EnvoyFilter maps a
// fail-closed WAF filter's error to: JSON saying the WAF is unavailable,
// with the request's id.
func saysUnavailable(body string) bool {
	var reply struct {
		Error     string `json:"error"`
		RequestID string `json:"request_id"`
	}
	return json.Unmarshal([]byte(body), &reply) == nil &&
		reply.Error == "web application firewall unavailable" && reply.RequestID != ""
}
