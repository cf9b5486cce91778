package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// Config is everything the agent needs; cmd/agent fills it from flags.
type Config struct {
	// XDSAddress is the control plane's gRPC address (host:port).
	XDSAddress string
	// NodeID identifies this agent in the xDS node.
	NodeID string
	// ListenAddr serves ext_authz and ext_proc gRPC; HTTPListenAddr serves /healthz,
	// /readyz, /metrics and /debug/policies. ":0" picks a free port (see
	// Agent.GRPCAddr and Agent.HTTPAddr).
	ListenAddr     string
	HTTPListenAddr string
	// AuditLog receives one JSON line per audited transaction; nil discards.
	AuditLog io.Writer
	// Logger is the operational log; nil discards.
	Logger *slog.Logger
	// Registry receives the agent's metrics and is served on /metrics; nil
	// means a fresh registry.
	Registry *prometheus.Registry
	// DialOptions for the control plane connection; nil means plaintext.
	DialOptions []grpc.DialOption
	// ReconnectMin and ReconnectMax bound the reconnect backoff.
	// Defaults 500ms and 5s: an agent is back within about 5 s of the
	// control plane, however long it was away, and a thousand agents
	// retrying every few seconds are no load for it.
	ReconnectMin, ReconnectMax time.Duration
	// MaxRequestBytes bounds one ext_authz or ext_proc message; it must
	// exceed the largest policy body limit. Default 64 MiB.
	MaxRequestBytes int
	// ShutdownGrace is how long in-flight Checks get on shutdown. Default 5s.
	ShutdownGrace time.Duration
	// DrainDelay is how long the agent keeps serving after it was told to
	// stop, with /readyz answering 503, before it stops accepting calls:
	// the time its endpoint needs to leave the gateways' load balancing
	// (Kubernetes endpoints, then istiod's EDS push), so that new calls go
	// to the agent that replaces it instead of failing. Default 0.
	DrainDelay time.Duration
	// Compile overrides WAF compilation (tests share one compiled CRS).
	Compile CompileFunc
	// InspectionWorkers is how many inspections run at once; the others
	// wait their turn, in arrival order, until Envoy's deadline (steps.go).
	// Default: GOMAXPROCS, one per CPU the agent may use. cmd/agent gives
	// the Go runtime one CPU more than that (GOMAXPROCS = workers + 1), so
	// that answering Envoy never waits for an inspection to yield its CPU.
	InspectionWorkers int
	// Profiling serves Go's runtime profiles (net/http/pprof) under
	// /debug/pprof/ on the HTTP listener. Off by default: a CPU profile
	// costs the node CPU, and the endpoints reveal internals.
	Profiling bool
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.DialOptions == nil {
		c.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = 500 * time.Millisecond
	}
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = max(5*time.Second, c.ReconnectMin)
	}
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = 64 << 20
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 5 * time.Second
	}
	if c.InspectionWorkers <= 0 {
		c.InspectionWorkers = runtime.GOMAXPROCS(0)
	}
}

// Agent is the node agent runner.
type Agent struct {
	cfg      Config
	reg      *Registry
	in       *inspector
	client   *policyClient
	conn     *grpc.ClientConn
	grpcSrv  *grpc.Server
	httpSrv  *http.Server
	grpcLis  net.Listener
	httpLis  net.Listener
	registry *prometheus.Registry
	// draining is set once shutdown has begun; /readyz then fails.
	draining atomic.Bool
}

