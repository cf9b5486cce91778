package agent

import (
	"log/slog"
	"sync"
	"testing"

	coraza "github.com/corazawaf/coraza/v3"
	"go.uber.org/goleak"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/seclang"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// sharedCompile memoizes compilation across every test in the package: a CRS
// compile costs 50-300 ms and about 20 MiB, and most tests use the same few
// policies.
var sharedCompile = func() CompileFunc {
	var mu sync.Mutex
	type result struct {
		once sync.Once
		waf  coraza.WAF
		err  error
	}
	cache := map[string]*result{}
	return func(directives string) (coraza.WAF, error) {
		mu.Lock()
		r := cache[directives]
		if r == nil {
			r = &result{}
			cache[directives] = r
		}
		mu.Unlock()
		r.once.Do(func() { r.waf, r.err = CompileCRS(directives) })
		return r.waf, r.err
	}
}()

// testPolicy is the policy most tests start from: Prevent, PL1, defaults.
func testPolicy(gateway, host string, edit ...func(*agentapi.HostPolicy)) *agentapi.HostPolicy {
	p := &agentapi.HostPolicy{
		Gateway:       gateway,
		Host:          host,
		Policy:        "shop/shop",
		PolicyVersion: "v1",
		Mode:          agentapi.Mode_MODE_PREVENT,
	}
	for _, e := range edit {
		e(p)
	}
	return p
}

// withDefaults fills defaults the way Registry.Prepare does, for tests
// that build entries by hand.
func withDefaults(p *agentapi.HostPolicy) *agentapi.HostPolicy {
	return seclang.WithDefaults(p)
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
