// Command meshwaf-xds is meshwaf's control plane: it reads gateways, routes
// and WAF policies, and serves the meshwaf.waf filter's configuration to
// Envoy over ECDS and host policies to meshwaf agents. It only turns flags
// into controlplane.Config and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshwaf/meshwaf/controlplane"
)

const usage = `meshwaf-xds: the meshwaf control plane.

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
`

// options are the flags that do not map one to one onto the Config.
type options struct {
	kubeconfig, agentAccounts, logFormat string
	inCluster                            bool
}

func parseFlags(args []string) (controlplane.Config, options, error) {
	var c controlplane.Config
	var o options
	fs := flag.NewFlagSet("meshwaf-xds", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	fs.StringVar(&c.Manifests, "manifests", "", "folder of multi-document YAML manifests")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "read objects from the Kubernetes API server of this kubeconfig")
	fs.BoolVar(&o.inCluster, "in-cluster", false, "read objects from the Kubernetes API server this pod runs in")
	fs.StringVar(&c.Namespace, "namespace", envOr("POD_NAMESPACE", "meshwaf-system"), "namespace of the leader-election Lease and of the ConfigMap where replicas report their agents (Kubernetes only)")
	fs.StringVar(&c.Identity, "identity", defaultIdentity(), "this replica's name in leader election and its key in the agent report ConfigMap (Kubernetes only)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "serve gRPC over TLS with this certificate file")
	fs.StringVar(&c.TLSKey, "tls-key", "", "key file of --tls-cert")
	fs.StringVar(&c.ClientCA, "client-ca", "", "require client certificates signed by this CA (mutual TLS); an agent's certificate must carry the URI SAN spiffe://<domain>/agent/<node id>")
	fs.StringVar(&c.TokenAudience, "agent-token-audience", "", "also accept agents that authenticate with a Kubernetes ServiceAccount token for this audience (e.g. meshwaf), checked by TokenReview; needs the Kubernetes source and --tls-cert")
	fs.StringVar(&o.agentAccounts, "agent-service-accounts", "meshwaf-system/meshwaf-agent", "comma-separated namespace/name of the ServiceAccounts whose tokens make their caller an agent (with --agent-token-audience)")
	fs.StringVar(&c.WebhookListen, "webhook-listen", "", "HTTPS address of the WAFPolicy validating webhook, e.g. :9443 (off when empty)")
	fs.StringVar(&c.WebhookCert, "webhook-cert", "", "TLS certificate file of the webhook")
	fs.StringVar(&c.WebhookKey, "webhook-key", "", "TLS key file of the webhook")
	fs.StringVar(&c.Listen, "listen", ":18000", "gRPC address serving ECDS to Envoy and host policies to agents")
	fs.StringVar(&c.HTTPListen, "http-listen", ":18001", "HTTP address for /healthz, /readyz, /metrics, /debug/snapshot, /debug/agents")
	fs.StringVar(&c.AgentCluster, "agent-cluster", "outbound|9191||meshwaf-agent.meshwaf-system.svc.cluster.local",
		"Envoy cluster through which gateways reach the node-local agent")
	fs.DurationVar(&c.AgentTimeout, "agent-timeout", 500*time.Millisecond, "timeout of one inspection call from Envoy to the agent")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	if err := fs.Parse(args); err != nil {
		return c, o, err
	}
	if (c.Manifests != "") == (o.kubeconfig != "" || o.inCluster) || (o.kubeconfig != "" && o.inCluster) {
		return c, o, errors.New("exactly one of --manifests, --kubeconfig and --in-cluster is required")
	}
	if o.logFormat != "json" && o.logFormat != "text" {
		return c, o, fmt.Errorf("--log-format must be json or text, not %q", o.logFormat)
	}
	if c.TokenAudience != "" {
		c.AgentAccounts = strings.Split(o.agentAccounts, ",")
	}
	return c, o, nil
}

func main() {
	cfg, opts, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err == nil && cfg.Manifests == "" {
		cfg.Kube, err = kubeConfig(opts)
	}
	if err == nil {
		err = cfg.Check()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshwaf-xds:", err)
		os.Exit(2)
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if opts.logFormat == "text" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cp, err := controlplane.New(cfg)
	if err == nil {
		err = cp.Run(ctx)
	}
	if err != nil {
		cfg.Logger.Error("meshwaf-xds stopped", "error", err)
		os.Exit(1)
	}
}

func kubeConfig(o options) (*rest.Config, error) {
	if o.inCluster {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", o.kubeconfig)
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
