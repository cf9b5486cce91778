package agent

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	coraza "github.com/corazawaf/coraza/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshwaf/meshwaf/agentapi"
)

// churnPolicy is version i of one host's policy. Its custom rules hold
// regular expressions no other version has, so every version compiles
// into a WAF of its own and fills Coraza's process-wide regex cache with
// entries only that WAF owns: a WAF that is kept, or dropped without being
// closed, shows up as heap growth.
func churnPolicy(i, rules int) *agentapi.HostPolicy {
	var b strings.Builder
	for r := range rules {
		fmt.Fprintf(&b, "SecRule ARGS:q%d \"@rx ^churn-%d-%d-[a-z]{2,8}\\\\d{1,4}(?:x|y|z)+$\" \"id:%d,phase:2,pass,nolog\"\n", r, i, r, 10000+r)
	}
	return testPolicy(testGateway, "shop.example.com", func(p *agentapi.HostPolicy) {
		p.PolicyVersion = fmt.Sprint(i)
		p.CustomRules = b.String()
	})
}

// churn applies n successive versions of one host's policy through the
// policy client, as n delta xDS responses would.
func churn(tb testing.TB, c *policyClient, from, n, rules int) {
	tb.Helper()
	name := agentapi.ResourceName(testGateway, "shop.example.com")
	for i := from; i < from+n; i++ {
		body, err := anypb.New(churnPolicy(i, rules))
		if err != nil {
			tb.Fatal(err)
		}
		ack := c.apply(&discoveryv3.DeltaDiscoveryResponse{
			TypeUrl: agentapi.HostPolicyTypeURL, Nonce: fmt.Sprint(i),
			Resources: []*discoveryv3.Resource{{Name: name, Version: fmt.Sprint(i), Resource: body}},
		})
		if ack.GetErrorDetail() != nil {
			tb.Fatalf("version %d NACKed: %s", i, ack.GetErrorDetail().GetMessage())
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func churnClient(tb testing.TB, compile CompileFunc) *policyClient {
	tb.Helper()
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	return newPolicyClient(nil, &corev3.Node{Id: "n"}, NewRegistry(compile), m, discardLogger(), backoff{})
}

// withoutCRS compiles the rendered directives minus the CRS itself, which
// keeps a thousand compiles fast; the policy's own rules, the registry and
// Coraza's caches behave as with the CRS. BenchmarkPolicyChurnCRS measures
// the same with the whole CRS.
func withoutCRS(d string) (coraza.WAF, error) {
	d = strings.Replace(d, "Include @crs-setup.conf.example\n", "", 1)
	d = strings.Replace(d, "Include @owasp_crs/*.conf\n", "", 1)
	return CompileCRS(d)
}

// TestPolicyChurnKeepsMemoryFlat changes one host's policy 1,000 times:
// each change compiles a new WAF, swaps it in and releases the old one, so
// the heap after the changes must be what it was before, give or take.
func TestPolicyChurnKeepsMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles 1,000 WAFs")
	}
	const rules = 20
	c := churnClient(t, withoutCRS)
	churn(t, c, 0, 50, rules) // warm up caches and pools
	before := heapInUse()
	churn(t, c, 50, 1000, rules)
	after := heapInUse()
	growth := int64(after) - int64(before)
	t.Logf("heap in use: %.1f MiB before, %.1f MiB after 1,000 policy changes (%+.1f MiB)",
		float64(before)/(1<<20), float64(after)/(1<<20), float64(growth)/(1<<20))
	if n := c.reg.WAFCount(); n != 1 {
		t.Errorf("WAFs held = %d, want 1", n)
	}
	// Keeping every WAF (or its cached regexes) costs tens of MiB here; a
	// flat heap moves by allocator noise only.
	if growth > 4<<20 {
		t.Errorf("heap grew by %.1f MiB across 1,000 policy changes, want under 4 MiB", float64(growth)/(1<<20))
	}
}

// BenchmarkPolicyChurnCRS changes the policy b.N times with the whole CRS
// compiled each time and reports the heap growth per change:
//
//	go test ./agent -run '^$' -bench PolicyChurnCRS -benchtime 1000x
func BenchmarkPolicyChurnCRS(b *testing.B) {
	c := churnClient(b, CompileCRS)
	churn(b, c, 0, 5, 1)
	before := heapInUse()
	b.ResetTimer()
	churn(b, c, 5, b.N, 1)
	b.StopTimer()
	after := heapInUse()
	b.ReportMetric(float64(int64(after)-int64(before))/float64(b.N), "heap-B/change")
	b.ReportMetric(float64(after)/(1<<20), "heap-MiB-after")
}
