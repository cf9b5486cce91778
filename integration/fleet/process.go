package fleet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/snapshot"
	"github.com/meshwaf/meshwaf/xds/feed"
)

// rssSampler reads a process's resident set every 100 ms, because
// /metrics can only be scraped while the process answers and a peak
// between two scrapes would be missed.
type rssSampler struct {
	pid int

	mu       sync.Mutex
	max      int64
	lifetime int64 // VmHWM, the kernel's own high-water mark
}

func startRSSSampler(pid int, exited <-chan struct{}) *rssSampler {
	s := &rssSampler{pid: pid}
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-exited:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		return // exited
	}
	rss, hwm := statusKB(b, "VmRSS:"), statusKB(b, "VmHWM:")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.max = max(s.max, rss)
	s.lifetime = max(s.lifetime, hwm)
}

// statusKB reads a "Key:   123 kB" line of /proc/PID/status, in bytes.
func statusKB(status []byte, key string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (s *rssSampler) peak() (sampled, lifetime int64) {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max, s.lifetime
}

func (s *rssSampler) reset() {
	s.mu.Lock()
	s.max = 0
	s.mu.Unlock()
	s.sample()
}

// Metrics are the control plane's unlabelled Prometheus samples, e.g.
// go_goroutines, process_resident_memory_bytes, process_cpu_seconds_total.
type Metrics map[string]float64

// Metrics scrapes /metrics.
func (c *ControlPlane) Metrics(ctx context.Context) (Metrics, error) {
	code, body, err := c.get(ctx, "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/metrics: HTTP %d", code)
	}
	m := Metrics{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.ContainsRune(line, '{') {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.Fields(value)[0], 64); err == nil {
			m[name] = v
		}
	}
	for _, need := range []string{"go_goroutines", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		if _, ok := m[need]; !ok {
			return nil, fmt.Errorf("/metrics has no %s", need)
		}
	}
	return m, nil
}

// ServedSnapshot is what /debug/snapshot says the control plane serves.
type ServedSnapshot struct {
	Version string
	// Versions maps every host policy name to the xDS version agents get
	// for it: the hash the control plane's feed gives the resource's encoding.
	Versions map[string]string
	// Problems lists policies with conflicts or unresolved targets.
	Problems []string
}

// Snapshot reads /debug/snapshot.
func (c *ControlPlane) Snapshot(ctx context.Context) (*ServedSnapshot, error) {
	var view struct {
		Version      string                     `json:"version"`
		HostPolicies map[string]json.RawMessage `json:"hostPolicies"`
		Policies     []struct {
			Policy     string   `json:"policy"`
			Conflicts  []string `json:"conflicts"`
			Unresolved []string `json:"unresolved"`
		} `json:"policies"`
	}
	if err := c.getJSON(ctx, "/debug/snapshot", &view); err != nil {
		return nil, err
	}
	out := &ServedSnapshot{Version: view.Version, Versions: make(map[string]string, len(view.HostPolicies))}
	for name, raw := range view.HostPolicies {
		hp := &agentapi.HostPolicy{}
		if err := protojson.Unmarshal(raw, hp); err != nil {
			return nil, fmt.Errorf("/debug/snapshot %s: %w", name, err)
		}
		body, err := snapshot.EncodeHostPolicy(hp)
		if err != nil {
			return nil, err
		}
		out.Versions[name] = feed.VersionOf(body)
	}
	for _, p := range view.Policies {
		for _, problem := range append(p.Conflicts, p.Unresolved...) {
			out.Problems = append(out.Problems, p.Policy+": "+problem)
		}
	}
	return out, nil
}

// getJSON decodes the JSON answer of a GET of path into v.
func (c *ControlPlane) getJSON(ctx context.Context, path string, v any) error {
	code, body, err := c.get(ctx, path)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", path, code)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// PolicyAgents is one policy's line of /debug/convergence.
type PolicyAgents struct {
	Desired      int `json:"desired"`
	Applied      int `json:"applied"`
	Rejecting    int `json:"rejecting"`
	PendingCount int `json:"pendingCount"`
}

// Convergence reads /debug/convergence, by policy ("namespace/name").
func (c *ControlPlane) Convergence(ctx context.Context) (map[string]PolicyAgents, error) {
	var view struct {
		Policies map[string]PolicyAgents `json:"policies"`
	}
	err := c.getJSON(ctx, "/debug/convergence", &view)
	return view.Policies, err
}

// PolicyName is the "namespace/name" of the layout's policy i.
func PolicyName(i int) string { return fmt.Sprintf("app-%d/waf-%d", i, i) }
