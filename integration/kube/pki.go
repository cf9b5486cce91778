package kube

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"

	"github.com/meshwaf/meshwaf/integration/devpki"
)

// pki is the key material of one cluster, written once at Start and reused
// by every API server restart so clients keep trusting it.
type pki struct {
	caFile        string // trusted by clients; signs serving and client certs
	servingCert   string
	servingKey    string
	adminCert     []byte // PEM, group system:masters
	adminKey      []byte
	caPEM         []byte
	saPublicFile  string // verifies ServiceAccount tokens
	saPrivateFile string // signs them (TokenRequest)
}

// adminUser is the client certificate's user; system:masters bypasses RBAC,
// which is what a harness admin needs and what RBAC tests must not use.
const adminUser = "meshwaf-test-admin"

func newPKI(dir string) (*pki, error) {
	ca, err := devpki.New(dir)
	if err != nil {
		return nil, err
	}
	serving, err := ca.Server("kube-apiserver", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local", "127.0.0.1", "::1")
	if err != nil {
		return nil, err
	}
	admin, err := ca.Client(adminUser, "system:masters")
	if err != nil {
		return nil, err
	}
	p := &pki{
		caFile:        ca.CAFile,
		servingCert:   serving.Cert,
		servingKey:    serving.Key,
		saPublicFile:  filepath.Join(dir, "sa.pub"),
		saPrivateFile: filepath.Join(dir, "sa.key"),
	}
	for path, into := range map[string]*[]byte{ca.CAFile: &p.caPEM, admin.Cert: &p.adminCert, admin.Key: &p.adminKey} {
		if *into, err = os.ReadFile(path); err != nil {
			return nil, err
		}
	}
	// ServiceAccount tokens are signed with a key pair, not a certificate.
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	return p, errors.Join(
		os.WriteFile(p.saPublicFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600),
		os.WriteFile(p.saPrivateFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}), 0o600))
}
