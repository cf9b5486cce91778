package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

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

// Config is everything the control plane is told; cmd/xds fills it from
// flags. The zero value of an optional field turns its feature off.
type Config struct {
	// Manifests is a folder of YAML manifests to read objects from; Kube,
	// the API server to read them from instead. Exactly one is set.
	Manifests string
	Kube      *rest.Config
	// Namespace holds the leader-election Lease and the ConfigMap where
	// replicas report their agents; Identity is this replica's name there
	// (Kubernetes only).
	Namespace, Identity string

	// Listen is the gRPC address (ECDS to Envoy, host policies to agents);
	// Listener, when set, is used instead (a test's port 0).
	Listen   string
	Listener net.Listener
	// HTTPListen serves /healthz, /readyz, /metrics and /debug/*.
	HTTPListen string

	// TLSCert and TLSKey turn TLS on for gRPC; ClientCA then requires
	// client certificates (mutual TLS) whose URI SAN names the agent.
	TLSCert, TLSKey, ClientCA string
	// TokenAudience also accepts agents with a ServiceAccount token for
	// this audience, checked by TokenReview, from one of AgentAccounts
	// (namespace/name); needs Kube and TLS.
	TokenAudience string
	AgentAccounts []string

	// WebhookListen serves the WAFPolicy validating webhook over HTTPS with
	// WebhookCert and WebhookKey.
	WebhookListen, WebhookCert, WebhookKey string

	// AgentCluster is the Envoy cluster gateways reach their node's agent
	// through, AgentTimeout the timeout of one inspection call.
	AgentCluster string
	AgentTimeout time.Duration

	Logger *slog.Logger
}

// Check refuses settings that cannot work together; New calls it too.
func (c Config) Check() error {
	switch {
	case (c.Manifests == "") == (c.Kube == nil):
		return errors.New("exactly one source: a manifests folder or a Kubernetes API server")
	case (c.TLSCert == "") != (c.TLSKey == "") || (c.ClientCA != "" && c.TLSCert == ""):
		return errors.New("--tls-cert and --tls-key go together, and --client-ca needs them")
	case c.TokenAudience != "" && (c.Kube == nil || c.TLSCert == ""):
		return errors.New("--agent-token-audience needs the Kubernetes source (--kubeconfig or --in-cluster) and --tls-cert: tokens are checked by the API server and accepted over TLS only")
	case c.WebhookListen != "" && (c.WebhookCert == "" || c.WebhookKey == ""):
		return errors.New("--webhook-listen needs --webhook-cert and --webhook-key")
	case c.AgentTimeout <= 0:
		return errors.New("--agent-timeout must be positive")
	}
	return nil
}

// ControlPlane is meshwaf's control plane, assembled: a source (files or
// Kubernetes) fills the store, the rebuild loop turns the store into
// snapshots, and the xds server serves them; on Kubernetes the status
// writer reports on every WAFPolicy.
type ControlPlane struct {
	cfg    Config
	log    *slog.Logger
	db     *store.Store
	kube   *kubeClients
	server *xds.Server
	source watch.Source
	runner *rebuild.Runner
	http   *http.Server
}

