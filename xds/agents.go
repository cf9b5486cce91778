package xds

import (
	"slices"
	"strconv"
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
	// AckedVersion is the host policy cache version the agent's last ACK
	// confirmed: it holds every host policy as of that version.
	AckedVersion uint64 `json:"ackedVersion"`
	// InSync is true when AckedVersion covers every change served so far.
	InSync bool `json:"inSync"`
	// LastNACK is the agent's last rejection, if any.
	LastNACK string `json:"lastNack,omitempty"`
	ACKs     int    `json:"acks"`
	NACKs    int    `json:"nacks"`
}

type agentStream struct {
	status AgentStatus
	// sent maps the nonce of each unacknowledged response to the cache
	// version it brought the agent to.
	sent map[string]uint64
}

// agentTracker records, per agent stream, up to which host policy cache
// version the agent confirmed. Every delta response brings its receiver up
// to date with the cache as of the response's system_version_info, so one
// number per agent says what it holds; together with the version at which
// each resource last changed, that answers "did this agent apply that
// policy" without keeping any per-agent, per-resource state — which at
// 1,000 agents and 10,000 hosts would be ten million entries.
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
		s = &agentStream{status: AgentStatus{Node: req.GetNode().GetId(), Connected: true, Since: now}, sent: map[string]uint64{}}
		t.streams[id] = s
	}
	nonce := req.GetResponseNonce()
	version, known := s.sent[nonce]
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
	s.status.AckedVersion = max(s.status.AckedVersion, version)
}

// credit records that the agent on stream id holds everything as of
// version without having ACKed a response (it resumed in sync).
func (t *agentTracker) credit(id int64, version uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.streams[id]; s != nil {
		s.status.AckedVersion = max(s.status.AckedVersion, version)
	}
}

func (t *agentTracker) response(id int64, resp *discovery.DeltaDiscoveryResponse) {
	version, err := strconv.ParseUint(strings.TrimPrefix(resp.GetSystemVersionInfo(), cacheVersionPrefix), 10, 64)
	if err != nil {
		return // not from our cache; nothing to attribute
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.streams[id]; s != nil {
		s.sent[resp.GetNonce()] = version
	}
}

func (t *agentTracker) closed(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.streams, id)
}

// statuses lists the connected agents; latest is the cache version of the
// last change served.
func (t *agentTracker) statuses(latest uint64) []AgentStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]AgentStatus, 0, len(t.streams))
	for _, s := range t.streams {
		st := s.status
		st.InSync = st.AckedVersion >= latest
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
