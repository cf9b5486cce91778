package xds

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// AgentURIPrefix starts the path of an agent certificate's URI SAN:
// spiffe://<trust domain>/agent/<node name>.
const AgentURIPrefix = "/agent/"

// CertificateAuthenticator reads a caller's identity from its client
// certificate. It relies on the TLS layer having verified the certificate
// against the client CA (tls.RequireAndVerifyClientCert). A URI SAN
// spiffe://<domain>/agent/<node> makes the caller the agent of that node;
// any other verified certificate (a gateway's) may read ECDS only.
type CertificateAuthenticator struct{}

// Authenticate implements Authenticator.
func (CertificateAuthenticator) Authenticate(ctx context.Context) (Peer, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Peer{}, errors.New("no peer information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.PeerCertificates) == 0 {
		return Peer{}, errors.New("no verified client certificate")
	}
	leaf := info.State.PeerCertificates[0]
	for _, uri := range leaf.URIs {
		if node, isAgent := strings.CutPrefix(uri.Path, AgentURIPrefix); uri.Scheme == "spiffe" && isAgent && node != "" {
			return Peer{Name: uri.String(), Agent: true, Node: node}, nil
		}
	}
	name := leaf.Subject.CommonName
	if len(leaf.URIs) > 0 {
		name = leaf.URIs[0].String()
	}
	return Peer{Name: name}, nil
}
