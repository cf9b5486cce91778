package agent

import (
	"sync"
	"sync/atomic"

	"github.com/meshwaf/meshwaf/engine"
)

// stockOperators keeps Coraza's own operators instead of the engine's.
var (
	stockOperators atomic.Bool
	operatorsOnce  sync.Once
)

// UseStockOperators makes the agent compile policies with Coraza's own
// @rx operator (Go's regexp) instead of the engine's (RE2 where it agrees
// with Go's regexp; see docs/decisions.md, "A faster engine"). It is the
// operator's escape hatch and what tests compare the engine against.
// Coraza's operator registry is process-wide and the engine cannot be
// uninstalled, so it must be called before the first policy is compiled;
// afterwards it changes nothing.
func UseStockOperators() { stockOperators.Store(true) }

// installOperators installs the engine, once, before the first compile,
// unless UseStockOperators came first.
func installOperators() {
	operatorsOnce.Do(func() {
		if !stockOperators.Load() {
			engine.Install()
		}
	})
}
