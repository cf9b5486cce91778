package rebuild

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/meshwaf/meshwaf/snapshot"
	"github.com/meshwaf/meshwaf/store"
)

// Publisher serves snapshots.
type Publisher interface {
	Update(ctx context.Context, snap *snapshot.Snapshot) error
}

// Config configures a Runner.
type Config struct {
	Store *store.Store
	// Synced are closed when each source has written its first full state.
	Synced    []<-chan struct{}
	Snapshot  snapshot.Config
	Publisher Publisher
	Logger    *slog.Logger
	// Quiet is how long the store must stay unchanged before a rebuild
	// (default 100ms); MaxDelay bounds how long changes can keep
	// postponing it (default 1s).
	Quiet, MaxDelay time.Duration
}

// Runner rebuilds and publishes snapshots.
type Runner struct {
	cfg  Config
	last *snapshot.Snapshot
}

// New returns a Runner.
func New(cfg Config) *Runner {
	if cfg.Quiet == 0 {
		cfg.Quiet = 100 * time.Millisecond
	}
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Runner{cfg: cfg}
}

// Start runs until ctx is done.
func (r *Runner) Start(ctx context.Context) error {
	for _, synced := range r.cfg.Synced {
		select {
		case <-synced:
		case <-ctx.Done():
			return nil
		}
	}
	// Drain the notification of the initial sync: the first build reads it.
	select {
	case <-r.cfg.Store.Changed():
	default:
	}
	r.rebuild(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.cfg.Store.Changed():
		}
		if !r.debounce(ctx) {
			return nil
		}
		r.rebuild(ctx)
	}
}

// debounce waits until the store has been quiet for Quiet, or MaxDelay has
// passed since the first change. It returns false if ctx ended.
func (r *Runner) debounce(ctx context.Context) bool {
	deadline := time.NewTimer(r.cfg.MaxDelay)
	defer deadline.Stop()
	quiet := time.NewTimer(r.cfg.Quiet)
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return true
		case <-quiet.C:
			return true
		case <-r.cfg.Store.Changed():
			quiet.Reset(r.cfg.Quiet)
		}
	}
}

func (r *Runner) rebuild(ctx context.Context) {
	start := time.Now()
	snap, err := snapshot.Build(r.cfg.Store.Read(), r.cfg.Snapshot)
	if err != nil {
		// Keep serving the last snapshot; the next change retries.
		r.cfg.Logger.Error("snapshot build failed, keeping the last one", "error", err)
		return
	}
	if r.last != nil && snap.Version == r.last.Version {
		return
	}
	r.logPolicyChanges(snap)
	if err := r.cfg.Publisher.Update(ctx, snap); err != nil {
		r.cfg.Logger.Error("publishing snapshot", "version", snap.Version, "error", err)
	}
	r.last = snap
	r.cfg.Logger.Info("snapshot published", "version", snap.Version, "gateways", len(snap.Gateways),
		"hostPolicies", len(snap.HostPolicies), "took", time.Since(start).String())
}

// logPolicyChanges says, once per change, what happened to each policy.
func (r *Runner) logPolicyChanges(snap *snapshot.Snapshot) {
	previous := map[store.ObjectRef]snapshot.PolicyStatus{}
	if r.last != nil {
		for _, p := range r.last.Policies {
			previous[p.Ref] = p
		}
	}
	for _, p := range snap.Policies {
		prev, seen := previous[p.Ref]
		if seen && prev.Version == p.Version && slices.Equal(prev.Hosts, p.Hosts) &&
			slices.Equal(prev.Conflicts, p.Conflicts) && slices.Equal(prev.Unresolved, p.Unresolved) {
			continue
		}
		r.cfg.Logger.Info("policy programmed", "policy", p.Ref.NamespacedName(), "version", p.Version, "hosts", p.Hosts)
		for _, c := range p.Conflicts {
			r.cfg.Logger.Warn("policy conflicted", "policy", p.Ref.NamespacedName(), "reason", c)
		}
		for _, u := range p.Unresolved {
			r.cfg.Logger.Warn("policy target unresolved", "policy", p.Ref.NamespacedName(), "reason", u)
		}
	}
}
