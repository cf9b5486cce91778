package tlsfiles

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc/credentials"
)

// Server is the control plane's side of TLS.
type Server struct {
	// CertFile and KeyFile are the serving certificate and its key.
	CertFile, KeyFile string
	// ClientCAFile, when set, holds the CAs that verify clients'
	// certificates, and ClientAuth says whether a client must present one
	// (tls.RequireAndVerifyClientCert) or may (tls.VerifyClientCertIfGiven).
	ClientCAFile string
	ClientAuth   tls.ClientAuthType
}

// Credentials checks the files once, so that a wrong path or a broken file
// stops the program at start, and returns credentials that read them again
// for every connection.
func (s Server) Credentials() (credentials.TransportCredentials, error) {
	return newCredentials(s.config)
}

func (s Server) config() (*tls.Config, error) {
	cert, err := loadServing(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
	if s.ClientCAFile != "" {
		if cfg.ClientCAs, err = Pool(s.ClientCAFile); err != nil {
			return nil, err
		}
		cfg.ClientAuth = s.ClientAuth
	}
	return cfg, nil
}

// Client is the agent's side of TLS to the control plane.
type Client struct {
	// CAFile holds the CAs that verify the server's certificate.
	CAFile string
	// ServerName is the name the server's certificate must carry; empty
	// means the host of the address dialled.
	ServerName string
	// CertFile and KeyFile, when set, are the client certificate for
	// mutual TLS.
	CertFile, KeyFile string
}

// Credentials checks the files once and returns credentials that read them
// again for every connection.
func (c Client) Credentials() (credentials.TransportCredentials, error) {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("the client certificate and its key go together")
	}
	return newCredentials(c.config)
}

func (c Client) config() (*tls.Config, error) {
	roots, err := Pool(c.CAFile)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		// Presented whatever CAs the server names as acceptable (it may
		// name only the new CA of a rotation the certificate predates).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return cfg, nil
}

// Pool reads a PEM bundle of CA certificates.
func Pool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", path)
	}
	return pool, nil
}

// reloading is gRPC's TLS credentials made anew from the files for every
// handshake; gRPC's own do the handshake (ALPN, server name, AuthInfo).
type reloading struct {
	load func() (*tls.Config, error)
	info credentials.ProtocolInfo
}

func newCredentials(load func() (*tls.Config, error)) (credentials.TransportCredentials, error) {
	cfg, err := load()
	if err != nil {
		return nil, err
	}
	return &reloading{load: load, info: credentials.NewTLS(cfg).Info()}, nil
}

func (r *reloading) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cfg, err := r.load()
	if err != nil {
		return nil, nil, err
	}
	return credentials.NewTLS(cfg).ClientHandshake(ctx, authority, conn)
}

func (r *reloading) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cfg, err := r.load()
	if err != nil {
		return nil, nil, err
	}
	return credentials.NewTLS(cfg).ServerHandshake(conn)
}

func (r *reloading) Info() credentials.ProtocolInfo { return r.info }

func (r *reloading) Clone() credentials.TransportCredentials {
	clone := *r
	return &clone
}

// OverrideServerName is deprecated in gRPC and unused by it; the server
// name is the Client's.
func (r *reloading) OverrideServerName(string) error { return nil }

// ServingCertificate checks the pair once and returns a tls.Config
// GetCertificate that reads it again for every handshake, for an HTTPS
// server (the control plane's admission webhook).
func ServingCertificate(certFile, keyFile string) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	if _, err := loadServing(certFile, keyFile); err != nil {
		return nil, err
	}
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return loadServing(certFile, keyFile) }, nil
}

// loadServing reads a serving certificate and its key.
func loadServing(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	return &cert, nil
}
