// Command meshwaf-xds is meshwaf's control plane: it reads gateways, routes
// and WAF policies, and serves the meshwaf.waf filter's configuration to
// Envoy over ECDS and host policies to meshwaf agents.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshwaf/meshwaf/admission"
	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/kubeauth"
	"github.com/meshwaf/meshwaf/rebuild"
	"github.com/meshwaf/meshwaf/seclang"
	"github.com/meshwaf/meshwaf/snapshot"
	"github.com/meshwaf/meshwaf/status"
	"github.com/meshwaf/meshwaf/store"
	"github.com/meshwaf/meshwaf/tlsfiles"
	"github.com/meshwaf/meshwaf/watch"
	"github.com/meshwaf/meshwaf/xds"
)

type options struct {
	manifests     string
	kubeconfig    string
	inCluster     bool
	namespace     string
	identity      string
	webhook       string
	webhookCert   string
	webhookKey    string
	tlsCert       string
	tlsKey        string
	clientCA      string
	tokenAudience string
	agentAccounts string
	listen        string
	httpListen    string
	agentCluster  string
	agentTimeout  time.Duration
	logFormat     string
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("meshwaf-xds", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `meshwaf-xds: the meshwaf control plane.

Reads Istio Gateways and VirtualServices, Gateway API Gateways and
HTTPRoutes, Services, and meshwaf WAFPolicies — from a folder of YAML
manifests (re-read on change) or from the Kubernetes API — and serves:
  - to Envoy gateways and sidecars, over ECDS, the configuration of the
    meshwaf.waf filter;
  - to meshwaf agents, over delta xDS, the policy of every protected host.

An invalid manifest is logged ("manifest rejected", with file and reason)
and the last good version of each object stays in force. On Kubernetes the
elected replica (a Lease) also writes each WAFPolicy's status, and the
validating webhook refuses policies whose rules do not compile.

Usage: meshwaf-xds --manifests DIR [flags]
       meshwaf-xds --kubeconfig FILE | --in-cluster [flags]

Flags:
`)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.manifests, "manifests", "", "folder of multi-document YAML manifests")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "read objects from the Kubernetes API server of this kubeconfig")
	fs.BoolVar(&o.inCluster, "in-cluster", false, "read objects from the Kubernetes API server this pod runs in")
	fs.StringVar(&o.namespace, "namespace", envOr("POD_NAMESPACE", "meshwaf-system"), "namespace of the leader-election Lease and of the ConfigMap where replicas report their agents (Kubernetes only)")
	fs.StringVar(&o.identity, "identity", defaultIdentity(), "this replica's name in leader election and its key in the agent report ConfigMap (Kubernetes only)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "serve gRPC over TLS with this certificate file")
	fs.StringVar(&o.tlsKey, "tls-key", "", "key file of --tls-cert")
	fs.StringVar(&o.clientCA, "client-ca", "", "require client certificates signed by this CA (mutual TLS); an agent's certificate must carry the URI SAN spiffe://<domain>/agent/<node id>")
	fs.StringVar(&o.tokenAudience, "agent-token-audience", "", "also accept agents that authenticate with a Kubernetes ServiceAccount token for this audience (e.g. meshwaf), checked by TokenReview; needs the Kubernetes source and --tls-cert")
	fs.StringVar(&o.agentAccounts, "agent-service-accounts", "meshwaf-system/meshwaf-agent", "comma-separated namespace/name of the ServiceAccounts whose tokens make their caller an agent (with --agent-token-audience)")
	fs.StringVar(&o.webhook, "webhook-listen", "", "HTTPS address of the WAFPolicy validating webhook, e.g. :9443 (off when empty)")
	fs.StringVar(&o.webhookCert, "webhook-cert", "", "TLS certificate file of the webhook")
	fs.StringVar(&o.webhookKey, "webhook-key", "", "TLS key file of the webhook")
	fs.StringVar(&o.listen, "listen", ":18000", "gRPC address serving ECDS to Envoy and host policies to agents")
	fs.StringVar(&o.httpListen, "http-listen", ":18001", "HTTP address for /healthz, /readyz, /metrics, /debug/snapshot, /debug/agents")
	fs.StringVar(&o.agentCluster, "agent-cluster", "outbound|9191||meshwaf-agent.meshwaf-system.svc.cluster.local",
		"Envoy cluster through which gateways reach the node-local agent")
	fs.DurationVar(&o.agentTimeout, "agent-timeout", 500*time.Millisecond, "timeout of one inspection call from Envoy to the agent")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	sources := 0
	for _, set := range []bool{o.manifests != "", o.kubeconfig != "", o.inCluster} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return o, errors.New("exactly one of --manifests, --kubeconfig and --in-cluster is required")
	}
	if (o.tlsCert == "") != (o.tlsKey == "") || (o.clientCA != "" && o.tlsCert == "") {
		return o, errors.New("--tls-cert and --tls-key go together, and --client-ca needs them")
	}
	if o.tokenAudience != "" && (o.manifests != "" || o.tlsCert == "") {
		return o, errors.New("--agent-token-audience needs the Kubernetes source (--kubeconfig or --in-cluster) and --tls-cert: tokens are checked by the API server and accepted over TLS only")
	}
	if o.webhook != "" && (o.webhookCert == "" || o.webhookKey == "") {
		return o, errors.New("--webhook-listen needs --webhook-cert and --webhook-key")
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
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	db := store.New()
	var kube *kubeClients
	var err error
	if opts.manifests == "" {
		if kube, err = newKubeClients(opts); err != nil {
			return err
		}
	}
	xdsConfig := xds.Config{Listen: opts.listen, Logger: log, Registry: registry}
	if err := configureTLS(&xdsConfig, opts); err != nil {
		return err
	}
	if err := configureTokens(&xdsConfig, opts, kube); err != nil {
		return err
	}
	server, err := xds.New(xdsConfig)
	if err != nil {
		return err
	}
	source, err := newSource(opts, kube, db, log)
	if err != nil {
		return err
	}
	runner := rebuild.New(rebuild.Config{
		Store:     db,
		Synced:    []<-chan struct{}{source.Synced()},
		Snapshot:  snapshot.Config{AgentCluster: opts.agentCluster, AgentTimeout: opts.agentTimeout},
		Publisher: server,
		Logger:    log,
	})

	mux := http.NewServeMux()
	mux.Handle("/", server.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	httpServer := &http.Server{Addr: opts.httpListen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return source.Start(ctx) })
	g.Go(func() error { return runner.Start(ctx) })
	g.Go(func() error { return server.Start(ctx) })
	g.Go(func() error { return serveHTTP(ctx, httpServer, "", "") })
	if kube != nil {
		reports := kube.typed.CoreV1().ConfigMaps(opts.namespace)
		writer := status.NewWriter(status.WriterConfig{Client: kube.dynamic, Fleet: server, Store: db, Logger: log,
			Reports: reports, Replica: opts.identity})
		publisher := status.NewPublisher(status.PublisherConfig{ConfigMaps: reports, Replica: opts.identity, Fleet: server, Logger: log})
		g.Go(func() error { return publisher.Start(ctx) })
		g.Go(func() error {
			return status.RunAsLeader(ctx, status.LeaderConfig{
				Client: kube.typed, Namespace: opts.namespace, Identity: opts.identity, Logger: log,
			}, writer.Start)
		})
	}
	if opts.webhook != "" {
		webhook := &http.Server{
			Addr:              opts.webhook,
			Handler:           admission.Handler(func(doc []byte) error { return watch.CheckPolicy(doc, validatePolicy) }, log),
			ReadHeaderTimeout: 5 * time.Second,
		}
		g.Go(func() error { return serveHTTP(ctx, webhook, opts.webhookCert, opts.webhookKey) })
	}
	return g.Wait()
}

