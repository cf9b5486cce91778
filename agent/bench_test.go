package agent

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	coraza "github.com/corazawaf/coraza/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshwaf/meshwaf/agentapi"
)

// The benchmarks measure the agent in-process: Coraza alone (the floor), and
// each protocol adapter with everything the agent does per request (policy
// lookup, conversion, verdict, metrics, audit). make bench measures the same
// requests over gRPC and through Envoy.
//
//	go test ./agent -run '^$' -bench . -benchtime 200x

// benchRequest is one request of the benchmark mix.
type benchRequest struct {
	method, path string
	headers      map[string]string
	body         string
}

// jsonKB is a 1 KB JSON document of the kind an API receives.
var jsonKB = func() string {
	var items []string
	for i := range 12 {
		items = append(items, fmt.Sprintf(`{"sku":"SKU-%04d","name":"Item number %d","qty":%d,"price":%d.99}`, i, i, i%3+1, 10+i))
	}
	doc := `{"customer":{"name":"Alice Example","email":"alice@example.com","address":"1 Main Street, Springfield"},"items":[` +
		strings.Join(items, ",") + `],"note":"leave at the door"}`
	return doc + strings.Repeat(" ", max(0, 1024-len(doc)))
}()

var benchRequests = []struct {
	name string
	req  benchRequest
}{
	{"benign-get", benchRequest{method: "GET", path: "/products?category=shoes&page=2&sort=price"}},
	{"form-post", benchRequest{method: "POST", path: "/comments", headers: formType,
		body: "author=alice&email=alice%40example.com&rating=5&comment=Nice+shoes%2C+would+buy+again."}},
	{"json-1k-post", benchRequest{method: "POST", path: "/api/orders",
		headers: map[string]string{"content-type": "application/json"}, body: jsonKB}},
	{"sqli-get", benchRequest{method: "GET", path: sqliPath}},
}

// benchVariant is a policy plus a change to its rendered directives, for
// comparing Coraza options the policy does not expose.
type benchVariant struct {
	name   string
	policy *agentapi.HostPolicy
	edit   func(directives string) string
}

func paranoia(pl int32) func(*agentapi.HostPolicy) {
	return func(p *agentapi.HostPolicy) { p.Crs = &agentapi.CoreRuleSet{ParanoiaLevel: pl} }
}

// benchInspector compiles v (outside the timed loop) and serves it for
// every host.
func benchInspector(b *testing.B, v benchVariant) *inspector {
	b.Helper()
	compile := sharedCompile
	if v.edit != nil {
		compile = func(d string) (coraza.WAF, error) { return sharedCompile(v.edit(d)) }
	}
	reg := NewRegistry(compile)
	e, err := reg.Prepare(agentapi.ResourceName(testGateway, "*"), "1", v.policy)
	if err != nil {
		b.Fatal(err)
	}
	reg.Replace(map[string]*Entry{e.Name: e})
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	return &inspector{reg: reg, audit: NewAuditLog(nil), metrics: m, log: discardLogger(), now: time.Now}
}

// runBench runs every request under every variant. Variants of the same
// request run next to each other, so that a machine whose load changes over
// the run (a shared CI runner) biases the comparison as little as possible.
func runBench(b *testing.B, variants []benchVariant) {
	inspectors := make([]*inspector, len(variants))
	for i, v := range variants {
		inspectors[i] = benchInspector(b, v)
	}
	for _, r := range benchRequests {
		for i, v := range variants {
			in := inspectors[i]
			b.Run(r.name+"/"+v.name+"/coraza", func(b *testing.B) { withCPU(b, func() { benchCoraza(b, in, r.req) }) })
			b.Run(r.name+"/"+v.name+"/ext_authz", func(b *testing.B) { withCPU(b, func() { benchAuthz(b, in, r.req) }) })
			b.Run(r.name+"/"+v.name+"/ext_proc", func(b *testing.B) { withCPU(b, func() { benchProc(b, in, r.req) }) })
		}
	}
}

