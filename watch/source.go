package watch

import (
	"context"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
)

// Source keeps the store in sync with one view of the world.
type Source interface {
	// Start syncs until ctx is done.
	Start(ctx context.Context) error
	// Synced is closed once the first complete state was written to the
	// store, so consumers never act on a partial view.
	Synced() <-chan struct{}
}

// PolicyValidator checks what only a WAF engine can check, such as whether
// custom rules compile. The control plane injects Coraza's; tests may
// inject their own.
type PolicyValidator func(v1alpha1.WAFPolicySpec) error
