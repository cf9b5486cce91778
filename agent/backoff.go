package agent

import (
	"math/rand/v2"
	"time"
)

// backoff doubles from min to max and returns a random delay in the upper
// half of the current step, so that agents restarted together (a node pool
// upgrade, a control plane rollout) do not reconnect in lockstep.
type backoff struct {
	min, max time.Duration
	step     time.Duration
}

func (b *backoff) next() time.Duration {
	if b.step == 0 {
		b.step = b.min
	} else {
		b.step = min(b.step*2, b.max)
	}
	half := b.step / 2
	return half + rand.N(half+1)
}

func (b *backoff) reset() { b.step = 0 }