// configureTLS sets up TLS, and with a client CA mutual TLS and
// certificate-based identities, for the gRPC server. The files are read
// again for every connection (tlsfiles), so renewed certificates and a
// rotated client CA bundle apply without a restart.
func configureTLS(cfg *xds.Config, opts options) error {
	if opts.tlsCert == "" {
		return nil
	}
	files := tlsfiles.Server{CertFile: opts.tlsCert, KeyFile: opts.tlsKey}
	if opts.clientCA != "" {
		files.ClientCAFile, files.ClientAuth = opts.clientCA, tls.RequireAndVerifyClientCert
		if opts.tokenAudience != "" {
			// An agent may bring a token instead (configureTokens).
			files.ClientAuth = tls.VerifyClientCertIfGiven
		}
		cfg.Authenticator = xds.CertificateAuthenticator{}
	}
	creds, err := files.Credentials()
	if err != nil {
		return fmt.Errorf("--tls-cert, --tls-key, --client-ca: %w", err)
	}
	cfg.Credentials = creds
	return nil
}

// configureTokens lets agents authenticate with ServiceAccount tokens.
// Callers without a token fall back to client certificates when a client
// CA is set (configureTLS then makes them optional at the TLS layer), else
// they are anonymous and may read ECDS only.
func configureTokens(cfg *xds.Config, opts options, kube *kubeClients) error {
	if opts.tokenAudience == "" {
		return nil
	}
	reviewer, err := kubeauth.New(kubeauth.Config{
		Reviews:   kube.typed.AuthenticationV1().TokenReviews(),
		Audiences: []string{opts.tokenAudience},
		Agents:    strings.Split(opts.agentAccounts, ","),
		Fallback:  cfg.Authenticator,
	})
	if err != nil {
		return fmt.Errorf("--agent-service-accounts: %w", err)
	}
	cfg.Authenticator = reviewer
	return nil
}

