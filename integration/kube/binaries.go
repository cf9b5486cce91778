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
	paths, err := InstallScript("install-kube.sh", "MESHWAF_KUBE_APISERVER", "MESHWAF_ETCD", "MESHWAF_KUBECTL")
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{APIServer: paths["MESHWAF_KUBE_APISERVER"], Etcd: paths["MESHWAF_ETCD"], Kubectl: paths["MESHWAF_KUBECTL"]}
	return b, b.check()
}

// InstallScript returns the paths an install script of scripts/ prints as
// KEY=path lines, one per key. When the environment has every key (as
// `make` exports them from the script), those values are used; otherwise
// the script runs, which is instant once its cache is warm. A key the
// script did not print is an error.
func InstallScript(script string, keys ...string) (map[string]string, error) {
	paths := map[string]string{}
	for _, k := range keys {
		if v := os.Getenv(k); v != "" {
			paths[k] = v
		}
	}
	if len(paths) == len(keys) {
		return paths, nil
	}
	path := filepath.Join(RepoRoot(), "scripts", script)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(path)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", path, err, tail(stderr.String(), 40))
	}
	clear(paths)
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if key, value, ok := strings.Cut(sc.Text(), "="); ok {
			paths[key] = value
		}
	}
	for _, k := range keys {
		if paths[k] == "" {
			return nil, fmt.Errorf("%s printed no %s", script, k)
		}
	}
	return paths, nil
}

func (b Binaries) check() error {
	for name, path := range map[string]string{"kube-apiserver": b.APIServer, "etcd": b.Etcd, "kubectl": b.Kubectl} {
		if path == "" {
			return fmt.Errorf("no %s path", name)
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
