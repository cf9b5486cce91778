package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/integration/freeport"
	"github.com/meshwaf/meshwaf/integration/proc"
)

// The peer is what users would run instead of meshwaf: nginx in front of
// the same backend, with ModSecurity v3 (libmodsecurity and its nginx
// connector from Debian's packages, scripts/install-modsecurity.sh)
// inspecting with the same CRS at the same paranoia levels. It runs as
// processes of its own (the master and its workers), apart from the
// backend, which stays in the harness's process like the stacks' backend,
// so that the CPU measured for it is the WAF's alone.

// peerWorkers is nginx's worker_processes. Envoy runs with one worker
// thread in the bench (integration/stack, --concurrency 1), but meshwaf's
// inspection runs in the agent, whose Go runtime uses every CPU of the
// 2-core machine; in nginx, ModSecurity inspects inside the worker that
// serves the request. Two workers give each system two CPUs to inspect on.
const peerWorkers = 2

// peer is a running nginx with ModSecurity.
type peer struct {
	nginx *proc.Process
	port  int
	dir   string
}

// startPeer writes the peer's configuration under dir, with one server per
// paranoia level in levels (named plHost, like the WAF stack's policies)
// proxying to the backend on backendPort, starts nginx and waits until it
// answers.
func startPeer(ctx context.Context, repoRoot, dir string, levels []int32, backendPort int) (_ *peer, err error) {
	nginx, module, err := installPeer(ctx, repoRoot)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	patched, err := writeCRS(dir)
	if err != nil {
		return nil, fmt.Errorf("copy the CRS: %w", err)
	}
	if patched != wantPatchedRules {
		return nil, fmt.Errorf("patched %d CRS rules without action list, want %d: the CRS changed, check what libmodsecurity now loads", patched, wantPatchedRules)
	}
	for _, pl := range levels {
		rules, err := modsecRules(pl, filepath.Join(dir, crsDir), filepath.Join(dir, fmt.Sprintf("modsec-audit-pl%d.log", pl)))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("modsec-pl%d.conf", pl)), []byte(rules), 0o644); err != nil {
			return nil, err
		}
	}
	port, err := freeport.Port()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConf(dir, module, port, backendPort, levels)), 0o644); err != nil {
		return nil, err
	}
	// -e: the error log before the configuration is read (the default,
	// /var/log/nginx/error.log, is not the run's and may not be writable).
	process, err := proc.Start("nginx", filepath.Join(dir, "nginx.out"), nginx, proc.Options{},
		"-e", filepath.Join(dir, "error.log"), "-p", dir, "-c", conf)
	if err != nil {
		return nil, err
	}
	p := &peer{nginx: process, port: port, dir: dir}
	defer func() {
		if err != nil {
			p.stop()
		}
	}()
	if err := p.waitReady(ctx, levels[0]); err != nil {
		return nil, fmt.Errorf("nginx with ModSecurity: %w\n%s", err, proc.Tail(filepath.Join(dir, "error.log"), 20))
	}
	return p, nil
}

// wantPatchedRules is how many CRS v4.25 rules have no action list.
const wantPatchedRules = 2

// installPeer runs scripts/install-modsecurity.sh, which installs what is
// missing and prints the nginx binary and the ModSecurity module. Without
// them the run fails: a bench without its yardstick must not pass.
func installPeer(ctx context.Context, repoRoot string) (nginx, module string, err error) {
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot, "scripts", "install-modsecurity.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("scripts/install-modsecurity.sh (nginx + ModSecurity, the peer): %w", err)
	}
	lines := strings.Fields(string(out))
	if len(lines) != 2 {
		return "", "", fmt.Errorf("scripts/install-modsecurity.sh printed %q, want the nginx binary and the module", out)
	}
	return lines[0], lines[1], nil
}

// nginxConf is the peer's nginx configuration. What it sets beyond the
// defaults, and why:
//   - the body limit and buffer equal meshwaf's default request body limit,
//     so that nginx neither refuses a body the agent would inspect nor
//     writes one to a temporary file;
//   - keep-alive to the backend, as Envoy's cluster keeps its connections;
//   - an access log to a file, as the bench's Envoy writes one to stdout;
//   - the temporary and pid paths inside the run directory, so that nginx
//     needs nothing of the system's /var.
func nginxConf(dir, module string, port, backendPort int, levels []int32) string {
	var b strings.Builder
	fmt.Fprintf(&b, "load_module %s;\n", module)
	b.WriteString("daemon off;\nmaster_process on;\n")
	fmt.Fprintf(&b, "worker_processes %d;\n", peerWorkers)
	if os.Geteuid() == 0 {
		// As root nginx would run its workers as nobody, who cannot enter a
		// test's temporary directory.
		b.WriteString("user root root;\n")
	}
	fmt.Fprintf(&b, "pid %s;\nerror_log %s warn;\n", filepath.Join(dir, "nginx.pid"), filepath.Join(dir, "error.log"))
	b.WriteString("events { worker_connections 1024; }\n")
	b.WriteString("http {\n")
	fmt.Fprintf(&b, "  access_log %s;\n", filepath.Join(dir, "access.log"))
	for _, t := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&b, "  %s_temp_path %s;\n", t, filepath.Join(dir, "tmp", t))
	}
	limit := agentapi.DefaultRequestBodyLimitBytes
	fmt.Fprintf(&b, "  client_max_body_size %d;\n  client_body_buffer_size %d;\n", limit, limit)
	fmt.Fprintf(&b, "  upstream backend {\n    server 127.0.0.1:%d;\n    keepalive 32;\n  }\n", backendPort)
	b.WriteString("  modsecurity on;\n")
	for _, pl := range levels {
		fmt.Fprintf(&b, "  server {\n    listen 127.0.0.1:%d;\n    server_name %s;\n", port, plHost(pl))
		fmt.Fprintf(&b, "    modsecurity_rules_file %s;\n", filepath.Join(dir, fmt.Sprintf("modsec-pl%d.conf", pl)))
		b.WriteString("    location / {\n      proxy_pass http://backend;\n      proxy_http_version 1.1;\n" +
			"      proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n    }\n  }\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// url is the base URL nginx listens on.
func (p *peer) url() string { return "http://" + freeport.Addr(p.port) }

// waitReady polls until nginx answers a benign request for the host of
// level pl, or exits, or a minute passes (compiling the CRS twice per
// worker takes a few seconds).
func (p *peer) waitReady(ctx context.Context, pl int32) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.url()+"/", nil)
		req.Host = plHost(pl)
		req.Header.Set("user-agent", browserHeaders[0][1])
		req.Header.Set("accept", browserHeaders[1][1])
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if exited := p.nginx.Exited(); exited != nil {
			return exited
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pids are the master's and its workers', for the CPU meter. The master
// takes no part in serving, but whatever it spends is the WAF's too.
func (p *peer) pids() ([]int, error) {
	master := p.nginx.PID()
	workers, err := childrenOf(master)
	if err != nil {
		return nil, err
	}
	if len(workers) != peerWorkers {
		return nil, fmt.Errorf("nginx master %d has %d children, want %d workers", master, len(workers), peerWorkers)
	}
	return append([]int{master}, workers...), nil
}

// alive says whether nginx still runs.
func (p *peer) alive() error { return p.nginx.Exited() }

// stop ends nginx (SIGTERM is its fast shutdown) and waits for it, killing
// it after 5 s.
func (p *peer) stop() {
	if p != nil {
		_ = p.nginx.Stop(5 * time.Second)
	}
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue // ended meanwhile
		}
		// The command name is in parentheses and may contain spaces; the
		// parent is the second field after it.
		s := string(raw)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out, nil
}
