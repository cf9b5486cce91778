package istio

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshwaf/meshwaf/integration/freeport"
	"github.com/meshwaf/meshwaf/integration/kube"
	"github.com/meshwaf/meshwaf/integration/proc"
)

// Namespace is where istiod runs and keeps its configuration, as in a
// default install.
const Namespace = "istio-system"

// Istiod is a running pilot-discovery.
type Istiod struct {
	process *proc.Process
	// HTTPAddr serves /ready and istiod's debug endpoints.
	HTTPAddr string
	// XDSAddr is the TLS xDS and certificate service port (15012 in a
	// cluster), which proxies reach with a ServiceAccount token.
	XDSAddr string
}

// StartIstiod applies Istio's CRDs to c, creates istio-system and starts
// istiod against c's API server, with its files under a fresh temporary
// directory. It is stopped when the test ends; any failure fails the test.
func StartIstiod(t testing.TB, c *kube.Cluster) *Istiod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	parts, err := InstallParts()
	if err != nil {
		t.Fatalf("istio parts: %v", err)
	}
	if err := applyCRDs(ctx, c, parts.CRDs); err != nil {
		t.Fatalf("istio CRDs: %v", err)
	}
	if err := c.EnsureNamespace(ctx, Namespace); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ports := map[string]int{}
	for _, name := range []string{"http", "xds", "xds-tls", "monitoring", "webhook", "ctrlz"} {
		if ports[name], err = freeport.Port(); err != nil {
			t.Fatal(err)
		}
	}
	d := &Istiod{HTTPAddr: freeport.Addr(ports["http"]), XDSAddr: freeport.Addr(ports["xds-tls"])}
	// istiod reads the injector once, at start.
	if err := applyInjector(ctx, c, parts.Injector, d.XDSAddr); err != nil {
		t.Fatalf("istio injector: %v", err)
	}
	// istiod issues its serving certificate for the host of the proxies'
	// discovery address; on loopback that is an IP, which must be a SAN.
	mesh := fmt.Sprintf("rootNamespace: %s\ntrustDomain: cluster.local\ndefaultConfig:\n  discoveryAddress: %s\n", Namespace, d.XDSAddr)
	meshPath, networksPath := filepath.Join(dir, "mesh.yaml"), filepath.Join(dir, "meshNetworks.yaml")
	if err := os.WriteFile(meshPath, []byte(mesh), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(networksPath, []byte("networks: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.process, err = proc.Start("istiod", filepath.Join(dir, "istiod.log"), parts.PilotDiscovery,
		proc.Options{Dir: dir, Env: []string{
			// What istiod's Deployment sets from the downward API.
			"POD_NAMESPACE=" + Namespace, "POD_NAME=istiod-test", "REVISION=default",
			// Upstream Envoy lacks these two Istio extensions (doc.go).
			"PILOT_ENABLE_METADATA_EXCHANGE=false", "PILOT_ENABLE_ALPN_FILTER=false",
		}},
		"discovery",
		"--kubeconfig", c.Kubeconfig(),
		"--meshConfig", meshPath,
		"--networksConfig", networksPath,
		"--domain", "cluster.local",
		"--httpAddr", d.HTTPAddr,
		"--grpcAddr", freeport.Addr(ports["xds"]),
		"--secureGRPCAddr", d.XDSAddr,
		"--monitoringAddr", freeport.Addr(ports["monitoring"]),
		"--httpsAddr", freeport.Addr(ports["webhook"]),
		"--ctrlz_port", strconv.Itoa(ports["ctrlz"]),
	)
	if err != nil {
		t.Fatal(err)
	}
	stopAtEnd(t, d.process)
	// About 2 s warm; a loaded CI machine gets a minute.
	if err := d.process.WaitHTTP(ctx, http.DefaultClient, "http://"+d.HTTPAddr+"/ready", time.Minute); err != nil {
		t.Fatalf("istiod not ready: %v", err)
	}
	return d
}

// applyCRDs applies the release's CRDs (server-side, so that the large
// ones fit) and waits until every one is established.
func applyCRDs(ctx context.Context, c *kube.Cluster, path string) error {
	applied, err := c.ApplyFile(ctx, path)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(applied))
	for _, crd := range applied {
		names = append(names, crd.GetName())
	}
	return c.WaitForCRDs(ctx, names...)
}

// applyInjector applies the release's injector ConfigMap with one value
// changed: global.caAddress, where the proxies of generated Gateway
// Deployments get their certificates, is istiod's loopback address, for the
// reason the mesh configuration's discoveryAddress is (doc.go).
func applyInjector(ctx context.Context, c *kube.Cluster, path, caAddr string) error {
	manifest, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	objs, err := kube.Decode(manifest)
	if err != nil {
		return err
	}
	if len(objs) != 1 || objs[0].GetKind() != "ConfigMap" {
		return fmt.Errorf("%s: want one ConfigMap, have %d objects", path, len(objs))
	}
	cm := objs[0]
	raw, _, err := unstructured.NestedString(cm.Object, "data", "values")
	if err != nil || raw == "" {
		return fmt.Errorf("%s: no data.values (%v)", path, err)
	}
	var values map[string]any
	if err := json.Unmarshal([]byte(raw), &values); err != nil {
		return fmt.Errorf("%s: data.values: %w", path, err)
	}
	if err := unstructured.SetNestedField(values, caAddr, "global", "caAddress"); err != nil {
		return err
	}
	edited, err := json.Marshal(values)
	if err != nil {
		return err
	}
	if err := unstructured.SetNestedField(cm.Object, string(edited), "data", "values"); err != nil {
		return err
	}
	_, err = c.ApplyObjects(ctx, cm)
	return err
}

// stopAtEnd stops p when the test ends, after printing the end of its log
// if the test failed.
func stopAtEnd(t testing.TB, p *proc.Process) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- %s (last 40 lines of %s)\n%s", p.Name(), p.LogPath(), proc.Tail(p.LogPath(), 40))
		}
		if err := p.Stop(10 * time.Second); err != nil {
			t.Errorf("%s: %v", p.Name(), err)
		}
	})
}
