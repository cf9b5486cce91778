// Command meshwaf-agent is the meshwaf node agent: it receives host policies
// from the control plane and answers Envoy's ext_authz checks and ext_proc
// streams with Coraza and the OWASP CRS. It only turns flags into
// agent.Config and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/meshwaf/meshwaf/agent"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "meshwaf-agent:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("meshwaf-agent", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `meshwaf-agent inspects requests and responses for Envoy (ext_authz, ext_proc)
with Coraza and the OWASP Core Rule Set, using host policies received from
meshwaf-xds.

Usage: meshwaf-agent [flags]

Flags:
`)
		fs.PrintDefaults()
	}
	xdsAddr := fs.String("xds-address", "meshwaf-xds.meshwaf-system.svc:18000", "control plane gRPC `host:port`")
	var auth agent.ControlPlaneAuth
	fs.StringVar(&auth.CAFile, "xds-ca-file", "", "CA certificates (PEM `file`) that verify the control plane; turns TLS on (plain text when empty)")
	fs.StringVar(&auth.ServerName, "xds-server-name", "", "`name` expected in the control plane's certificate (default: the host of --xds-address)")
	fs.StringVar(&auth.CertFile, "xds-cert-file", "", "client certificate (PEM `file`) for mutual TLS, with the URI SAN spiffe://<domain>/agent/<node id>")
	fs.StringVar(&auth.KeyFile, "xds-key-file", "", "key (PEM `file`) of --xds-cert-file")
	fs.StringVar(&auth.TokenFile, "xds-token-file", "", "bearer token `file` (a projected ServiceAccount token with audience meshwaf), read again for every stream")
	listen := fs.String("listen", ":9191", "gRPC listen `address` for ext_authz (envoy.service.auth.v3.Authorization) and ext_proc (envoy.service.ext_proc.v3.ExternalProcessor)")
	httpListen := fs.String("http-listen", ":9192", "HTTP listen `address` for /healthz, /readyz, /metrics, /debug/policies")
	nodeID := fs.String("node-id", defaultNodeID(), "`id` sent in the xDS node; defaults to $NODE_NAME, else the hostname")
	auditPath := fs.String("audit-log", "-", "`path` of the JSON audit log, one line per audited transaction; - is stdout")
	logFormat := fs.String("log-format", "json", "operational log `format`: json or text (written to stderr)")
	// The environment variable lets harnesses that start the agent with a
	// fixed command line (make bench) turn profiling on.
	profiling := fs.Bool("pprof", os.Getenv(pprofEnv) == "1",
		"serve Go runtime profiles under /debug/pprof/ on the HTTP listener (default true if $"+pprofEnv+" is 1)")
	// The environment variable lets an operator fall back without editing
	// the DaemonSet's arguments, and tests run the real agent both ways.
	stockOps := fs.Bool("stock-operators", os.Getenv(stockOperatorsEnv) == "1",
		"match @rx with Coraza's own operator (Go's regexp) instead of the faster engine (default true if $"+stockOperatorsEnv+" is 1)")
	drain := fs.Duration("drain-delay", 5*time.Second,
		"on SIGTERM, keep serving this long with /readyz failing, so that gateways move to the replacing agent first (the DaemonSet's terminationGracePeriodSeconds must exceed it)")
	workers := fs.Int("inspection-workers", runtime.GOMAXPROCS(0),
		"how many inspections run at once (default: the CPUs the agent may use); more wait their turn until Envoy's deadline, then are answered by the policy's failure mode")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *workers < 1 {
		return fmt.Errorf("--inspection-workers must be at least 1, got %d", *workers)
	}
	// One CPU more for the Go runtime than inspections run at once: with
	// every worker in Coraza, gRPC still has one to answer Envoy by its
	// deadline, instead of waiting up to Go's 10 ms preemption slice for an
	// inspection to give its CPU up (docs/decisions.md). An operator's own
	// GOMAXPROCS is left alone.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(*workers + 1)
	}
	if *stockOps {
		agent.UseStockOperators()
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}

	logger, err := newLogger(*logFormat)
	if err != nil {
		return err
	}
	audit, closeAudit, err := openAudit(*auditPath)
	if err != nil {
		return err
	}
	defer closeAudit()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	dialOptions, err := auth.DialOptions()
	if err != nil {
		return err
	}
	a, err := agent.New(agent.Config{
		XDSAddress:     *xdsAddr,
		DialOptions:    dialOptions,
		NodeID:         *nodeID,
		ListenAddr:     *listen,
		HTTPListenAddr: *httpListen,
		AuditLog:       audit,
		Logger:         logger,
		Registry:       reg,
		Profiling:      *profiling,

		InspectionWorkers: *workers,
		DrainDelay:        *drain,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return a.Start(ctx)
}

// pprofEnv set to 1 turns --pprof on by default.
const pprofEnv = "MESHWAF_AGENT_PPROF"

// stockOperatorsEnv set to 1 turns --stock-operators on by default.
const stockOperatorsEnv = "MESHWAF_AGENT_STOCK_OPERATORS"

func defaultNodeID() string {
	if n := os.Getenv("NODE_NAME"); n != "" {
		return n
	}
	h, _ := os.Hostname()
	return h
}

func newLogger(format string) (*slog.Logger, error) {
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, nil)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, nil)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want json or text", format)
	}
}

func openAudit(path string) (io.Writer, func(), error) {
	if path == "-" || path == "" {
		return os.Stdout, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("--audit-log: %w", err)
	}
	return f, func() { f.Close() }, nil
}
