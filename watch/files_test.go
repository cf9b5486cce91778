package watch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/store"

	"github.com/meshwaf/meshwaf/integration/fixtures"
)

var gatewayYAML = fixtures.IstioGateway("*/shop.example.com") + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: shop}
spec:
  hosts: [shop.example.com]
  gateways: [istio-ingress/public, mesh]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
`

func policyYAML(mode string) string {
	return `apiVersion: waf.meshwaf.io/v1alpha1
kind: WAFPolicy
metadata: {name: shop, namespace: shop}
spec:
  targetRefs: [{group: networking.istio.io, kind: Gateway, name: public, namespace: istio-ingress}]
  mode: ` + mode + "\n"
}

// rejectBadRules stands in for Coraza: it refuses rules containing "bad".
func rejectBadRules(spec v1alpha1.WAFPolicySpec) error {
	if strings.Contains(spec.CustomRules, "bad") {
		return errors.New("custom rule does not compile")
	}
	return nil
}

func newTestFiles(t *testing.T, dir string) (*Files, *store.Store, *bytes.Buffer) {
	t.Helper()
	logs := &bytes.Buffer{}
	db := store.New()
	f := NewFiles(FilesConfig{
		Dir: dir, Store: db, Validate: rejectBadRules,
		Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	return f, db, logs
}

func write(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mode(t *testing.T, db *store.Store) v1alpha1.Mode {
	t.Helper()
	policies := db.Read().Policies()
	if len(policies) != 1 {
		t.Fatalf("store has %d policies, want 1", len(policies))
	}
	return policies[0].Spec.Mode
}

func TestFilesLoadsKnownKinds(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "gateway.yaml", gatewayYAML)
	write(t, dir, "policy.yml", policyYAML("Detect"))
	f, db, _ := newTestFiles(t, dir)
	if err := f.reload(); err != nil {
		t.Fatal(err)
	}
	txn := db.Read()
	gws, routes := txn.Gateways(), txn.Routes()
	if len(gws) != 1 || gws[0].Hosts[0] != "shop.example.com" || gws[0].NodeLabels["istio"] != "ingressgateway" {
		t.Fatalf("gateways = %+v", gws)
	}
	if len(routes) != 1 || len(routes[0].Gateways) != 1 || routes[0].Gateways[0].Name != "public" {
		t.Fatalf("routes = %+v (the mesh gateway must be dropped)", routes)
	}
	if got := mode(t, db); got != v1alpha1.ModeDetect {
		t.Fatalf("mode = %s", got)
	}
	select {
	case <-f.Synced():
	default:
		t.Fatal("not synced after the first load")
	}
}

func TestFilesKeepsLastGoodVersion(t *testing.T) {
	tests := map[string]struct {
		content    string
		wantReason string
	}{
		"bad yaml":            {"apiVersion: waf.meshwaf.io/v1alpha1\nkind: WAFPolicy\nmetadata: {name: shop\n", "yaml"},
		"unknown mode":        {policyYAML("Block"), `spec.mode: \"Block\" is not one of Prevent, Detect, Off`},
		"misspelt field":      {policyYAML("Prevent") + "  moed: Detect\n", "unknown field"},
		"rule does not build": {policyYAML("Prevent") + "  customRules: bad\n", "custom rule does not compile"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, "gateway.yaml", gatewayYAML)
			write(t, dir, "policy.yaml", policyYAML("Prevent"))
			f, db, logs := newTestFiles(t, dir)
			if err := f.reload(); err != nil {
				t.Fatal(err)
			}
			write(t, dir, "policy.yaml", tc.content)
			if err := f.reload(); err != nil {
				t.Fatal(err)
			}
			if got := mode(t, db); got != v1alpha1.ModePrevent {
				t.Fatalf("mode = %s, want the last good Prevent", got)
			}
			out := logs.String()
			if !strings.Contains(out, `"msg":"manifest rejected"`) || !strings.Contains(out, filepath.Join(dir, "policy.yaml")) ||
				!strings.Contains(out, tc.wantReason) {
				t.Fatalf("log does not name the file and reason %q:\n%s", tc.wantReason, out)
			}
			// Fixing the file applies the fix.
			write(t, dir, "policy.yaml", policyYAML("Detect"))
			if err := f.reload(); err != nil {
				t.Fatal(err)
			}
			if got := mode(t, db); got != v1alpha1.ModeDetect {
				t.Fatalf("mode = %s after the fix, want Detect", got)
			}
		})
	}
}

func TestFilesNoticesEdits(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "gateway.yaml", gatewayYAML)
	write(t, dir, "policy.yaml", policyYAML("Prevent"))
	f, db, _ := newTestFiles(t, dir)
	f.cfg.PollInterval = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Start(ctx) }()
	defer func() { cancel(); <-done }()
	<-f.Synced()
	<-db.Changed()

	write(t, dir, "policy.yaml", policyYAML("Detect"))
	select {
	case <-db.Changed():
	case <-time.After(2 * time.Second):
		t.Fatal("edit not noticed within 2s")
	}
	if got := mode(t, db); got != v1alpha1.ModeDetect {
		t.Fatalf("mode = %s", got)
	}
}

func TestFilesMissingFolderFails(t *testing.T) {
	f, _, _ := newTestFiles(t, filepath.Join(t.TempDir(), "nope"))
	if err := f.Start(context.Background()); err == nil {
		t.Fatal("Start succeeded on a missing folder")
	}
}

