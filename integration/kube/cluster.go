package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/meshwaf/meshwaf/integration/freeport"
	"github.com/meshwaf/meshwaf/integration/proc"
)

// Options shape a cluster. The zero value is what most tests want.
type Options struct {
	// IstioCRDs names the Istio CRDs to install, as plural.group; nil means
	// DefaultIstioCRDs, an empty non-nil slice none.
	IstioCRDs []string
	// GatewayAPICRDs names the Gateway API standard-channel CRDs to install,
	// by plural; nil means DefaultGatewayAPICRDs, an empty non-nil slice none.
	GatewayAPICRDs []string
	// NoMeshwafCRDs leaves out the WAFPolicy CRD.
	NoMeshwafCRDs bool
	// APIServerFlags are appended to the harness's kube-apiserver flags and
	// so override them.
	APIServerFlags []string
}

// Cluster is etcd plus kube-apiserver on loopback. Its methods are safe for
// concurrent use.
type Cluster struct {
	dir        string
	bins       Binaries
	keys       *pki
	etcd       *proc.Process
	flags      []string
	admin      *rest.Config
	kubeconfig string

	mu     sync.Mutex
	server *apiServer // nil while stopped
}

// Start brings a cluster up for a test, with its files in a fresh temporary
// directory, and stops it when the test ends. Any failure, including a
// failed binary install, fails the test: it never skips. When the test has
// failed, the ends of the etcd and API server logs are written to its log.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c, err := New(ctx, t.TempDir(), opts)
	if err != nil {
		// Ports are chosen free and then bound by etcd and the API server;
		// on a CI machine running other packages beside this one, another
		// process may take one in between. One more try, on fresh ports.
		t.Logf("kube harness: %v; starting again", err)
		if c, err = New(ctx, t.TempDir(), opts); err != nil {
			t.Fatalf("kube harness: %v", err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			c.logTails(t)
		}
		if err := c.Close(); err != nil {
			t.Errorf("kube harness: %v", err)
		}
	})
	return c
}

// New starts a cluster with its files in dir; Close stops it. Tests use Start.
func New(ctx context.Context, dir string, opts Options) (c *Cluster, err error) {
	bins, err := InstallBinaries()
	if err != nil {
		return nil, err
	}
	keys, err := newPKI(dir)
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	c = &Cluster{dir: dir, bins: bins, keys: keys}
	// Not c: returning an error sets it to nil before this runs.
	started := c
	defer func() {
		if err != nil {
			_ = started.Close()
		}
	}()

	var etcdURL string
	if c.etcd, etcdURL, err = startEtcd(ctx, bins.Etcd, dir); err != nil {
		return nil, err
	}
	// The port is chosen once: a restarted API server comes back on the same
	// address, so clients and kubeconfigs handed out stay valid.
	port, err := freeport.Port()
	if err != nil {
		return nil, err
	}
	c.flags = apiServerFlags(dir, port, etcdURL, keys, opts.APIServerFlags)
	c.admin = &rest.Config{
		Host: "https://" + freeport.Addr(port),
		TLSClientConfig: rest.TLSClientConfig{
			CAData: keys.caPEM, CertData: keys.adminCert, KeyData: keys.adminKey,
		},
		// client-go's default 5 QPS throttles tests that create many objects.
		QPS: 100, Burst: 200,
	}
	c.kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	if err := WriteKubeconfig(c.kubeconfig, c.admin); err != nil {
		return nil, err
	}
	if err := c.StartAPIServer(ctx); err != nil {
		return nil, err
	}
	if err := c.installCRDs(ctx, opts); err != nil {
		return nil, err
	}
	return c, nil
}

// Kubeconfig is the path of a kubeconfig file for the admin, for tools such
// as helm.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// StartAPIServer starts the API server if it is stopped and waits until it
// is ready.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.server != nil {
		return nil
	}
	s, err := startAPIServer(ctx, c.bins.APIServer, c.dir, c.flags, c.admin)
	if err != nil {
		return err
	}
	c.server = s
	return nil
}

// StopAPIServer stops the API server gracefully (SIGTERM, then SIGKILL after
// 30 s; it takes about a second) and keeps etcd running. Clients see connection errors until
// StartAPIServer; informers retry and resync.
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.server == nil {
		return nil
	}
	err := c.server.process.Stop(30 * time.Second)
	c.server = nil
	return err
}

// KillAPIServer ends the API server with SIGKILL: no graceful shutdown, open
// connections just break, as when a control-plane node dies.
func (c *Cluster) KillAPIServer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.server != nil {
		c.server.process.Kill()
		c.server = nil
	}
}

// Close stops the API server and etcd. The directory is left for the caller
// (Start's is removed by the testing package).
func (c *Cluster) Close() error {
	errs := []error{c.StopAPIServer()}
	if c.etcd != nil {
		errs = append(errs, c.etcd.Stop(10*time.Second))
	}
	return errors.Join(errs...)
}

func (c *Cluster) logTails(t testing.TB) {
	for _, name := range []string{"etcd.log", "kube-apiserver.log"} {
		data, err := os.ReadFile(filepath.Join(c.dir, name))
		if err == nil {
			t.Logf("--- last lines of %s ---\n%s", name, tail(string(data), 60))
		}
	}
}

// WriteKubeconfig writes cfg (host, TLS, bearer token) as a kubeconfig file,
// for binaries under test (cmd/xds --kubeconfig) and kubectl.
func WriteKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["meshwaf-test"] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: cfg.CAData,
	}
	kc.AuthInfos["meshwaf-test"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
	}
	kc.Contexts["meshwaf-test"] = &clientcmdapi.Context{Cluster: "meshwaf-test", AuthInfo: "meshwaf-test"}
	kc.CurrentContext = "meshwaf-test"
	return clientcmd.WriteToFile(*kc, path)
}
