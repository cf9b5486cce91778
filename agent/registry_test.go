package agent

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	coraza "github.com/corazawaf/coraza/v3"

	"github.com/meshwaf/meshwaf/agentapi"
)

// countingCompile compiles without the CRS (fast) and counts compiles.
type countingCompile struct {
	calls atomic.Int32
	fail  string // directives containing this fail to compile
}

func (c *countingCompile) compile(d string) (coraza.WAF, error) {
	c.calls.Add(1)
	if c.fail != "" && strings.Contains(d, c.fail) {
		return nil, errors.New("bad rules")
	}
	return coraza.NewWAF(coraza.NewWAFConfig())
}

func TestRegistrySharesAndDropsWAFs(t *testing.T) {
	cc := &countingCompile{}
	reg := NewRegistry(cc.compile)
	prepare := preparer(t, reg)
	a := prepare("a.example.com")
	b := prepare("b.example.com") // same settings as a
	c := prepare("c.example.com", withMode(agentapi.Mode_MODE_DETECT))
	off := prepare("d.example.com", withMode(agentapi.Mode_MODE_OFF))
	if a.waf != b.waf {
		t.Error("equal policies got different WAFs")
	}
	if a.waf == c.waf {
		t.Error("different policies share a WAF")
	}
	if off.waf != nil {
		t.Error("mode Off compiled a WAF")
	}
	if n := cc.calls.Load(); n != 2 {
		t.Errorf("compiles = %d, want 2", n)
	}
	reg.Replace(map[string]*Entry{a.Name: a, b.Name: b, c.Name: c, off.Name: off})
	if n := reg.WAFCount(); n != 2 {
		t.Errorf("WAFs = %d, want 2", n)
	}
	reg.Replace(map[string]*Entry{a.Name: a})
	if n := reg.WAFCount(); n != 1 {
		t.Errorf("after dropping c, WAFs = %d, want 1", n)
	}
	if e := reg.Lookup([]string{testGateway}, "c.example.com"); e != nil {
		t.Error("removed host still routed")
	}
}

func TestRegistryCompilesOncePerContentConcurrently(t *testing.T) {
	cc := &countingCompile{}
	reg := NewRegistry(cc.compile)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			host := string(rune('a'+i)) + ".example.com"
			if _, err := reg.Prepare(agentapi.ResourceName(testGateway, host), "1", testPolicy(testGateway, host)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := cc.calls.Load(); n != 1 {
		t.Errorf("compiles = %d, want 1", n)
	}
}

func TestRegistryReportsCompileErrors(t *testing.T) {
	cc := &countingCompile{fail: "badbot"}
	reg := NewRegistry(cc.compile)
	p := testPolicy(testGateway, "*", func(p *agentapi.HostPolicy) {
		p.CustomRules = `SecRule REQUEST_HEADERS:User-Agent "@contains badbot" "id:10001,deny"`
	})
	if _, err := reg.Prepare("x", "1", p); err == nil || !strings.Contains(err.Error(), "compile: bad rules") {
		t.Errorf("err = %v", err)
	}
	p.CustomRules = "SecRuleEngine Off"
	if _, err := reg.Prepare("x", "1", p); err == nil || !strings.Contains(err.Error(), "render:") {
		t.Errorf("err = %v", err)
	}
}

// closeCountingWAF records whether Replace released it.
type closeCountingWAF struct {
	coraza.WAF
	closed *atomic.Int32
}

func (w closeCountingWAF) Close() error {
	w.closed.Add(1)
	return nil
}

// A WAF is closed exactly once, when the last entry using it is replaced;
// a WAF still shared by another host stays open.
func TestRegistryClosesDroppedWAFsOnce(t *testing.T) {
	closed := map[string]*atomic.Int32{}
	compile := func(d string) (coraza.WAF, error) {
		w, err := coraza.NewWAF(coraza.NewWAFConfig())
		n := &atomic.Int32{}
		closed[d] = n
		return closeCountingWAF{WAF: w, closed: n}, err
	}
	reg := NewRegistry(compile)
	prepare := preparer(t, reg)
	a, b := prepare("a.example.com"), prepare("b.example.com")
	detect := prepare("c.example.com", withMode(agentapi.Mode_MODE_DETECT))
	reg.Replace(map[string]*Entry{a.Name: a, b.Name: b, detect.Name: detect})

	// c switches to the content a and b share: its own WAF goes.
	c := prepare("c.example.com")
	reg.Replace(map[string]*Entry{a.Name: a, b.Name: b, c.Name: c})
	reg.Replace(map[string]*Entry{a.Name: a, b.Name: b, c.Name: c})
	counts := map[string]int32{}
	for d, n := range closed {
		// The engine line tells the two contents apart.
		for _, line := range strings.Split(d, "\n") {
			if strings.HasPrefix(line, "SecRuleEngine ") {
				counts[line] = n.Load()
			}
		}
	}
	if counts["SecRuleEngine DetectionOnly"] != 1 || counts["SecRuleEngine On"] != 0 {
		t.Errorf("close calls by WAF = %v, want the Detect WAF closed once and the shared one open", counts)
	}
	if c.waf != a.waf || reg.WAFCount() != 1 {
		t.Errorf("hosts with equal content share %d WAFs", reg.WAFCount())
	}
}

// preparer prepares the test policy of a host on reg, failing t on error.
func preparer(t *testing.T, reg *Registry) func(host string, edit ...func(*agentapi.HostPolicy)) *Entry {
	return func(host string, edit ...func(*agentapi.HostPolicy)) *Entry {
		t.Helper()
		e, err := reg.Prepare(agentapi.ResourceName(testGateway, host), "1", testPolicy(testGateway, host, edit...))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
}
