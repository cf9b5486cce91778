package kube

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// Binaries are the executables the harness runs.
type Binaries struct {
	APIServer string
	Etcd      string
	Kubectl   string
}

var (
	installOnce sync.Once
	installed   Binaries
	installErr  error
)

// InstallBinaries returns the kube-apiserver, etcd and kubectl to use. The
// environment variables MESHWAF_KUBE_APISERVER, MESHWAF_ETCD and
// MESHWAF_KUBECTL (all three, as `make` exports them from the install
// script) take precedence; otherwise scripts/install-kube.sh runs, which is
// instant once its cache is warm and ~15 minutes cold. The result is shared
// by every cluster of the test binary.
func InstallBinaries() (Binaries, error) {
	installOnce.Do(func() { installed, installErr = installBinaries() })
	return installed, installErr
}

func installBinaries() (Binaries, error) {
	fromEnv := Binaries{
		APIServer: os.Getenv("MESHWAF_KUBE_APISERVER"),
		Etcd:      os.Getenv("MESHWAF_ETCD"),
		Kubectl:   os.Getenv("MESHWAF_KUBECTL"),
	}
	if fromEnv.APIServer != "" && fromEnv.Etcd != "" && fromEnv.Kubectl != "" {
		return fromEnv, fromEnv.check()
	}
	script := filepath.Join(RepoRoot(), "scripts", "install-kube.sh")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(script)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return Binaries{}, fmt.Errorf("%s: %w\n%s", script, err, tail(stderr.String(), 40))
	}
	var b Binaries
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		key, value, _ := strings.Cut(sc.Text(), "=")
		switch key {
		case "MESHWAF_KUBE_APISERVER":
			b.APIServer = value
		case "MESHWAF_ETCD":
			b.Etcd = value
		case "MESHWAF_KUBECTL":
			b.Kubectl = value
		}
	}
	return b, b.check()
}

func (b Binaries) check() error {
	for name, path := range map[string]string{"kube-apiserver": b.APIServer, "etcd": b.Etcd, "kubectl": b.Kubectl} {
		if path == "" {
			return fmt.Errorf("install-kube.sh printed no %s path", name)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%s %q is not an executable file", name, path)
		}
	}
	return nil
}

// RepoRoot is the meshwaf checkout this package was compiled from; tests
// run from source, so the path recorded by the compiler is on disk.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}
