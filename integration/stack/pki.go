package stack

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/meshwaf/meshwaf/integration/devpki"
)

// ControlPlaneName is the name in the control plane's serving certificate:
// its Service's, which the gateway bootstrap (deploy/istio) checks.
const ControlPlaneName = "meshwaf-xds.meshwaf-system.svc"

// NodeID is the node id of the stack's agent.
const NodeID = "meshwaf-stack-node"

// PKI holds the certificates of one stack. Every part talks to the control
// plane over mutual TLS, as in production, with a throwaway CA made for
// the run (devpki): the control plane's serving certificate, the agent's
// (bound to its node) and the gateway's.
//
// The gateway's certificate and CA bundle are laid out as the kubelet lays
// out the mounted Secret meshwaf-gateway-xds-tls: tls.crt, tls.key and
// ca.crt in their own folder are links into ..data, itself a link to the
// folder of the current version, which a renewal replaces in one rename
// (RenewGatewayCertificate, RotateCA).
type PKI struct {
	// CA is the CA bundle the control plane verifies clients with and the
	// agent verifies the control plane with.
	CA                     string
	Server, Agent, Gateway devpki.Pair

	ca              *devpki.PKI
	gatewayVersions int
}

// GatewayURI is the URI SAN of the stack's gateway certificate.
const GatewayURI = "spiffe://" + devpki.TrustDomain + "/gateway/ingress"

// gatewaySecretDir is the folder of the gateway's certificate, as the
// Secret meshwaf-gateway-xds-tls is mounted in a gateway pod.
const gatewaySecretDir = "gateway-xds-client"

func newPKI(dir, nodeID string) (*PKI, error) {
	ca, err := devpki.New(dir)
	if err != nil {
		return nil, fmt.Errorf("stack pki: %w", err)
	}
	p := &PKI{CA: ca.CAFile, ca: ca}
	if p.Server, err = ca.Server("meshwaf-xds", ControlPlaneName, "127.0.0.1"); err != nil {
		return nil, fmt.Errorf("stack pki: %w", err)
	}
	if p.Agent, err = ca.Agent(nodeID); err != nil {
		return nil, fmt.Errorf("stack pki: %w", err)
	}
	if err = p.RenewGatewayCertificate(); err != nil {
		return nil, fmt.Errorf("stack pki: %w", err)
	}
	return p, nil
}

// RenewGatewayCertificate issues the gateway a new client certificate and
// swaps it in as the kubelet swaps a renewed Secret's files.
func (p *PKI) RenewGatewayCertificate() error {
	issued, err := p.ca.Gateway("ingress")
	if err != nil {
		return err
	}
	bundle := p.CA // before the first version, the Secret holds the CA
	if p.gatewayVersions > 0 {
		bundle = filepath.Join(p.gatewayDir(), "ca.crt")
	}
	files, err := readFiles(map[string]string{"tls.crt": issued.Cert, "tls.key": issued.Key, "ca.crt": bundle})
	if err != nil {
		return err
	}
	return p.publishGatewaySecret(files)
}

// RotateCA is the middle of a CA rotation, as an operator does it: a new CA
// is made, every party trusts the old and the new one (the gateway's
// Secret, and the bundle the agent and the control plane read), and the
// control plane's serving certificate is reissued by the new CA, which
// only a party that loaded the new bundle accepts. Client certificates
// stay issued by the old CA. It returns the new CA's serial number, in hex.
func (p *PKI) RotateCA() (string, error) {
	dir, err := os.MkdirTemp(p.ca.Dir, "ca-")
	if err != nil {
		return "", err
	}
	next, err := devpki.New(dir)
	if err != nil {
		return "", err
	}
	files, err := readFiles(map[string]string{"tls.crt": p.Gateway.Cert, "tls.key": p.Gateway.Key, "old-ca": p.CA, "new-ca": next.CAFile})
	if err != nil {
		return "", err
	}
	bundle := append(files["old-ca"], files["new-ca"]...)
	if err := p.publishGatewaySecret(map[string][]byte{"tls.crt": files["tls.crt"], "tls.key": files["tls.key"], "ca.crt": bundle}); err != nil {
		return "", err
	}
	server, err := next.Server("meshwaf-xds", ControlPlaneName, "127.0.0.1")
	if err != nil {
		return "", err
	}
	// Renames, so that a reader sees the old files or the new, never half.
	if err := os.WriteFile(p.CA+".next", bundle, 0o600); err != nil {
		return "", err
	}
	for from, to := range map[string]string{p.CA + ".next": p.CA, server.Cert: p.Server.Cert, server.Key: p.Server.Key} {
		if err := os.Rename(from, to); err != nil {
			return "", err
		}
	}
	return certificateSerial(next.CAFile)
}

// publishGatewaySecret writes files (by name: tls.crt, tls.key, ca.crt)
// into a new version of the gateway's Secret folder and makes it the
// current one.
func (p *PKI) publishGatewaySecret(files map[string][]byte) error {
	p.gatewayVersions++
	dir := p.gatewayDir()
	version := fmt.Sprintf("..v%d", p.gatewayVersions)
	if err := os.MkdirAll(filepath.Join(dir, version), 0o700); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, version, name), content, 0o600); err != nil {
			return err
		}
	}
	if err := os.Symlink(version, filepath.Join(dir, "..data_tmp")); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		return err
	}
	p.Gateway = devpki.Pair{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key")}
	if p.gatewayVersions == 1 {
		for name := range files {
			if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// readFiles reads each path, by the name given to it.
func readFiles(paths map[string]string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(paths))
	for name, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		out[name] = b
	}
	return out, nil
}

// gatewayDir is the folder of the gateway's Secret.
func (p *PKI) gatewayDir() string { return filepath.Join(p.ca.Dir, gatewaySecretDir) }

// GatewayCertificateSerial is the serial number, in hex, of the gateway's
// current client certificate.
func (p *PKI) GatewayCertificateSerial() (string, error) {
	return certificateSerial(p.Gateway.Cert)
}

// certificateSerial is the serial number, in hex, of the first certificate
// in a PEM file.
func certificateSerial(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return "", errors.New(path + ": no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", err
	}
	return cert.SerialNumber.Text(16), nil
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
