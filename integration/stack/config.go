package stack

import (
	"cmp"
	"net/http"
	"time"
)

// Config selects what a Stack runs. Only Manifests (or Kubeconfig) is required (unless
// EnvoyOnly); everything else has a working default.
type Config struct {
	// Manifests is the folder of YAML the control plane reads (--manifests).
	Manifests string
	// Kubeconfig, when set, makes the control plane read the Kubernetes API
	// server it names instead of Manifests, with ControlPlaneArgs added
	// (e.g. --namespace, --webhook-listen).
	Kubeconfig       string
	ControlPlaneArgs []string
	// AgentTokenFile, when set, makes the agent authenticate to the
	// control plane with this bearer token (a ServiceAccount token the
	// control plane reviews) instead of its client certificate.
	AgentTokenFile string
	// RunDir receives the generated Envoy configuration, every process's
	// output and the audit log. Empty means a new temporary directory,
	// which Stop removes unless KeepRunDir is set.
	RunDir     string
	KeepRunDir bool
	// RepoRoot is the meshwaf module root; empty means the nearest parent
	// of the working directory whose go.mod declares the meshwaf module.
	RepoRoot string
	// Binaries are prebuilt control plane and agent binaries; nil means
	// building them into the run directory.
	Binaries *Binaries
	// EnvoyPath is the envoy binary; empty means $MESHWAF_ENVOY, else the
	// path printed by scripts/install-envoy.sh.
	EnvoyPath string
	// Ports are the loopback ports to use; zero fields get free random ports.
	Ports Ports
	// Backend serves the requests Envoy forwards; nil means the echo
	// backend, which answers every request with a JSON description of it.
	// The CRS regression suite needs its reference backend (albedo) here,
	// because its response tests tell the backend what to answer.
	Backend http.Handler
	// EnvoyOnly starts the backend and Envoy but no control plane or agent,
	// to observe Envoy before it has ever received a configuration.
	EnvoyOnly bool
	// NoEnvoy starts the backend, control plane and agent but no Envoy,
	// for tests whose gateways are started another way (integration/istio
	// runs them as Istio does, with pilot-agent).
	NoEnvoy bool
	// PodIP, when set, is the address the agent's gRPC server and the
	// backend listen on instead of loopback, as pods do: a Kubernetes
	// endpoint may not be a loopback address (integration/istio).
	PodIP string
	// NodeID is the agent's node (its --node-id and certificate); empty
	// means NodeID.
	NodeID string
	// AgentCluster is the control plane's --agent-cluster; empty means the
	// cluster the stack's Envoy defines (AgentCluster).
	AgentCluster string
	// Gateway is the identity the Envoy node presents, as an Istio ingress
	// gateway would; zero fields get the defaults of DefaultGateway.
	Gateway GatewayIdentity
	// AcceptHTTP10 makes the gateway accept HTTP/1.0 requests, as Istio
	// configures a gateway whose pod sets ISTIO_META_HTTP10=1 (node metadata
	// HTTP10). Envoy's default, and Istio's, answers HTTP/1.0 with 426.
	AcceptHTTP10 bool
	// AgentTimeout is how long Envoy waits for the agent's verdict (the
	// control plane's --agent-timeout); zero keeps the control plane's
	// default. The CRS suite raises it: paranoia level 4 on a 64 KiB body
	// takes longer than a production timeout allows on a small machine.
	AgentTimeout time.Duration
	// InspectionWorkers is the agent's --inspection-workers; zero keeps its
	// default (one per CPU).
	InspectionWorkers int
	// AgentDrainDelay is the agent's --drain-delay: zero here, so that a
	// stack stops at once (the agent's own default is 5s).
	AgentDrainDelay time.Duration
	// ReadyTimeout bounds the wait for each component to become ready.
	// Default 60s (the first CRS compile and Envoy start are slow on small
	// machines, especially under a parallel test run).
	ReadyTimeout time.Duration
	// Logf receives progress messages; nil discards them.
	Logf func(format string, args ...any)
}

// Ports are loopback TCP ports.
type Ports struct {
	Gateway    int // Envoy's HTTP listener
	EnvoyAdmin int
	XDS        int // control plane gRPC (--listen)
	XDSHTTP    int // control plane /readyz, /debug (--http-listen)
	Agent      int // agent ext_authz gRPC (--listen)
	AgentHTTP  int // agent /readyz, /debug (--http-listen)
	Backend    int // echo backend
}

// GatewayIdentity is what Istio puts into an ingress gateway's Envoy node.
type GatewayIdentity struct {
	Namespace string
	Labels    map[string]string
	Workload  string
}

// DefaultGateway is the identity of the stock Istio ingress gateway in
// namespace istio-ingress, which the demo Gateway object selects.
var DefaultGateway = GatewayIdentity{
	Namespace: "istio-ingress",
	Labels:    map[string]string{"istio": "ingressgateway", "app": "istio-ingressgateway"},
	Workload:  "istio-ingressgateway",
}

// AgentCluster is the name of the Envoy cluster that reaches the agent; the
// control plane is told to use it (--agent-cluster).
const AgentCluster = "meshwaf_agent"

// backendCluster is the cluster every gateway route goes to.
const backendCluster = "echo_backend"

func (c Config) withDefaults() Config {
	c.NodeID = cmp.Or(c.NodeID, NodeID)
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 60 * time.Second
	}
	if c.Gateway.Namespace == "" {
		c.Gateway.Namespace = DefaultGateway.Namespace
	}
	if c.Gateway.Labels == nil {
		c.Gateway.Labels = DefaultGateway.Labels
	}
	if c.Gateway.Workload == "" {
		c.Gateway.Workload = DefaultGateway.Workload
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	return c
}
