package xds

import (
	"slices"
	"strings"
)

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
	// Pending lists agents that have not applied it yet (not rejected).
	Pending []string `json:"pending,omitempty"`
	// Rejected lists agents whose last NACK names one of its hosts.
	Rejected []AgentRejection `json:"rejected,omitempty"`
}

// AgentRejection is one agent's refusal, with its reason.
type AgentRejection struct {
	Agent  string `json:"agent"`
	Reason string `json:"reason"`
}

// maxListedAgents bounds the agents named per policy, so a large fleet
// that is behind does not make the debug page or status unbounded.
const maxListedAgents = 20

// Convergence reports every policy of the current snapshot, keyed by
// "<namespace>/<name>".
func (s *Server) Convergence() map[string]PolicyConvergence {
	snap := s.Current()
	if snap == nil {
		return nil
	}
	s.mu.Lock()
	// A policy is applied by an agent that ACKed a cache version at or after
	// the last change of any of its hosts.
	neededFor := make(map[string]uint64, len(snap.Policies))
	for _, p := range snap.Policies {
		for _, h := range p.Hosts {
			neededFor[p.Ref.NamespacedName()] = max(neededFor[p.Ref.NamespacedName()], s.changedAt[h])
		}
	}
	latest := s.lastChange
	s.mu.Unlock()

	agents := s.agents.statuses(latest)
	out := make(map[string]PolicyConvergence, len(snap.Policies))
	for _, p := range snap.Policies {
		name := p.Ref.NamespacedName()
		c := PolicyConvergence{Policy: name, Version: p.Version, Hosts: len(p.Hosts)}
		for _, agent := range agents {
			c.Desired++
			if agent.AckedVersion >= neededFor[name] {
				c.Applied++
				continue
			}
			rejected := slices.ContainsFunc(p.Hosts, func(h string) bool { return strings.Contains(agent.LastNACK, h) })
			switch {
			case rejected && len(c.Rejected) < maxListedAgents:
				c.Rejected = append(c.Rejected, AgentRejection{Agent: agent.Node, Reason: agent.LastNACK})
			case !rejected && len(c.Pending) < maxListedAgents:
				c.Pending = append(c.Pending, agent.Node)
			}
		}
		out[name] = c
	}
	return out
}
