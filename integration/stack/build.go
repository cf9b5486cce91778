package stack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModulePath is the Go module the stack builds binaries from.
const ModulePath = "github.com/meshwaf/meshwaf"

// Binaries are the paths of the built meshwaf programs.
type Binaries struct {
	ControlPlane string // cmd/xds
	Agent        string // cmd/agent
}

// Build compiles cmd/xds and cmd/agent of the module at repoRoot into dir.
// One go build invocation builds both, so shared packages compile once.
func Build(ctx context.Context, repoRoot, dir string) (Binaries, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Binaries{}, err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), "./cmd/xds", "./cmd/agent")
	cmd.Dir = repoRoot
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return Binaries{}, fmt.Errorf("go build ./cmd/xds ./cmd/agent: %w\n%s", err, out.String())
	}
	return Binaries{ControlPlane: filepath.Join(dir, "xds"), Agent: filepath.Join(dir, "agent")}, nil
}

// RepoRoot finds the meshwaf module root: the nearest directory at or above
// start whose go.mod declares ModulePath.
func RepoRoot(start string) (string, error) {
	dir, err := filepath.Abs(start)
	if err != nil {
		return "", err
	}
	for {
		if isMeshwafModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod for module %s at or above %s", ModulePath, start)
		}
		dir = parent
	}
}

func isMeshwafModule(goMod string) bool {
	f, err := os.Open(goMod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "module" {
			return fields[1] == ModulePath
		}
	}
	return false
}

// FindEnvoy returns the envoy binary to run: explicit if set, else
// $MESHWAF_ENVOY, else what scripts/install-envoy.sh installs (it is fast
// when the pinned version is cached). There is deliberately no fallback to
// an envoy on $PATH: the tests must run the pinned version.
func FindEnvoy(ctx context.Context, repoRoot, explicit string) (string, error) {
	path := explicit
	if path == "" {
		path = os.Getenv("MESHWAF_ENVOY")
	}
	if path == "" {
		script := filepath.Join(repoRoot, "scripts", "install-envoy.sh")
		cmd := exec.CommandContext(ctx, "bash", script)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("%s: %w\n%s", script, err, stderr.String())
		}
		lines := strings.Fields(strings.TrimSpace(string(out)))
		if len(lines) == 0 {
			return "", fmt.Errorf("%s printed no envoy path\n%s", script, stderr.String())
		}
		path = lines[len(lines)-1]
	}
	info, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("envoy binary: %w", err)
	}
	if info.IsDir() || info.Mode()&0o111 == 0 {
		return "", errors.New("envoy binary " + path + " is not executable")
	}
	return path, nil
}
