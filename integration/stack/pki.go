package stack

import (
	"fmt"
	"path/filepath"

	"github.com/meshwaf/meshwaf/devpki"
)

// ControlPlaneName is the name in the control plane's serving certificate:
// its Service's, which the gateway bootstrap (deploy/istio) checks.
const ControlPlaneName = "meshwaf-xds.meshwaf-system.svc"

// NodeID is the node id of the stack's agent.
const NodeID = "meshwaf-stack-node"

// PKI holds the certificates of one stack. Every part talks to the control
// plane over mutual TLS, as in production, with a throwaway CA made for
// the run (devpki): the control plane's serving certificate, the agent's
// (bound to NodeID) and the gateway's.
type PKI struct {
	CA                     string
	Server, Agent, Gateway devpki.Pair
}

func newPKI(dir string) (*PKI, error) {
	ca, err := devpki.New(dir)
	if err != nil {
		return nil, fmt.Errorf("stack pki: %w", err)
	}
	p := &PKI{CA: ca.CAFile}
	if p.Server, err = ca.Server("meshwaf-xds", ControlPlaneName, "127.0.0.1"); err != nil {
		return nil, fmt.Errorf("stack pki: %w", err)
	}
	if p.Agent, err = ca.Agent(NodeID); err != nil {
		return nil, fmt.Errorf("stack pki: %w", err)
	}
	if p.Gateway, err = ca.Gateway("ingress"); err != nil {
		return nil, fmt.Errorf("stack pki: %w", err)
	}
	return p, nil
}

// controlPlaneTLSArgs are meshwaf-xds's flags for mutual TLS.
func (p *PKI) controlPlaneTLSArgs() []string {
	return []string{"--tls-cert", p.Server.Cert, "--tls-key", p.Server.Key, "--client-ca", p.CA}
}

// agentTLSArgs are meshwaf-agent's flags for TLS, with its client
// certificate or, if tokenFile is set, that bearer token instead.
func (p *PKI) agentTLSArgs(tokenFile string) []string {
	args := []string{"--xds-ca-file", p.CA, "--xds-server-name", ControlPlaneName}
	if tokenFile != "" {
		return append(args, "--xds-token-file", tokenFile)
	}
	return append(args, "--xds-cert-file", p.Agent.Cert, "--xds-key-file", p.Agent.Key)
}

// PKI is the stack's certificates.
func (s *Stack) PKI() *PKI { return s.pki }

func pkiDir(runDir string) string { return filepath.Join(runDir, "pki") }
