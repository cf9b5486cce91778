package kube

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/rest"

	"github.com/meshwaf/meshwaf/integration/proc"
)

// ServiceAccountIssuer is the issuer of ServiceAccount tokens (and their
// default audience), as in a kubeadm cluster.
const ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// apiServerFlags are the kube-apiserver flags of a harness cluster; extra
// flags come last so a test can override any of them.
func apiServerFlags(dir string, port int, etcdURL string, keys *pki, extra []string) []string {
	flags := []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--etcd-servers=" + etcdURL,
		"--tls-cert-file=" + keys.servingCert,
		"--tls-private-key-file=" + keys.servingKey,
		// Client certificates signed by the harness CA authenticate the
		// admin; ServiceAccount tokens authenticate everyone else.
		"--client-ca-file=" + keys.caFile,
		"--service-account-key-file=" + keys.saPublicFile,
		"--service-account-signing-key-file=" + keys.saPrivateFile,
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--anonymous-auth=false",
		"--authorization-mode=RBAC",
		// The defaults already include ValidatingAdmissionWebhook and
		// MutatingAdmissionWebhook; naming them keeps them on if the defaults
		// ever change.
		"--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy",
		// Services get ClusterIPs from this range, but nothing routes to
		// them: there is no kube-proxy. Webhooks in tests must use a URL.
		"--service-cluster-ip-range=10.0.0.0/24",
		// The lease reconciler would try to publish 127.0.0.1 as the
		// kubernetes Service's endpoint, which validation refuses (loopback),
		// and log that forever.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
		// Without a grace period the API server waits for open watches to
		// end on their own during shutdown, so stopping it with an informer
		// attached took over 30 s; with one it ends them (stop takes ~1 s).
		"--shutdown-watch-termination-grace-period=2s",
		"--cert-dir=" + filepath.Join(dir, "apiserver-certs"),
		"--v=1",
	}
	return append(flags, extra...)
}

// apiServer is one run of kube-apiserver; a restart makes a new one with the
// same flags.
type apiServer struct {
	process *proc.Process
}

func startAPIServer(ctx context.Context, binary, dir string, flags []string, admin *rest.Config) (*apiServer, error) {
	p, err := proc.Start("kube-apiserver", filepath.Join(dir, "kube-apiserver.log"), binary, proc.Options{}, flags...)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, p, admin); err != nil {
		_ = p.Stop(10 * time.Second)
		return nil, err
	}
	return &apiServer{process: p}, nil
}

// waitReady polls /readyz as the admin: it is 200 only once every post-start
// hook (RBAC bootstrap roles, CRD informers, ...) has finished, so a test
// that starts right after sees a complete API server.
func waitReady(ctx context.Context, p *proc.Process, admin *rest.Config) error {
	transport, err := rest.TransportFor(admin)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: transport, Timeout: 5 * time.Second}
	// Cold start on 2 cores is ~10 s; a minute leaves room for a loaded CI.
	if err := p.WaitHTTP(ctx, client, admin.Host+"/readyz", 90*time.Second); err != nil {
		return fmt.Errorf("kube-apiserver not ready: %w", err)
	}
	return nil
}
