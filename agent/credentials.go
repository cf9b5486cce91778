package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshwaf/meshwaf/tlsfiles"
)

// ControlPlaneAuth says how the agent reaches and proves itself to the
// control plane. The zero value is plain text without credentials, for
// local development.
type ControlPlaneAuth struct {
	// CAFile holds the CA certificates that verify the control plane's
	// serving certificate; setting it turns TLS on. It is read again for
	// every connection, so a CA rotation needs no restart.
	CAFile string
	// ServerName is the name expected in the control plane's certificate
	// (default: the host of the address dialled).
	ServerName string
	// CertFile and KeyFile are the agent's client certificate for mutual
	// TLS, with the URI SAN spiffe://<domain>/agent/<node id>. They are
	// read again for every connection, so a renewed certificate is used
	// without a restart.
	CertFile, KeyFile string
	// TokenFile holds a bearer token, typically a projected ServiceAccount
	// token, which the control plane checks with a TokenReview. It is read
	// again for every stream, so a rotated token is picked up.
	TokenFile string
}

// DialOptions turns the settings into gRPC dial options.
func (a ControlPlaneAuth) DialOptions() ([]grpc.DialOption, error) {
	if a.CAFile == "" {
		if a.CertFile != "" || a.KeyFile != "" || a.TokenFile != "" || a.ServerName != "" {
			return nil, errors.New("agent: client certificates, tokens and a server name need TLS: set the control plane CA")
		}
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	// The CA bundle and the client certificate are read again for every
	// connection: a renewed certificate or a rotated CA applies without a
	// restart.
	creds, err := tlsfiles.Client{CAFile: a.CAFile, ServerName: a.ServerName, CertFile: a.CertFile, KeyFile: a.KeyFile}.Credentials()
	if err != nil {
		return nil, fmt.Errorf("agent: control plane TLS: %w", err)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if a.TokenFile != "" {
		if _, err := readToken(a.TokenFile); err != nil {
			return nil, err
		}
		opts = append(opts, grpc.WithPerRPCCredentials(tokenFile(a.TokenFile)))
	}
	return opts, nil
}

// tokenFile sends the file's token as "authorization: Bearer <token>".
type tokenFile string

func (f tokenFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	token, err := readToken(string(f))
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + token}, nil
}

// RequireTransportSecurity keeps the token off plain-text connections.
func (tokenFile) RequireTransportSecurity() bool { return true }

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("agent: token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("agent: token file %s is empty", path)
	}
	return token, nil
}