// New validates cfg and binds both listeners, so that a bad address fails
// before Start and tests can listen on ":0". Start must be called once to
// serve and, eventually, release them.
func New(cfg Config) (*Agent, error) {
	cfg.setDefaults()
	if cfg.XDSAddress == "" || cfg.NodeID == "" {
		return nil, errors.New("agent: XDSAddress and NodeID are required")
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, fmt.Errorf("agent: metrics: %w", err)
	}
	conn, err := grpc.NewClient(cfg.XDSAddress, append(controlPlaneOptions(), cfg.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("agent: control plane %s: %w", cfg.XDSAddress, err)
	}
	a := &Agent{cfg: cfg, reg: NewRegistry(cfg.Compile), conn: conn, registry: cfg.Registry}
	node := &corev3.Node{Id: cfg.NodeID, Cluster: "meshwaf-agent", UserAgentName: "meshwaf-agent"}
	a.client = newPolicyClient(conn, node, a.reg, m, cfg.Logger.With("component", "policy-client"),
		backoff{min: cfg.ReconnectMin, max: cfg.ReconnectMax})

	if a.grpcLis, err = net.Listen("tcp", cfg.ListenAddr); err != nil {
		conn.Close()
		return nil, fmt.Errorf("agent: listen %s: %w", cfg.ListenAddr, err)
	}
	if a.httpLis, err = net.Listen("tcp", cfg.HTTPListenAddr); err != nil {
		conn.Close()
		a.grpcLis.Close()
		return nil, fmt.Errorf("agent: listen %s: %w", cfg.HTTPListenAddr, err)
	}

	// The gRPC server starts its stream workers at once, so it is created
	// only when New can no longer fail.
	gateUnary, gateStream := readyGate(a.client.ready, func() { m.request(noPolicyLabel, noPolicyLabel, verdictNotReady) })
	a.grpcSrv = grpc.NewServer(append(serverOptions(cfg.MaxRequestBytes),
		grpc.ChainUnaryInterceptor(gateUnary), grpc.ChainStreamInterceptor(gateStream))...)
	// Shadow inspections take at most half the workers' share of CPU
	// (shadow.go).
	a.in = &inspector{reg: a.reg, audit: NewAuditLog(cfg.AuditLog), metrics: m,
		log: cfg.Logger.With("component", "inspector"), now: time.Now,
		shadowSlots: make(chan struct{}, max(1, cfg.InspectionWorkers/2))}
	in := a.in
	authv3.RegisterAuthorizationServer(a.grpcSrv, &authzServer{in: in})
	extprocv3.RegisterExternalProcessorServer(a.grpcSrv, &procServer{in: in})
	a.httpSrv = &http.Server{Handler: a.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	return a, nil
}

// GRPCAddr is the bound ext_authz and ext_proc address.
func (a *Agent) GRPCAddr() net.Addr { return a.grpcLis.Addr() }

// HTTPAddr is the bound HTTP address.
func (a *Agent) HTTPAddr() net.Addr { return a.httpLis.Addr() }

// Ready is closed once the first policy set has been received and compiled.
func (a *Agent) Ready() <-chan struct{} { return a.client.ready }

// Start serves until ctx is done, then stops accepting Checks, lets
// in-flight ones finish (up to ShutdownGrace) and returns. It returns an
// error only if a server fails.
func (a *Agent) Start(ctx context.Context) error {
	defer a.conn.Close()
	// Started here rather than in New, so that an agent that is never
	// started leaves no goroutines behind.
	a.in.steps = newStepRunner(a.cfg.InspectionWorkers)
	defer a.in.steps.close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		// ErrServerStopped means shutdown won the race with Serve.
		if err := a.grpcSrv.Serve(a.grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("gRPC server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := a.httpSrv.Serve(a.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	g.Go(func() error { return a.client.run(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		a.shutdown()
		return nil
	})
	// The Go runtime settings decide how many inspections run at once and
	// what the agent costs when idle between requests (its DaemonSet sets
	// GODEBUG; docs/decisions.md), so the start line says which apply.
	a.cfg.Logger.Info("agent started", "grpc", a.GRPCAddr().String(), "http", a.HTTPAddr().String(),
		"xds", a.cfg.XDSAddress, "node_id", a.cfg.NodeID,
		"inspection_workers", a.cfg.InspectionWorkers, "gomaxprocs", runtime.GOMAXPROCS(0), "godebug", os.Getenv("GODEBUG"))
	err := g.Wait()
	a.cfg.Logger.Info("agent stopped")
	return err
}

// flowWindow is the HTTP/2 flow-control window of every ext_authz and
// ext_proc stream and connection: the largest window gRPC's dynamic flow
// control would grow to (its BDP estimator's limit), set from the start.
// Dynamic flow control sends a BDP ping on the first data of every request
// that arrives after the last ping was answered, which with one Check at a
// time is every request: a write for the agent and a read and a write for
// Envoy, per request, for a window that never needs to change on a
// node-local connection.
const flowWindow = 16 << 20

// serverOptions configure the ext_authz and ext_proc gRPC server for many
// short calls from the node's gateways.
func serverOptions(maxRequestBytes int) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRequestBytes),
		grpc.StaticStreamWindowSize(flowWindow),
		grpc.StaticConnWindowSize(flowWindow),
		// Long-lived workers serve the calls instead of a new goroutine
		// per call, whose stack would grow anew each time (the same reason
		// as steps.go). A call arriving while all are busy still gets a
		// goroutine of its own, so none waits for another.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
	}
}

// maxPolicyResponse bounds one host policy response. A fresh agent gets
// every host policy in one response (about 2.7 MiB for 10,000 hosts), so
// gRPC's default of 4 MiB would cap a cluster at some 15,000 hosts.
const maxPolicyResponse = 256 << 20

// controlPlaneOptions are the settings of the connection to the control
// plane that do not depend on how the agent authenticates.
func controlPlaneOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxPolicyResponse)),
		// Notice a control plane that vanished without closing the
		// connection (its node died) in about 40 s, and reconnect.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
}

// lateShutdownWait bounds how long shutdown waits for late inspections.
const lateShutdownWait = time.Second

func (a *Agent) shutdown() {
	a.draining.Store(true)
	if a.cfg.DrainDelay > 0 {
		a.cfg.Logger.Info("draining: not ready, still serving", "for", a.cfg.DrainDelay.String())
		time.Sleep(a.cfg.DrainDelay)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownGrace)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		a.grpcSrv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-shutdownCtx.Done():
		a.grpcSrv.Stop()
		<-stopped
	}
	// Inspections that outlasted Envoy's timeout finish in the background.
	// Their requests were answered long ago; they get a second to write
	// their audit lines, not the whole grace period, which a huge body on
	// a busy node could outlast (and the pod be killed mid-line).
	late := make(chan struct{})
	go func() {
		a.in.late.Wait()
		close(late)
	}()
	lateWait := time.NewTimer(lateShutdownWait)
	defer lateWait.Stop()
	select {
	case <-late:
	case <-lateWait.C:
		a.cfg.Logger.Warn("stopping with inspections still running; their audit lines are lost")
	case <-shutdownCtx.Done():
	}
	if err := a.httpSrv.Shutdown(shutdownCtx); err != nil {
		a.httpSrv.Close()
	}
}
