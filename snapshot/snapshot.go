package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/store"
)

// Config holds what the translation needs besides the store.
type Config struct {
	// AgentCluster is the Envoy cluster that reaches the node-local agent.
	AgentCluster string
	// AgentTimeout bounds one ext_authz call.
	AgentTimeout time.Duration
}

// Snapshot is everything meshwaf serves at one moment. It is immutable.
type Snapshot struct {
	// Version is a digest of the whole output, statuses included: equal
	// versions mean nothing changed. Only resources whose own content
	// changed travel to Envoy and agents.
	Version string
	// Gateways are the gateway objects, and the Services a policy protects,
	// with what their filter config needs.
	Gateways []Gateway
	// HostPolicies are keyed by agentapi.ResourceName.
	HostPolicies map[string]*agentapi.HostPolicy
	// EncodedHostPolicies holds each host policy's EncodeHostPolicy bytes,
	// by the same names: what Version hashes and what agents are sent, so
	// a rebuild encodes every host policy once.
	EncodedHostPolicies map[string][]byte
	// Policies is the observed status of every WAFPolicy.
	Policies []PolicyStatus

	config Config
}

// Gateway is one gateway object as the filter configuration sees it.
type Gateway struct {
	// ID is "<namespace>/<name>" ("<namespace>/service:<name>" for a
	// Service), sent to agents as x-meshwaf-gateway.
	ID            string            `json:"id"`
	Kind          string            `json:"kind"`
	NodeNamespace string            `json:"nodeNamespace,omitempty"`
	NodeLabels    map[string]string `json:"nodeLabels"`
	// Protected is true when at least one host has a policy.
	Protected bool `json:"protected"`
	// MaxRequestBodyBytes is the largest body any of its policies inspects.
	MaxRequestBodyBytes int64 `json:"maxRequestBodyBytes"`
	// AllowPartialBody is true when a policy inspects truncated bodies.
	AllowPartialBody bool `json:"allowPartialBody"`
	// FailOpen is true only when every policy on it asks failureMode Open.
	FailOpen bool `json:"failOpen"`
	// PolicyDigest identifies the set of host policy versions on this
	// gateway. It is part of the filter config, so every policy change is
	// also an ECDS update: Envoy's stats then show when a gateway was told
	// about a change, and the agent learns which policy set Envoy expects.
	PolicyDigest string `json:"policyDigest"`
}

// PolicyStatus is what happened to one WAFPolicy.
type PolicyStatus struct {
	Ref store.ObjectRef `json:"ref"`
	// Version identifies the policy's content as agents report it.
	Version string `json:"version"`
	// Hosts are the effective "<gateway ns>/<gateway>/<host>" it protects
	// (agentapi.ResourceName; "<ns>/service:<name>/*" for a Service).
	Hosts []string `json:"hosts"`
	// Conflicts say which hosts another, older policy holds.
	Conflicts []string `json:"conflicts,omitempty"`
	// Unresolved say which targets were not found.
	Unresolved []string `json:"unresolved,omitempty"`
	// Rejected is why the newest generation was not accepted; the hosts
	// above are then protected by the last accepted one, if any.
	Rejected string `json:"rejected,omitempty"`
	// Generation is the newest generation seen; SpecGeneration the one
	// being enforced.
	Generation     int64 `json:"generation,omitempty"`
	SpecGeneration int64 `json:"specGeneration,omitempty"`
}

