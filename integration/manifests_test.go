package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// demoManifests copies examples/demo into a fresh directory owned by t, so
// each test can edit its manifests freely.
func demoManifests(t *testing.T) string {
	t.Helper()
	src := filepath.Join(repoRoot, "examples", "demo")
	dst := filepath.Join(t.TempDir(), "manifests")
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
	return dst
}

// writeFile replaces a manifest in place, the way most editors save.
// writeFile replaces dir/name whole (a temporary file renamed over it), the
// way git, kubectl-driven tools and Kubernetes ConfigMap volumes update
// files, so the control plane never reads it half written. Reading a file
// written in place is watch's own test (TestFilesWaitForAFileToSettle).
func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// policy describes one WAFPolicy for policyYAML.
type policy struct {
	name, namespace string
	host            string
	mode            string
	extraSpec       string // more spec lines, indented by two spaces
}

// policyYAML renders WAFPolicy documents targeting the demo Gateway.
func policyYAML(policies ...policy) string {
	var docs []string
	for _, p := range policies {
		docs = append(docs, fmt.Sprintf(`apiVersion: waf.meshwaf.io/v1alpha1
kind: WAFPolicy
metadata:
  name: %s
  namespace: %s
spec:
  targetRefs:
  - group: networking.istio.io
    kind: Gateway
    name: public
    namespace: istio-ingress
  hosts:
  - %s
  mode: %s
%s`, p.name, p.namespace, p.host, p.mode, p.extraSpec))
	}
	return strings.Join(docs, "---\n")
}

var (
	shopPrevent = policy{name: "shop", namespace: "shop", host: "shop.example.com", mode: "Prevent"}
	shopDetect  = policy{name: "shop", namespace: "shop", host: "shop.example.com", mode: "Detect"}
	apiDetect   = policy{name: "api", namespace: "api", host: "api.example.com", mode: "Detect"}
)

// Requests of the acceptance criteria.
var (
	sqliGET = request{host: "shop.example.com", target: "/?id=1%27%20OR%201=1--"}
	benign  = request{host: "shop.example.com", target: "/products?id=1&sort=price"}
	xssForm = request{method: "POST", host: "shop.example.com", target: "/comments",
		contentType: "application/x-www-form-urlencoded",
		body:        "author=alice&comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E"}
)

// onHost returns r sent to another host.
func onHost(r request, host string) request {
	r.host = host
	return r
}
