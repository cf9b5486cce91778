package status

import (
	"context"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderConfig configures leader election over a Lease.
type LeaderConfig struct {
	Client    kubernetes.Interface
	Namespace string
	// Name of the Lease. Default "meshwaf-xds-status".
	Name     string
	Identity string
	Logger   *slog.Logger
	// LeaseDuration bounds how long a dead leader is followed: a standby
	// takes over within about LeaseDuration + RetryPeriod. Defaults 10s
	// lease, 7s renew deadline, 2s retry, so status writing moves to
	// another replica well within 20 s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// RunAsLeader campaigns for the Lease until ctx is done; whenever this
// replica leads, it runs lead with a context cancelled on losing the lease.
func RunAsLeader(ctx context.Context, cfg LeaderConfig, lead func(context.Context) error) error {
	if cfg.Name == "" {
		cfg.Name = "meshwaf-xds-status"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.LeaseDuration = orDefault(cfg.LeaseDuration, 10*time.Second)
	cfg.RenewDeadline = orDefault(cfg.RenewDeadline, 7*time.Second)
	cfg.RetryPeriod = orDefault(cfg.RetryPeriod, 2*time.Second)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Name},
		Client:     cfg.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity},
	}
	for ctx.Err() == nil {
		elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   cfg.LeaseDuration,
			RenewDeadline:   cfg.RenewDeadline,
			RetryPeriod:     cfg.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            cfg.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(leadCtx context.Context) {
					cfg.Logger.Info("leading: writing policy status", "identity", cfg.Identity, "lease", cfg.Namespace+"/"+cfg.Name)
					if err := lead(leadCtx); err != nil {
						cfg.Logger.Error("status writer stopped", "error", err)
					}
				},
				OnStoppedLeading: func() {
					cfg.Logger.Info("not leading: status writing stopped", "identity", cfg.Identity)
				},
				OnNewLeader: func(identity string) {
					if identity != cfg.Identity {
						cfg.Logger.Info("status is written by another replica", "leader", identity)
					}
				},
			},
		})
		if err != nil {
			return err
		}
		// Run returns when leadership is lost (or never won before ctx
		// ends); campaign again.
		elector.Run(ctx)
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
