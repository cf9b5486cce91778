package integration

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshwaf/meshwaf/agent"
	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/integration/stack"
)

const tokenAudience = "meshwaf"

// On Kubernetes an agent can prove who it is with its ServiceAccount token
// instead of a client certificate: the control plane asks the real API
// server with a TokenReview, and a token bound to a pod pins the node the
// agent may claim. The real agent, holding only a pod-bound token, receives
// its policies and the gateway blocks attacks; tokens of the wrong
// audience, of another ServiceAccount, or claiming another node are refused.
func TestKubernetesAgentAuthenticatesWithServiceAccountToken(t *testing.T) {
	c := startCluster(t)
	ctx := kubeCtx(t)
	agentToken, err := c.PodToken(ctx, leaseNamespace, "meshwaf-agent", stack.NodeID, tokenAudience)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(agentToken), 0o600); err != nil {
		t.Fatal(err)
	}
	apply(t, c, istioGateway, shopVirtualService("shop.example.com"), shopPolicy("Prevent"))
	s := startStack(t, stack.Config{
		Kubeconfig:       controlPlaneKubeconfig(t, c),
		ControlPlaneArgs: []string{"--namespace", leaseNamespace, "--agent-token-audience", tokenAudience},
		AgentTokenFile:   tokenFile,
		Gateway:          stack.DefaultGateway,
	})
	waitStatus(t, s, sqliGET, http.StatusForbidden, 10*time.Second)
	waitProgrammed(t, c, "shop", 10*time.Second)

	otherNodeToken, err := c.PodToken(ctx, leaseNamespace, "meshwaf-agent", "another-node", tokenAudience)
	if err != nil {
		t.Fatal(err)
	}
	wrongAudience, err := c.PodToken(ctx, leaseNamespace, "meshwaf-agent", stack.NodeID, "https://kubernetes.default.svc")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ServiceAccountConfig(ctx, "shop", "frontend"); err != nil { // creates the account
		t.Fatal(err)
	}
	notAnAgent, err := c.PodToken(ctx, "shop", "frontend", stack.NodeID, tokenAudience)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		token, node string
		want        codes.Code
	}{
		"the agent's own token":             {agentToken, stack.NodeID, codes.OK},
		"a token bound to another node":     {otherNodeToken, stack.NodeID, codes.PermissionDenied},
		"a token for the API server":        {wrongAudience, stack.NodeID, codes.Unauthenticated},
		"a token of another ServiceAccount": {notAnAgent, stack.NodeID, codes.PermissionDenied},
		"not a token at all":                {"garbage", stack.NodeID, codes.Unauthenticated},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := subscribeWithToken(t, s, tc.token, tc.node); got != tc.want {
				t.Fatalf("subscription ended with %s, want %s", got, tc.want)
			}
		})
	}
}

// subscribeWithToken subscribes to host policies over TLS with token as
// the only credential, as the agent sends it, and returns how the first
// answer went.
func subscribeWithToken(t *testing.T, s *stack.Stack, token, node string) codes.Code {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := agent.ControlPlaneAuth{CAFile: s.PKI().CA, ServerName: stack.ControlPlaneName, TokenFile: tokenFile}.DialOptions()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(s.ControlPlaneAddress(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return status.Code(err)
	}
	// A refusal can arrive before the first request is written: Send then
	// reports only io.EOF, and the stream's status comes from Recv.
	if err := stream.Send(&discovery.DeltaDiscoveryRequest{Node: &corev3.Node{Id: node}, TypeUrl: agentapi.HostPolicyTypeURL}); err != nil && !errors.Is(err, io.EOF) {
		return status.Code(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return status.Code(err)
	}
	if len(resp.GetResources()) == 0 {
		t.Errorf("an admitted agent was sent no host policies")
	}
	return codes.OK
}
