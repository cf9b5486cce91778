// Command meshwaf-xds is meshwaf's control plane: it reads gateways, routes
// and WAF policies, and serves the meshwaf.waf filter's configuration to
// Envoy over ECDS and host policies to meshwaf agents.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/rebuild"
	"github.com/meshwaf/meshwaf/seclang"
	"github.com/meshwaf/meshwaf/snapshot"
	"github.com/meshwaf/meshwaf/store"
	"github.com/meshwaf/meshwaf/watch"
	"github.com/meshwaf/meshwaf/xds"
)

type options struct {
	manifests    string
	listen       string
	httpListen   string
	agentCluster string
	agentTimeout time.Duration
	logFormat    string
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("meshwaf-xds", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `meshwaf-xds: the meshwaf control plane.

Reads Istio Gateways and VirtualServices, Gateway API Gateways and
HTTPRoutes, and meshwaf WAFPolicies from a folder of YAML manifests
(re-read on change), and serves:
  - to Envoy gateways, over ECDS, the configuration of the meshwaf.waf filter;
  - to meshwaf agents, over delta xDS, the policy of every protected host.

An invalid manifest is logged ("manifest rejected", with file and reason)
and the last good version of each object stays in force.

Usage: meshwaf-xds --manifests DIR [flags]

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.manifests, "manifests", "", "folder of multi-document YAML manifests (required)")
	fs.StringVar(&o.listen, "listen", ":18000", "gRPC address serving ECDS to Envoy and host policies to agents")
	fs.StringVar(&o.httpListen, "http-listen", ":18001", "HTTP address for /healthz, /readyz, /metrics, /debug/snapshot, /debug/agents")
	fs.StringVar(&o.agentCluster, "agent-cluster", "outbound|9191||meshwaf-agent.meshwaf-system.svc.cluster.local",
		"Envoy cluster through which gateways reach the node-local agent")
	fs.DurationVar(&o.agentTimeout, "agent-timeout", 500*time.Millisecond, "timeout of one inspection call from Envoy to the agent")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.manifests == "" {
		return o, errors.New("--manifests is required")
	}
	if o.logFormat != "json" && o.logFormat != "text" {
		return o, fmt.Errorf("--log-format must be json or text, not %q", o.logFormat)
	}
	if o.agentTimeout <= 0 {
		return o, errors.New("--agent-timeout must be positive")
	}
	return o, nil
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshwaf-xds:", err)
		os.Exit(2)
	}
	log := newLogger(opts.logFormat)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts, log); err != nil {
		log.Error("meshwaf-xds stopped", "error", err)
		os.Exit(1)
	}
}

func newLogger(format string) *slog.Logger {
	if format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, nil))
}

func run(ctx context.Context, opts options, log *slog.Logger) error {
	if info, err := os.Stat(opts.manifests); err != nil || !info.IsDir() {
		return fmt.Errorf("--manifests %q is not a readable folder", opts.manifests)
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	db := store.New()
	files := watch.NewFiles(watch.FilesConfig{
		Dir:   opts.manifests,
		Store: db,
		Validate: func(spec v1alpha1.WAFPolicySpec) error {
			return seclang.ValidateCustomRules(spec.CustomRules)
		},
		Logger: log,
	})
	server, err := xds.New(xds.Config{Listen: opts.listen, Logger: log, Registry: registry})
	if err != nil {
		return err
	}
	runner := rebuild.New(rebuild.Config{
		Store:     db,
		Synced:    []<-chan struct{}{files.Synced()},
		Snapshot:  snapshot.Config{AgentCluster: opts.agentCluster, AgentTimeout: opts.agentTimeout},
		Publisher: server,
		Logger:    log,
	})

	mux := http.NewServeMux()
	mux.Handle("/", server.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	httpServer := &http.Server{Addr: opts.httpListen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return files.Start(ctx) })
	g.Go(func() error { return runner.Start(ctx) })
	g.Go(func() error { return server.Start(ctx) })
	g.Go(func() error { return serveHTTP(ctx, httpServer) })
	return g.Wait()
}

// serveHTTP serves until ctx is done, then shuts down gracefully.
func serveHTTP(ctx context.Context, s *http.Server) error {
	errc := make(chan error, 1)
	go func() { errc <- s.ListenAndServe() }()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return s.Shutdown(shutdownCtx)
	}
}