// withCPU reports the process's CPU time per operation next to the wall
// time: on a busy machine the wall time includes waiting for a CPU, the CPU
// time does not.
func withCPU(b *testing.B, run func()) {
	before := cpuTime()
	run()
	b.ReportMetric(float64(cpuTime()-before)/float64(b.N)/1e6, "cpu-ms/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkInspect is the request mix at paranoia levels 1 and 2.
func BenchmarkInspect(b *testing.B) {
	runBench(b, []benchVariant{
		{name: "pl1", policy: testPolicy(testGateway, "*")},
		{name: "pl2", policy: testPolicy(testGateway, "*", paranoia(2))},
	})
}

// BenchmarkOptions compares Coraza's performance options on the same mix:
// its @rx prefilter (SecRxPreFilter; off in the rendered directives, see
// docs/decisions.md) at PL1 and PL2, and CRS early blocking at PL1.
func BenchmarkOptions(b *testing.B) {
	runBench(b, []benchVariant{
		{name: "pl1-prefilter-off", policy: testPolicy(testGateway, "*"), edit: setPrefilter(false)},
		{name: "pl1-prefilter-on", policy: testPolicy(testGateway, "*"), edit: setPrefilter(true)},
		{name: "pl2-prefilter-off", policy: testPolicy(testGateway, "*", paranoia(2)), edit: setPrefilter(false)},
		{name: "pl2-prefilter-on", policy: testPolicy(testGateway, "*", paranoia(2)), edit: setPrefilter(true)},
		{name: "pl1-early-blocking", policy: testPolicy(testGateway, "*", func(p *agentapi.HostPolicy) {
			p.Crs = &agentapi.CoreRuleSet{EarlyBlocking: true}
		})},
	})
}

// benchCoraza is the floor: the same phases on a bare transaction, without
// any of the agent's work.
func benchCoraza(b *testing.B, in *inspector, r benchRequest) {
	waf := in.reg.Lookup([]string{testGateway}, "h").waf.waf
	for b.Loop() {
		tx := waf.NewTransaction()
		tx.ProcessConnection("127.0.0.1", 54321, "10.0.0.2", 8080)
		tx.ProcessURI(r.path, r.method, "HTTP/1.1")
		tx.AddRequestHeader("host", "shop.example.com")
		tx.AddRequestHeader("user-agent", "curl/8.5.0")
		tx.AddRequestHeader("accept", "*/*")
		for k, v := range r.headers {
			tx.AddRequestHeader(k, v)
		}
		if tx.ProcessRequestHeaders() == nil {
			if r.body != "" {
				_, _, _ = tx.WriteRequestBody([]byte(r.body))
			}
			_, _ = tx.ProcessRequestBody()
		}
		tx.ProcessLogging()
		_ = tx.Close()
	}
}

func benchAuthz(b *testing.B, in *inspector, r benchRequest) {
	srv := &authzServer{in: in}
	ctx := gatewayCtx(testGateway)
	req := httpCheck(r.method, "shop.example.com", r.path, r.headers, r.body)
	for b.Loop() {
		if _, err := srv.Check(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func benchProc(b *testing.B, in *inspector, r benchRequest) {
	msgs := []*extprocv3.ProcessingRequest{procRequest(r.method, "shop.example.com", r.path, r.headers, r.body, filterv3.ProcessingMode_BUFFERED)}
	if r.body != "" {
		msgs = append(msgs, procRequestBody(r.body, true))
	}
	for b.Loop() {
		ps := &procStream{in: in, gateways: []string{testGateway}}
		for _, m := range msgs {
			if ps.handle(m).GetImmediateResponse() != nil {
				break
			}
		}
		ps.finish()
	}
}

// setPrefilter switches Coraza's @rx prefilter on or off, whatever the
// rendered directives say.
func setPrefilter(on bool) func(string) string {
	return func(d string) string {
		var lines []string
		for _, l := range strings.Split(d, "\n") {
			if !strings.HasPrefix(l, "SecRxPreFilter ") {
				lines = append(lines, l)
			}
		}
		d = strings.Join(lines, "\n")
		return strings.Replace(d, "Include @coraza.conf-recommended\n",
			"Include @coraza.conf-recommended\nSecRxPreFilter "+map[bool]string{true: "On", false: "Off"}[on]+"\n", 1)
	}
}
