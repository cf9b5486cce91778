package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	coraza "github.com/corazawaf/coraza/v3"
	"github.com/corazawaf/coraza/v3/experimental"
	"golang.org/x/sync/singleflight"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/engine"
	"github.com/meshwaf/meshwaf/seclang"
)

// CompileFunc turns rendered directives into a WAF. Tests inject a
// memoizing one so that the expensive CRS compile happens once per process.
type CompileFunc func(directives string) (coraza.WAF, error)

// CompileCRS compiles directives against the embedded CRS filesystem as
// the engine serves it (engine.CRS: the CRS rules without logdata), with
// the engine's operators unless UseStockOperators was called.
func CompileCRS(directives string) (coraza.WAF, error) {
	installOperators()
	return coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(engine.CRS).WithDirectives(directives))
}

// Entry is one applied host policy: the resource, its defaults-filled policy
// and the WAF that enforces it (nil in mode Off, which inspects nothing).
type Entry struct {
	Name    string
	Version string
	Policy  *agentapi.HostPolicy
	waf     *sharedWAF
	// shadow is the WAF of the policy's shadow configuration, nil without
	// one (shadow.go).
	shadow *sharedWAF
}

// sharedWAF is one compiled WAF, shared by every entry whose rendered
// directives hash to the same key.
type sharedWAF struct {
	key string
	waf coraza.WAF
	// cost is how long this WAF's steps take, for load shedding (steps.go).
	cost stepCost
}

// routes maps gateway → host → entry. It is immutable once published.
type routes map[string]map[string]*Entry

// Registry holds the compiled WAFs and the routing table Checks read.
// Prepare and Replace are called by one goroutine (the policy client);
// Lookup and Entries may be called from any goroutine at any time.
type Registry struct {
	compile CompileFunc
	table   atomic.Pointer[routes]
	flight  singleflight.Group

	mu   sync.Mutex
	wafs map[string]*sharedWAF
}

// NewRegistry returns an empty registry; compile nil means CompileCRS.
func NewRegistry(compile CompileFunc) *Registry {
	if compile == nil {
		compile = CompileCRS
	}
	r := &Registry{compile: compile, wafs: map[string]*sharedWAF{}}
	r.table.Store(&routes{})
	return r
}

// Prepare renders and compiles a policy into an entry without publishing
// it. Compilation runs outside any lock; concurrent requests for the same
// directives share one compile.
func (r *Registry) Prepare(name, version string, p *agentapi.HostPolicy) (*Entry, error) {
	p = seclang.WithDefaults(p)
	e := &Entry{Name: name, Version: version, Policy: p}
	if p.GetMode() == agentapi.Mode_MODE_OFF {
		return e, nil
	}
	var err error
	if e.waf, err = r.compiled(p); err != nil {
		return nil, err
	}
	if p.GetShadow() != nil {
		if e.shadow, err = r.compiled(shadowPolicy(p)); err != nil {
			return nil, fmt.Errorf("shadow: %w", err)
		}
	}
	return e, nil
}

// compiled renders p and returns its WAF, compiling it unless a WAF of the
// same directives is held.
func (r *Registry) compiled(p *agentapi.HostPolicy) (*sharedWAF, error) {
	directives, err := seclang.Render(p)
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	sum := sha256.Sum256([]byte(directives))
	key := hex.EncodeToString(sum[:8])
	if w := r.cached(key); w != nil {
		return w, nil
	}
	v, err, _ := r.flight.Do(key, func() (any, error) {
		// A caller that missed the cache just before another caller's
		// flight stored its WAF would otherwise compile it again.
		if w := r.cached(key); w != nil {
			return w, nil
		}
		waf, err := r.compile(directives)
		if err != nil {
			return nil, err
		}
		w := &sharedWAF{key: key, waf: waf}
		r.mu.Lock()
		r.wafs[key] = w
		r.mu.Unlock()
		return w, nil
	})
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	return v.(*sharedWAF), nil
}

func (r *Registry) cached(key string) *sharedWAF {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wafs[key]
}

// Replace publishes entries (keyed by resource name) as the routing table
// and drops every WAF no entry uses any more. In-flight Checks keep the WAF
// they already hold: closing a Coraza WAF only releases caches.
func (r *Registry) Replace(entries map[string]*Entry) {
	next := routes{}
	used := map[string]bool{}
	for _, e := range entries {
		gw, host := e.Policy.GetGateway(), strings.ToLower(e.Policy.GetHost())
		if next[gw] == nil {
			next[gw] = map[string]*Entry{}
		}
		next[gw][host] = e
		for _, w := range []*sharedWAF{e.waf, e.shadow} {
			if w != nil {
				used[w.key] = true
			}
		}
	}
	r.table.Store(&next)

	var unused []*sharedWAF
	r.mu.Lock()
	for key, w := range r.wafs {
		if !used[key] {
			unused = append(unused, w)
			delete(r.wafs, key)
		}
	}
	r.mu.Unlock()
	for _, w := range unused {
		if c, ok := w.waf.(experimental.WAFCloser); ok {
			_ = c.Close()
		}
	}
}

// WAFCount is the number of distinct compiled WAFs held.
func (r *Registry) WAFCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.wafs)
}

// Entries returns every published entry sorted by name.
func (r *Registry) Entries() []*Entry {
	var out []*Entry
	for _, hosts := range *r.table.Load() {
		for _, e := range hosts {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
