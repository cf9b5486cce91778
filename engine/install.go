package engine

import (
	"sync"
	"sync/atomic"

	"github.com/corazawaf/coraza/v3/experimental/plugins"
)

var installOnce sync.Once

// Install replaces Coraza's @rx operator and utf8toUnicode transformation
// with the engine's, for every WAF compiled from now on in this process.
// Calling it again does nothing.
// Coraza keeps one operator registry per process, so there is no way to
// install the engine for one WAF only: a caller that wants stock Coraza
// must not call Install at all.
func Install() {
	installOnce.Do(func() {
		plugins.RegisterOperator("rx", newRX)
		plugins.RegisterTransformation("utf8toUnicode", utf8ToUnicode)
		markInstalled()
	})
}

// installed records that the engine's operators replaced Coraza's, for the
// side-by-side measurement, which must compile stock WAFs first.
var installed atomic.Bool

func markInstalled() { installed.Store(true) }

// Installed reports whether the engine's operators are registered: every
// WAF compiled from now on uses them.
func Installed() bool { return installed.Load() }
