package kube

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Third-party CRDs are read from these module versions in the Go module
// cache (downloaded on first use), never committed: the Istio one matches
// the istio.io/api the design pins for istiod, the Gateway API one the
// sigs.k8s.io/gateway-api that istiod's go.mod requires.
const (
	IstioAPIModule    = "istio.io/api"
	IstioAPIVersion   = "v1.31.1"
	GatewayAPIModule  = "sigs.k8s.io/gateway-api"
	GatewayAPIVersion = "v1.6.0"
)

// The CRDs a cluster gets unless Options says otherwise: the kinds meshwaf
// watches, plus what a Gateway API controller (istiod) needs beside them.
var (
	DefaultIstioCRDs      = []string{"gateways.networking.istio.io", "virtualservices.networking.istio.io"}
	DefaultGatewayAPICRDs = []string{"gatewayclasses", "gateways", "httproutes", "referencegrants"}
)

// MeshwafCRDs returns the generated CRDs in deploy/crds as one YAML stream.
func MeshwafCRDs() ([]byte, error) {
	files, err := filepath.Glob(filepath.Join(RepoRoot(), "deploy", "crds", "*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no CRDs in deploy/crds (run 'make generate'): %v", err)
	}
	var out bytes.Buffer
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out.WriteString("\n---\n")
		out.Write(data)
	}
	return out.Bytes(), nil
}

// IstioCRDs returns the named CRDs (plural.group, e.g.
// "virtualservices.networking.istio.io") from istio.io/api's generated
// bundle. Asking for one the bundle lacks is an error.
func IstioCRDs(names ...string) ([]byte, error) {
	dir, err := ModuleDir(IstioAPIModule, IstioAPIVersion)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(dir, "kubernetes", "customresourcedefinitions.gen.yaml"))
	if err != nil {
		return nil, err
	}
	docs, err := SplitYAML(data)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	found := map[string]bool{}
	for _, doc := range docs {
		var meta struct {
			Metadata struct{ Name string } `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, err
		}
		if slices.Contains(names, meta.Metadata.Name) {
			found[meta.Metadata.Name] = true
			out.WriteString("\n---\n")
			out.Write(doc)
		}
	}
	for _, n := range names {
		if !found[n] {
			return nil, fmt.Errorf("%s@%s has no CRD %s", IstioAPIModule, IstioAPIVersion, n)
		}
	}
	return out.Bytes(), nil
}

// GatewayAPICRDs returns the named standard-channel CRDs (by plural, e.g.
// "httproutes") from sigs.k8s.io/gateway-api's config/crd/standard.
func GatewayAPICRDs(plurals ...string) ([]byte, error) {
	dir, err := ModuleDir(GatewayAPIModule, GatewayAPIVersion)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	for _, p := range plurals {
		data, err := os.ReadFile(filepath.Join(dir, "config", "crd", "standard", "gateway.networking.k8s.io_"+p+".yaml"))
		if err != nil {
			return nil, fmt.Errorf("%s@%s: %w", GatewayAPIModule, GatewayAPIVersion, err)
		}
		out.WriteString("\n---\n")
		out.Write(data)
	}
	return out.Bytes(), nil
}

var moduleDirs sync.Map // "module@version" → directory

// ModuleDir returns the module cache directory of module@version,
// downloading it through the Go module proxy if needed. It runs outside any
// module so the repository's go.mod is neither consulted nor changed.
func ModuleDir(module, version string) (string, error) {
	key := module + "@" + version
	if dir, ok := moduleDirs.Load(key); ok {
		return dir.(string), nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(goBin, "mod", "download", "-json", key)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GO111MODULE=on")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %v %s %s", key, runErr, info.Error, stderr.String())
	}
	moduleDirs.Store(key, info.Dir)
	return info.Dir, nil
}

// SplitYAML splits a multi-document YAML stream into its non-empty documents.
func SplitYAML(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
}

// stripComments drops whole-line comments, so a document holding only a
// license header counts as empty.
func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for line := range bytes.Lines(doc) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out.Write(line)
		}
	}
	return out.Bytes()
}

// installCRDs applies the CRDs opts asks for and waits until the API server
// serves them all.
func (c *Cluster) installCRDs(ctx context.Context, opts Options) error {
	istio, gwapi := opts.IstioCRDs, opts.GatewayAPICRDs
	if istio == nil {
		istio = DefaultIstioCRDs
	}
	if gwapi == nil {
		gwapi = DefaultGatewayAPICRDs
	}
	var all bytes.Buffer
	if !opts.NoMeshwafCRDs {
		data, err := MeshwafCRDs()
		if err != nil {
			return err
		}
		all.Write(data)
	}
	if len(istio) > 0 {
		data, err := IstioCRDs(istio...)
		if err != nil {
			return err
		}
		all.Write(data)
	}
	if len(gwapi) > 0 {
		data, err := GatewayAPICRDs(gwapi...)
		if err != nil {
			return err
		}
		all.Write(data)
	}
	if all.Len() == 0 {
		return nil
	}
	objs, err := c.Apply(ctx, all.Bytes())
	if err != nil {
		return fmt.Errorf("install CRDs: %w", err)
	}
	names := make([]string, 0, len(objs))
	for _, o := range objs {
		names = append(names, o.GetName())
	}
	return c.WaitForCRDs(ctx, names...)
}
