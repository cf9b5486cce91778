package fleet

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/meshwaf/meshwaf/integration/freeport"
	"github.com/meshwaf/meshwaf/integration/proc"
	"github.com/meshwaf/meshwaf/integration/stack"
)

// ControlPlaneConfig says how to run meshwaf-xds.
type ControlPlaneConfig struct {
	Binary    string
	Manifests string
	// GRPCAddr and HTTPAddr are loopback addresses; a restarted control
	// plane reuses them so that agents find it again.
	GRPCAddr, HTTPAddr string
	// Log, when set, receives a copy of the process's stderr.
	Log io.Writer
	// LogPath is the file the process's output goes to (default: a new
	// temporary file).
	LogPath string
	// ReadyTimeout bounds the wait for /readyz (default 60 s).
	ReadyTimeout time.Duration
}

// ControlPlane is one running meshwaf-xds process.
type ControlPlane struct {
	cfg     ControlPlaneConfig
	process *proc.Process
	logs    *logSink
	rss     *rssSampler
	client  *http.Client
	// Started is when the process was started; Ready when /readyz first
	// answered 200.
	Started, Ready time.Time
}

// StartControlPlane starts meshwaf-xds and returns once it is ready.
func StartControlPlane(ctx context.Context, cfg ControlPlaneConfig) (*ControlPlane, error) {
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = time.Minute
	}
	if cfg.LogPath == "" {
		f, err := os.CreateTemp("", "meshwaf-xds-*.log")
		if err != nil {
			return nil, err
		}
		f.Close()
		cfg.LogPath = f.Name()
	}
	c := &ControlPlane{cfg: cfg, logs: newLogSink(cfg.Log), client: &http.Client{}}
	// The log is parsed as it comes: the fleet's timings read the
	// control plane's "snapshot published" lines while it runs.
	logs, output := io.Pipe()
	c.Started = time.Now()
	process, err := proc.Start("meshwaf-xds", cfg.LogPath, cfg.Binary, proc.Options{Output: output},
		"--manifests", cfg.Manifests, "--listen", cfg.GRPCAddr, "--http-listen", cfg.HTTPAddr, "--log-format", "json")
	if err != nil {
		return nil, err
	}
	c.process = process
	go c.logs.consume(logs)
	c.rss = startRSSSampler(process.PID(), process.Done())
	if err := c.waitReady(ctx); err != nil {
		c.Kill()
		return nil, fmt.Errorf("%w\nlast log lines:\n%s", err, c.logs.tail())
	}
	return c, nil
}

func (c *ControlPlane) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	defer cancel()
	for {
		if code, _, err := c.get(ctx, "/readyz"); err == nil && code == http.StatusOK {
			c.Ready = time.Now()
			return nil
		}
		select {
		case <-c.process.Done():
			return fmt.Errorf("meshwaf-xds exited before ready: %v", c.process.ExitErr())
		case <-ctx.Done():
			return fmt.Errorf("meshwaf-xds not ready within %s", c.cfg.ReadyTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stop asks the process to stop (SIGTERM) and waits, killing it after 10 s.
func (c *ControlPlane) Stop() error {
	defer c.client.CloseIdleConnections()
	if err := c.process.Stop(10 * time.Second); err != nil {
		return err
	}
	if err := c.process.ExitErr(); err != nil {
		return fmt.Errorf("meshwaf-xds exited with %v\nlast log lines:\n%s", err, c.logs.tail())
	}
	return nil
}

// Kill ends the process at once.
func (c *ControlPlane) Kill() {
	defer c.client.CloseIdleConnections()
	c.process.Kill()
}

// get fetches path from the HTTP listener.
func (c *ControlPlane) get(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.cfg.HTTPAddr+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// Logs is what the control plane logged so far.
func (c *ControlPlane) Logs() *logSink { return c.logs }

// PeakRSS is the highest resident set the sampler saw since the last
// ResetPeakRSS, and the kernel's high-water mark (VmHWM) of the whole
// process life.
func (c *ControlPlane) PeakRSS() (sampled, lifetime int64) { return c.rss.peak() }

// ResetPeakRSS starts a new sampling window.
func (c *ControlPlane) ResetPeakRSS() { c.rss.reset() }

// BuildControlPlane builds cmd/xds of the module around this package into
// dir, or returns $MESHWAF_XDS when set.
func BuildControlPlane(ctx context.Context, dir string) (string, error) {
	if bin := os.Getenv("MESHWAF_XDS"); bin != "" {
		return bin, nil
	}
	root, err := stack.RepoRoot(".")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "meshwaf-xds")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/xds")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/xds: %w\n%s", err, b)
	}
	return out, nil
}

// FreeAddr returns a loopback address nobody listens on right now, which
// stays free across a control plane restart (see freeport).
func FreeAddr() (string, error) { return freeport.FreeAddr() }

// Publish is one "snapshot published" log line of the control plane.
type Publish struct {
	// Time is the log line's own time, taken after the new snapshot was
	// handed to the xDS caches; Took is how long building and handing it
	// over took, so Time-Took is when the rebuild started.
	Time         time.Time
	Took         time.Duration
	HostPolicies int
	Version      string
}

// logSink parses the control plane's JSON log lines as they come.
type logSink struct {
	copyTo io.Writer

	mu        sync.Mutex
	published []Publish
	warnings  map[string]int // "LEVEL msg" → count, for WARN and ERROR
	last      []string       // ring of recent lines
}

func newLogSink(copyTo io.Writer) *logSink {
	return &logSink{copyTo: copyTo, warnings: map[string]int{}}
}

func (l *logSink) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if l.copyTo != nil {
			fmt.Fprintln(l.copyTo, line)
		}
		l.add(line)
	}
	io.Copy(io.Discard, r)
}

func (l *logSink) add(line string) {
	var rec struct {
		Time         time.Time `json:"time"`
		Level        string    `json:"level"`
		Msg          string    `json:"msg"`
		Took         string    `json:"took"`
		HostPolicies int       `json:"hostPolicies"`
		Version      string    `json:"version"`
	}
	err := json.Unmarshal([]byte(line), &rec)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(line) > 400 {
		line = line[:400] + "…"
	}
	l.last = append(l.last, line)
	if len(l.last) > 40 {
		l.last = l.last[1:]
	}
	if err != nil {
		return
	}
	if rec.Level == "WARN" || rec.Level == "ERROR" {
		l.warnings[rec.Level+" "+rec.Msg]++
	}
	if rec.Msg == "snapshot published" {
		took, _ := time.ParseDuration(rec.Took)
		l.published = append(l.published, Publish{Time: rec.Time, Took: took, HostPolicies: rec.HostPolicies, Version: rec.Version})
	}
}

// PublishedAfter is the first snapshot published at or after t.
func (l *logSink) PublishedAfter(t time.Time) (Publish, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.published {
		if !p.Time.Before(t) {
			return p, true
		}
	}
	return Publish{}, false
}

// Published lists every snapshot published.
func (l *logSink) Published() []Publish {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Publish(nil), l.published...)
}

// Warnings counts WARN and ERROR lines by level and message.
func (l *logSink) Warnings() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.warnings))
	for k, v := range l.warnings {
		out[k] = v
	}
	return out
}

func (l *logSink) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.last, "\n")
}