// Build translates one consistent view of the store.
func Build(txn *store.ReadTxn, cfg Config) (*Snapshot, error) {
	snap := &Snapshot{HostPolicies: map[string]*agentapi.HostPolicy{}, config: cfg}

	policies := txn.Policies()
	slices.SortStableFunc(policies, olderFirst)
	winners := map[string]*store.Policy{}
	statuses := map[store.ObjectRef]*PolicyStatus{}
	gateways := map[string]*Gateway{}
	for _, gw := range txn.Gateways() {
		gateways[gatewayID(gw)] = &Gateway{
			ID:            gatewayID(gw),
			Kind:          gw.Ref.Kind,
			NodeNamespace: gw.NodeNamespace,
			NodeLabels:    gw.NodeLabels,
			FailOpen:      true,
		}
	}

	for _, p := range policies {
		status := &PolicyStatus{Ref: p.Ref, Rejected: p.Rejected, Generation: p.Generation, SpecGeneration: p.SpecGeneration}
		statuses[p.Ref] = status
		if p.Spec == nil {
			continue // never accepted: nothing to enforce, only to report
		}
		hp, err := hostPolicyTemplate(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Ref, err)
		}
		claims, unresolved := resolve(txn, p)
		status.Version, status.Unresolved = hp.PolicyVersion, unresolved
		for _, c := range claims {
			name := c.key()
			if winner, taken := winners[name]; taken {
				status.Conflicts = append(status.Conflicts,
					fmt.Sprintf("%s is protected by the older policy %s", name, winner.Ref.NamespacedName()))
				continue
			}
			winners[name] = p
			status.Hosts = append(status.Hosts, name)
			policy := proto.CloneOf(hp)
			policy.Gateway, policy.Host = gatewayID(c.gateway), c.host
			snap.HostPolicies[name] = policy
			gateways[policy.Gateway].add(policy)
		}
	}

	for _, ref := range slices.SortedFunc(maps.Keys(statuses), compareRefs) {
		snap.Policies = append(snap.Policies, *statuses[ref])
	}
	for _, id := range slices.Sorted(maps.Keys(gateways)) {
		g := gateways[id]
		if g.Kind == store.KindService && !g.Protected {
			// A cluster has a Service for nearly every workload, and every
			// proxy's filter config is looked up by walking Gateways: only
			// the Services a policy protects are worth the walk.
			continue
		}
		g.PolicyDigest = policyDigest(snap.HostPolicies, g.ID)
		snap.Gateways = append(snap.Gateways, *g)
	}
	snap.EncodedHostPolicies = make(map[string][]byte, len(snap.HostPolicies))
	for name, hp := range snap.HostPolicies {
		b, err := EncodeHostPolicy(hp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		snap.EncodedHostPolicies[name] = b
	}
	snap.Version = snap.digest()
	return snap, nil
}

// EncodeHostPolicy is a host policy's wire form. It is deterministic, so
// equal content has equal bytes, and so an equal version wherever it is
// hashed: in Version, and as the agents' resource version.
func EncodeHostPolicy(hp *agentapi.HostPolicy) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(hp)
	if err != nil {
		return nil, fmt.Errorf("encoding host policy: %w", err)
	}
	return b, nil
}

// add folds one host policy into what the gateway's filter must allow.
func (g *Gateway) add(p *agentapi.HostPolicy) {
	g.Protected = true
	if p.GetFailureMode() != agentapi.FailureMode_FAILURE_MODE_OPEN {
		g.FailOpen = false
	}
	body := p.GetRequestBody()
	if !body.GetInspect() || p.GetMode() == agentapi.Mode_MODE_OFF {
		return
	}
	g.MaxRequestBodyBytes = max(g.MaxRequestBodyBytes, body.GetLimitBytes())
	if body.GetOverLimit() == agentapi.OverLimit_OVER_LIMIT_INSPECT_PARTIAL {
		g.AllowPartialBody = true
	}
}

func compareRefs(a, b store.ObjectRef) int {
	return strings.Compare(a.Kind+"/"+a.NamespacedName(), b.Kind+"/"+b.NamespacedName())
}

// policyDigest hashes the names and versions of a gateway's host policies.
func policyDigest(hostPolicies map[string]*agentapi.HostPolicy, gateway string) string {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(hostPolicies)) {
		if hp := hostPolicies[name]; hp.GetGateway() == gateway {
			fmt.Fprintf(h, "%s\x00%s\x00", name, hp.GetPolicyVersion())
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// digest hashes everything the snapshot serves, in a fixed order.
func (s *Snapshot) digest() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", s.config.AgentCluster, s.config.AgentTimeout)
	for _, name := range slices.Sorted(maps.Keys(s.EncodedHostPolicies)) {
		b := s.EncodedHostPolicies[name]
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
	}
	for _, g := range s.Gateways {
		fmt.Fprintf(h, "%+v\x00", g)
	}
	// Statuses are output too: a rejected newer generation changes nothing
	// Envoy or agents see, but must still reach the status writer.
	for _, p := range s.Policies {
		fmt.Fprintf(h, "%+v\x00", p)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
