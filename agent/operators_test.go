package agent

import (
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/meshwaf/meshwaf/engine"
)

// stockChildEnv makes TestInvalidUTF8MatchesLikeStock, run as a child of
// itself, compile with Coraza's own operators and print what matched.
const stockChildEnv = "MESHWAF_AGENT_TEST_STOCK_OPERATORS"

// invalidUTF8Payloads are attacks with a byte that is not UTF-8 inside.
// RE2 alone skips such bytes: `UNION\xff SELECT` loses CRS 942270 and
// `<script\xff>` 941110 (engine/rx_test.go, TestRE2AloneDisagrees).
var invalidUTF8Payloads = map[string]struct {
	value string
	rule  int // a rule stock Coraza matches wherever the CRS looks
}{
	"sqli":   {"1' UNION\xff SELECT password FROM users--", 942270},
	"script": {"<script\xff>", 941110},
}

// invalidUTF8Request places payload in one part of a request.
func invalidUTF8Request(place, payload string) badRequest {
	enc := url.QueryEscape(payload)
	switch place {
	case "query":
		return badRequest{method: "GET", path: "/search?q=" + enc}
	case "form":
		return badRequest{method: "POST", path: "/comments", headers: formType, body: "comment=" + enc}
	case "json":
		// Raw bytes inside a JSON string, as a client can send them.
		b, _ := json.Marshal(map[string]string{"comment": "PLACEHOLDER"})
		body := strings.Replace(string(b), "PLACEHOLDER", strings.ReplaceAll(payload, `"`, `\"`), 1)
		return badRequest{method: "POST", path: "/api/comments",
			headers: map[string]string{"content-type": "application/json"}, body: body}
	case "cookie":
		return badRequest{method: "GET", path: "/", headers: map[string]string{"cookie": "comment=" + payload}}
	case "referer":
		return badRequest{method: "GET", path: "/", headers: map[string]string{"referer": "http://shop.example.com/?" + payload}}
	case "header":
		return badRequest{method: "GET", path: "/", headers: map[string]string{"x-comment": payload}}
	}
	panic(place)
}

var invalidUTF8Places = []string{"query", "form", "json", "cookie", "referer", "header"}

// invalidUTF8Matches sends every payload in every place through ext_authz,
// at paranoia levels 1 and 2, and returns the ids of the rules each
// request's audit line lists, keyed by "PL/place/payload".
func invalidUTF8Matches(t *testing.T) map[string][]int {
	t.Helper()
	host := "shop.example.com"
	out := map[string][]int{}
	for _, pl := range []int32{1, 2} {
		authz, audit := newTestAuthz(t, testPolicy(testGateway, host, paranoia(pl)))
		for _, place := range invalidUTF8Places {
			for name, p := range invalidUTF8Payloads {
				br := invalidUTF8Request(place, p.value)
				before := len(audit.records(t))
				if _, err := authz.Check(gatewayCtx(testGateway), httpCheck(br.method, host, br.path, br.headers, br.body)); err != nil {
					t.Fatalf("%s %s: %v", place, name, err)
				}
				ids := []int{}
				for _, rec := range audit.records(t)[before:] {
					for _, r := range rec.Rules {
						ids = append(ids, r.ID)
					}
				}
				slices.Sort(ids)
				out[invalidUTF8Key(pl, place, name)] = ids
			}
		}
	}
	return out
}

func invalidUTF8Key(pl int32, place, payload string) string {
	return string(rune('0'+pl)) + "/" + place + "/" + payload
}

// TestInvalidUTF8MatchesLikeStock: payloads with bytes that are not UTF-8,
// in the query string, a form, a JSON body and headers, match exactly the
// rules with the engine that they match with Coraza's own operators. The
// stock side runs in a child process: operators are registered once per
// process.
func TestInvalidUTF8MatchesLikeStock(t *testing.T) {
	if os.Getenv(stockChildEnv) == "1" {
		UseStockOperators()
		got := invalidUTF8Matches(t)
		if engine.Installed() {
			t.Fatal("the engine is installed in the stock child")
		}
		b, _ := json.Marshal(got)
		os.Stdout.Write(append(append([]byte("STOCK "), b...), '\n'))
		return
	}
	withEngine := invalidUTF8Matches(t)
	if !engine.Installed() {
		t.Fatal("the agent compiled without the engine")
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestInvalidUTF8MatchesLikeStock$", "-test.count=1")
	cmd.Env = append(os.Environ(), stockChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("stock child: %v\n%s", err, out)
	}
	var stock map[string][]int
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "STOCK "); ok {
			if err := json.Unmarshal([]byte(rest), &stock); err != nil {
				t.Fatal(err)
			}
		}
	}
	if stock == nil {
		t.Fatalf("stock child printed no result:\n%s", out)
	}

	for key, want := range stock {
		if got := withEngine[key]; !slices.Equal(got, want) {
			t.Errorf("%s: engine matched %v, stock Coraza %v", key, got, want)
		}
	}
	// The comparison must be about something: stock Coraza finds each
	// payload where the CRS looks for it.
	for _, place := range []string{"query", "form", "json"} {
		for name, p := range invalidUTF8Payloads {
			if key := invalidUTF8Key(1, place, name); !slices.Contains(stock[key], p.rule) {
				t.Errorf("%s: stock Coraza did not match %d (matched %v)", key, p.rule, stock[key])
			}
		}
	}
	if key := invalidUTF8Key(1, "cookie", "sqli"); !slices.Contains(stock[key], 942270) {
		t.Errorf("%s: stock Coraza did not match 942270 (matched %v)", key, stock[key])
	}
	if key := invalidUTF8Key(1, "referer", "script"); !slices.Contains(stock[key], 941110) {
		t.Errorf("%s: stock Coraza did not match 941110 (matched %v)", key, stock[key])
	}
}
