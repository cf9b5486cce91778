package xds

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// AgentStatus is what the control plane knows about one agent stream.
type AgentStatus struct {
	Node      string    `json:"node"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`
	// Applied maps each host policy the agent ACKed to its version.
	Applied map[string]string `json:"applied"`
	// InSync is true when Applied equals what the control plane serves.
	InSync bool `json:"inSync"`
	// LastNACK is the agent's last rejection, if any.
	LastNACK string `json:"lastNack,omitempty"`
	ACKs     int    `json:"acks"`
	NACKs    int    `json:"nacks"`
}

// sentResponse is what one delta response carried, so its ACK can be
// attributed.
type sentResponse struct {
	versions map[string]string
	removed  []string
}

type agentStream struct {
	status AgentStatus
	sent   map[string]sentResponse // by nonce
}

// agentTracker records, per agent stream, which host policy versions were
// applied. Callbacks run on the streams' goroutines, hence the lock.
type agentTracker struct {
	mu      sync.Mutex
	streams map[int64]*agentStream
	onNACK  func(node, detail string)
}

func newAgentTracker(onNACK func(node, detail string)) *agentTracker {
	return &agentTracker{streams: map[int64]*agentStream{}, onNACK: onNACK}
}

func (t *agentTracker) request(id int64, req *discovery.DeltaDiscoveryRequest, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[id]
	if s == nil {
		// The node is only sure to be set on a stream's first request.
		s = &agentStream{
			status: AgentStatus{Node: req.GetNode().GetId(), Connected: true, Since: now, Applied: map[string]string{}},
			sent:   map[string]sentResponse{},
		}
		t.streams[id] = s
	}
	nonce := req.GetResponseNonce()
	sent, known := s.sent[nonce]
	if nonce == "" || !known {
		return
	}
	delete(s.sent, nonce)
	if detail := req.GetErrorDetail(); detail != nil {
		s.status.NACKs++
		s.status.LastNACK = detail.GetMessage()
		if t.onNACK != nil {
			t.onNACK(s.status.Node, detail.GetMessage())
		}
		return
	}
	s.status.ACKs++
	maps.Copy(s.status.Applied, sent.versions)
	for _, name := range sent.removed {
		delete(s.status.Applied, name)
	}
}

func (t *agentTracker) response(id int64, resp *discovery.DeltaDiscoveryResponse) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[id]
	if s == nil {
		return
	}
	sent := sentResponse{versions: map[string]string{}, removed: resp.GetRemovedResources()}
	for _, r := range resp.GetResources() {
		sent.versions[r.GetName()] = r.GetVersion()
	}
	s.sent[resp.GetNonce()] = sent
}

func (t *agentTracker) closed(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.streams, id)
}

// statuses lists the connected agents, with InSync computed against the
// versions currently served.
func (t *agentTracker) statuses(served map[string]string) []AgentStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]AgentStatus, 0, len(t.streams))
	for _, s := range t.streams {
		st := s.status
		st.Applied = maps.Clone(s.status.Applied)
		st.InSync = maps.Equal(st.Applied, served)
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b AgentStatus) int {
		if a.Node != b.Node {
			return strings.Compare(a.Node, b.Node)
		}
		return a.Since.Compare(b.Since)
	})
	return out
}