// validatePolicy is what only Coraza can check: whether custom rules compile.
func validatePolicy(spec v1alpha1.WAFPolicySpec) error {
	return seclang.ValidateCustomRules(spec.CustomRules)
}

func newSource(opts options, kube *kubeClients, db *store.Store, log *slog.Logger) (watch.Source, error) {
	if kube == nil {
		if info, err := os.Stat(opts.manifests); err != nil || !info.IsDir() {
			return nil, fmt.Errorf("--manifests %q is not a readable folder", opts.manifests)
		}
		return watch.NewFiles(watch.FilesConfig{Dir: opts.manifests, Store: db, Validate: validatePolicy, Logger: log}), nil
	}
	return watch.NewKubernetes(watch.KubernetesConfig{
		Client: kube.dynamic, Discovery: kube.typed.Discovery(), Store: db, Validate: validatePolicy, Logger: log,
	}), nil
}

type kubeClients struct {
	typed   kubernetes.Interface
	dynamic dynamic.Interface
}

func newKubeClients(opts options) (*kubeClients, error) {
	var cfg *rest.Config
	var err error
	if opts.inCluster {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", opts.kubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	cfg.UserAgent = "meshwaf-xds"
	typed, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &kubeClients{typed: typed, dynamic: dyn}, nil
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// defaultIdentity is unique per process: the pod name on Kubernetes, plus
// the PID so two replicas on one machine (as in tests) differ too.
func defaultIdentity() string {
	host, err := os.Hostname()
	if err != nil {
		host = "meshwaf-xds"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// serveHTTP serves (with TLS when certFile is set) until ctx is done, then
// shuts down gracefully.
func serveHTTP(ctx context.Context, s *http.Server, certFile, keyFile string) error {
	if certFile != "" {
		// Read again for every handshake: a renewed certificate needs no restart.
		getCert, err := tlsfiles.ServingCertificate(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("https %s: %w", s.Addr, err)
		}
		s.TLSConfig = &tls.Config{GetCertificate: getCert, MinVersion: tls.VersionTLS12}
	}
	errc := make(chan error, 1)
	go func() {
		if certFile != "" {
			errc <- s.ListenAndServeTLS("", "")
			return
		}
		errc <- s.ListenAndServe()
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return s.Shutdown(shutdownCtx)
	}
}