// New assembles the control plane from cfg; Run starts it.
func New(cfg Config) (*ControlPlane, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cp := &ControlPlane{cfg: cfg, log: cfg.Logger, db: store.New()}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var err error
	if cfg.Kube != nil {
		if cp.kube, err = newKubeClients(cfg.Kube); err != nil {
			return nil, err
		}
	}
	xdsConfig := xds.Config{Listen: cfg.Listen, Listener: cfg.Listener, Logger: cp.log, Registry: registry}
	if err := configureTLS(&xdsConfig, cfg); err != nil {
		return nil, err
	}
	if err := configureTokens(&xdsConfig, cfg, cp.kube); err != nil {
		return nil, err
	}
	if cp.server, err = xds.New(xdsConfig); err != nil {
		return nil, err
	}
	if cp.source, err = newSource(cfg, cp.kube, cp.db); err != nil {
		return nil, err
	}
	cp.runner = rebuild.New(rebuild.Config{
		Store:     cp.db,
		Synced:    []<-chan struct{}{cp.source.Synced()},
		Snapshot:  snapshot.Config{AgentCluster: cfg.AgentCluster, AgentTimeout: cfg.AgentTimeout},
		Publisher: cp.server,
		Logger:    cp.log,
	})
	mux := http.NewServeMux()
	mux.Handle("/", cp.server.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	cp.http = &http.Server{Addr: cfg.HTTPListen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return cp, nil
}

// Run serves until ctx is done or a part fails, and returns the first
// failure.
func (cp *ControlPlane) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return cp.source.Start(ctx) })
	g.Go(func() error { return cp.runner.Start(ctx) })
	g.Go(func() error { return cp.server.Start(ctx) })
	g.Go(func() error { return serveHTTP(ctx, cp.http, "", "") })
	if cp.kube != nil {
		reports := cp.kube.typed.CoreV1().ConfigMaps(cp.cfg.Namespace)
		writer := status.NewWriter(status.WriterConfig{Client: cp.kube.dynamic, Fleet: cp.server, Store: cp.db, Logger: cp.log,
			Reports: reports, Replica: cp.cfg.Identity})
		publisher := status.NewPublisher(status.PublisherConfig{ConfigMaps: reports, Replica: cp.cfg.Identity, Fleet: cp.server, Logger: cp.log})
		g.Go(func() error { return publisher.Start(ctx) })
		g.Go(func() error {
			return status.RunAsLeader(ctx, status.LeaderConfig{
				Client: cp.kube.typed, Namespace: cp.cfg.Namespace, Identity: cp.cfg.Identity, Logger: cp.log,
			}, writer.Start)
		})
	}
	if cp.cfg.WebhookListen != "" {
		webhook := &http.Server{
			Addr:              cp.cfg.WebhookListen,
			Handler:           admission.Handler(func(doc []byte) error { return watch.CheckPolicy(doc, validatePolicy) }, cp.log),
			ReadHeaderTimeout: 5 * time.Second,
		}
		g.Go(func() error { return serveHTTP(ctx, webhook, cp.cfg.WebhookCert, cp.cfg.WebhookKey) })
	}
	return g.Wait()
}

// configureTLS sets up TLS, and with a client CA mutual TLS and
// certificate-based identities, for the gRPC server. The files are read
// again for every connection (tlsfiles), so renewed certificates and a
// rotated client CA bundle apply without a restart.
func configureTLS(xc *xds.Config, cfg Config) error {
	if cfg.TLSCert == "" {
		return nil
	}
	files := tlsfiles.Server{CertFile: cfg.TLSCert, KeyFile: cfg.TLSKey}
	if cfg.ClientCA != "" {
		files.ClientCAFile, files.ClientAuth = cfg.ClientCA, tls.RequireAndVerifyClientCert
		if cfg.TokenAudience != "" {
			// An agent may bring a token instead (configureTokens).
			files.ClientAuth = tls.VerifyClientCertIfGiven
		}
		xc.Authenticator = xds.CertificateAuthenticator{}
	}
	creds, err := files.Credentials()
	if err != nil {
		return fmt.Errorf("--tls-cert, --tls-key, --client-ca: %w", err)
	}
	xc.Credentials = creds
	return nil
}

// configureTokens lets agents authenticate with ServiceAccount tokens.
// Callers without a token fall back to client certificates when a client
// CA is set (configureTLS then makes them optional at the TLS layer), else
// they are anonymous and may read ECDS only.
func configureTokens(xc *xds.Config, cfg Config, kube *kubeClients) error {
	if cfg.TokenAudience == "" {
		return nil
	}
	reviewer, err := kubeauth.New(kubeauth.Config{
		Reviews:   kube.typed.AuthenticationV1().TokenReviews(),
		Audiences: []string{cfg.TokenAudience},
		Agents:    cfg.AgentAccounts,
		Fallback:  xc.Authenticator,
	})
	if err != nil {
		return fmt.Errorf("--agent-service-accounts: %w", err)
	}
	xc.Authenticator = reviewer
	return nil
}

// validatePolicy is what only Coraza can check: whether custom rules compile.
func validatePolicy(spec v1alpha1.WAFPolicySpec) error {
	return seclang.ValidateCustomRules(spec.CustomRules)
}

func newSource(cfg Config, kube *kubeClients, db *store.Store) (watch.Source, error) {
	if kube == nil {
		if info, err := os.Stat(cfg.Manifests); err != nil || !info.IsDir() {
			return nil, fmt.Errorf("--manifests %q is not a readable folder", cfg.Manifests)
		}
		return watch.NewFiles(watch.FilesConfig{Dir: cfg.Manifests, Store: db, Validate: validatePolicy, Logger: cfg.Logger}), nil
	}
	return watch.NewKubernetes(watch.KubernetesConfig{
		Client: kube.dynamic, Discovery: kube.typed.Discovery(), Store: db, Validate: validatePolicy, Logger: cfg.Logger,
	}), nil
}

type kubeClients struct {
	typed   kubernetes.Interface
	dynamic dynamic.Interface
}

func newKubeClients(rc *rest.Config) (*kubeClients, error) {
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "meshwaf-xds"
	typed, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &kubeClients{typed: typed, dynamic: dyn}, nil
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
