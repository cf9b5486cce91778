package xds

// PolicyConvergence says how far one policy's current version has reached
// the agents connected to this replica.
type PolicyConvergence struct {
	Policy  string `json:"policy"`
	Version string `json:"version"`
	Hosts   int    `json:"hosts"`
	// Desired is the number of connected agents; Applied those that ACKed
	// every host of the policy at the version served now.
	Desired int `json:"desired"`
	Applied int `json:"applied"`
	// Rejecting counts the agents that refused one of its hosts; Pending
	// the others that have not applied it yet.
	Rejecting    int `json:"rejecting"`
	PendingCount int `json:"pendingCount"`
	// Pending and Rejected name some of them (at most MaxListedAgents).
	Pending  []string         `json:"pending,omitempty"`
	Rejected []AgentRejection `json:"rejected,omitempty"`
}

// AgentRejection is one agent's refusal, with its reason.
type AgentRejection struct {
	Agent  string `json:"agent"`
	Reason string `json:"reason"`
}

// MaxListedAgents bounds the agents named per policy, so a large fleet
// that is behind does not make the debug page or status unbounded.
const MaxListedAgents = 20

// Convergence reports every policy of the current snapshot, keyed by
// "<namespace>/<name>". An agent applied a policy when it confirmed a
// generation at or after the last change of each of the policy's hosts and
// rejected none of them.
func (s *Server) Convergence() map[string]PolicyConvergence {
	snap := s.Current()
	if snap == nil {
		return nil
	}
	g := s.policies.Current()
	policyOf := map[string]string{}
	neededFor := make(map[string]uint64, len(snap.Policies))
	for _, p := range snap.Policies {
		name := p.Ref.NamespacedName()
		for _, h := range p.Hosts {
			policyOf[h] = name
			neededFor[name] = max(neededFor[name], g.ChangedAt(h))
		}
	}
	agents := s.Agents()
	out := make(map[string]PolicyConvergence, len(snap.Policies))
	for _, p := range snap.Policies {
		out[p.Ref.NamespacedName()] = PolicyConvergence{Policy: p.Ref.NamespacedName(), Version: p.Version, Hosts: len(p.Hosts), Desired: len(agents)}
	}
	for _, agent := range agents {
		rejected := map[string]string{} // policy → reason
		for host, reason := range agent.Rejected {
			if policy, ok := policyOf[host]; ok {
				rejected[policy] = host + ": " + reason
			}
		}
		for name, c := range out {
			reason, isRejected := rejected[name]
			switch {
			case isRejected:
				c.Rejecting++
				if len(c.Rejected) < MaxListedAgents {
					c.Rejected = append(c.Rejected, AgentRejection{Agent: agent.Node, Reason: reason})
				}
			case agent.Acked >= neededFor[name]:
				c.Applied++
			default:
				c.PendingCount++
				if len(c.Pending) < MaxListedAgents {
					c.Pending = append(c.Pending, agent.Node)
				}
			}
			out[name] = c
		}
	}
	return out
}