// An edit re-parses only the edited file; the others give the records they
// gave before, and a file that fails to parse still keeps its objects.
func TestFilesParsesOnlyChangedFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "gateway.yaml", gatewayYAML)
	write(t, dir, "policy.yaml", policyYAML("Prevent"))
	other := strings.ReplaceAll(policyYAML("Detect"), "name: shop, namespace: shop", "name: other, namespace: shop")
	write(t, dir, "other.yaml", other)
	f, db, _ := newTestFiles(t, dir)
	validated := 0
	f.cfg.Validate = func(spec v1alpha1.WAFPolicySpec) error { validated++; return rejectBadRules(spec) }
	if err := f.reload(); err != nil {
		t.Fatal(err)
	}
	if validated != 2 {
		t.Fatalf("first load validated %d policies, want 2", validated)
	}
	write(t, dir, "policy.yaml", policyYAML("Detect"))
	if err := f.reload(); err != nil {
		t.Fatal(err)
	}
	if validated != 3 {
		t.Fatalf("after editing one file %d validations in all, want 3 (only the edited policy again)", validated)
	}
	modes := map[string]v1alpha1.Mode{}
	for _, p := range db.Read().Policies() {
		modes[p.Ref.Name] = p.Spec.Mode
	}
	if modes["shop"] != v1alpha1.ModeDetect || modes["other"] != v1alpha1.ModeDetect {
		t.Fatalf("modes after the edit = %v, want both Detect", modes)
	}

	write(t, dir, "other.yaml", "kind: [broken")
	write(t, dir, "gateway.yaml", gatewayYAML+"\n# touched\n")
	if err := f.reload(); err != nil {
		t.Fatal(err)
	}
	if n := len(db.Read().Policies()); n != 2 {
		t.Fatalf("%d policies after other.yaml broke, want both kept", n)
	}
}

// A file caught between truncation and write (os.WriteFile edits in place)
// is not applied: the policy it held is not lifted, and the finished file
// is applied by the next poll.
func TestFilesWaitForAFileToSettle(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "gateway.yaml", gatewayYAML)
	write(t, dir, "policy.yaml", policyYAML("Prevent"))
	f, db, _ := newTestFiles(t, dir)
	if err := f.reload(); err != nil {
		t.Fatal(err)
	}
	// What a poll sees while policy.yaml is rewritten: first truncated,
	// then, a moment later, complete.
	truncated, err := readManifests(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range truncated {
		if strings.HasSuffix(truncated[i].path, "policy.yaml") {
			truncated[i].content = nil
			truncated[i].digest = sha256.Sum256(nil)
		}
	}
	write(t, dir, "policy.yaml", policyYAML("Detect"))
	reads := 0
	f.read = func() ([]manifestFile, error) {
		reads++
		if reads == 1 {
			return truncated, nil
		}
		return readManifests(dir)
	}
	if err := f.reload(); err != nil {
		t.Fatal(err)
	}
	if got := mode(t, db); got != v1alpha1.ModePrevent {
		t.Fatalf("mode = %s while the file was being written, want Prevent kept", got)
	}
	if err := f.reload(); err != nil {
		t.Fatal(err)
	}
	if got := mode(t, db); got != v1alpha1.ModeDetect {
		t.Fatalf("mode = %s once the file settled, want Detect", got)
	}
}

const servicesYAML = `apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  selector: {app: api, version: v2}
  ports: [{name: http, port: 8080, targetPort: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: shop}
spec:
  type: ExternalName
  externalName: legacy.example.com
`

// A Service is recorded as the proxies it stands for: the pods of its
// namespace that carry its selector. One without a selector is no error.
func TestFilesLoadsServices(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "services.yaml", servicesYAML)
	f, db, logs := newTestFiles(t, dir)
	if err := f.reload(); err != nil {
		t.Fatal(err)
	}
	txn := db.Read()
	api := txn.Gateway(store.ObjectRef{Kind: store.KindService, Namespace: "shop", Name: "api"})
	if api == nil {
		t.Fatalf("Service shop/api not recorded: %+v", txn.Gateways())
	}
	if api.NodeNamespace != "shop" || len(api.NodeLabels) != 2 || api.NodeLabels["app"] != "api" ||
		api.NodeLabels["version"] != "v2" || len(api.Hosts) != 0 || api.Source != filepath.Join(dir, "services.yaml") {
		t.Errorf("Service shop/api = %+v", api)
	}
	legacy := txn.Gateway(store.ObjectRef{Kind: store.KindService, Namespace: "shop", Name: "legacy"})
	if legacy == nil || legacy.NodeNamespace != "shop" || len(legacy.NodeLabels) != 0 {
		t.Errorf("Service shop/legacy (no selector) = %+v", legacy)
	}
	if strings.Contains(logs.String(), "manifest rejected") {
		t.Errorf("a Service without selector was rejected:\n%s", logs)
	}
	// The kind is keyed by group: a Service of another group is not one.
	if _, known, _ := decodeHead([]byte(`{"apiVersion":"serving.knative.dev/v1","kind":"Service","metadata":{"name":"x"}}`)); known {
		t.Error("a Knative Service was taken for a core Service")
	}
}
