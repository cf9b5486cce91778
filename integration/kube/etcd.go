package kube

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/meshwaf/meshwaf/integration/freeport"
	"github.com/meshwaf/meshwaf/integration/proc"
)

// startEtcd runs a single-member etcd on two fresh loopback ports with its
// data in dir/etcd.
func startEtcd(ctx context.Context, binary, dir string) (p *proc.Process, clientURL string, err error) {
	clientPort, err := freeport.Port()
	if err != nil {
		return nil, "", err
	}
	peerPort, err := freeport.Port()
	if err != nil {
		return nil, "", err
	}
	clientURL = "http://" + freeport.Addr(clientPort)
	peerURL := "http://" + freeport.Addr(peerPort)
	p, err = proc.Start("etcd", filepath.Join(dir, "etcd.log"), binary, proc.Options{},
		"--name=meshwaf-test",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=meshwaf-test="+peerURL,
		"--initial-cluster-state=new",
		// Nothing in a test cluster needs old revisions, and a small
		// snapshot interval keeps the WAL short on slow disks.
		"--snapshot-count=10000",
		"--auto-compaction-retention=1",
		"--log-level=warn",
		"--logger=zap",
	)
	if err != nil {
		return nil, "", err
	}
	if err := p.WaitHTTP(ctx, http.DefaultClient, clientURL+"/health", 30*time.Second); err != nil {
		_ = p.Stop(5 * time.Second)
		return nil, "", fmt.Errorf("etcd not healthy: %w", err)
	}
	return p, clientURL, nil
}
