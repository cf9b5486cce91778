package fleet

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshwaf/meshwaf/agentapi"
)

// Layout describes generated manifests: Hosts hosts across Policies
// WAFPolicies on Gateways Istio Gateways.
//
// Every policy has its own VirtualService, which lists its hosts and binds
// them to one gateway (policy i to gateway i mod Gateways), and the policy
// targets that VirtualService — the usual Istio shape, where each app team
// owns its routes and its policy. The first Probes policies route exactly
// one host each; editing one of them changes exactly one host policy. The
// other policies share the remaining hosts evenly. Each gateway serves
// "*.g<N>.fleet.example" so a host binds to exactly one gateway; the
// layout therefore resolves to exactly Hosts host policies.
type Layout struct {
	Hosts, Policies, Gateways, Probes int
}

// GatewayNamespace is where the generated gateways live.
const GatewayNamespace = "istio-ingress"

// Manifests is a generated folder.
type Manifests struct {
	Dir    string
	Layout Layout
	// Names are the resource names the control plane must serve, in
	// generation order.
	Names []string
	// Probes are the one-host policies, in order.
	Probes []Probe
	edits  int
}

// Probe is a policy that protects exactly one host.
type Probe struct {
	Policy   int
	File     string
	Resource string // agentapi resource name of its one host
}

func (l Layout) validate() error {
	switch {
	case l.Gateways < 1 || l.Policies < 1:
		return fmt.Errorf("layout %+v: need at least one gateway and one policy", l)
	case l.Probes < 0 || l.Probes > l.Policies || (l.Probes == l.Policies && l.Hosts != l.Probes):
		return fmt.Errorf("layout %+v: probes must leave policies for the other hosts", l)
	case l.Hosts-l.Probes < l.Policies-l.Probes:
		return fmt.Errorf("layout %+v: every policy needs at least one host", l)
	}
	return nil
}

// hostCount is how many hosts policy i routes.
func (l Layout) hostCount(i int) int {
	if i < l.Probes {
		return 1
	}
	others := l.Policies - l.Probes
	n := (l.Hosts - l.Probes) / others
	if i-l.Probes < (l.Hosts-l.Probes)%others {
		n++
	}
	return n
}

// Generate writes the layout into dir: gateways.yaml and one
// policy-NNNN.yaml (VirtualService + WAFPolicy) per policy.
func Generate(dir string, l Layout) (*Manifests, error) {
	if err := l.validate(); err != nil {
		return nil, err
	}
	m := &Manifests{Dir: dir, Layout: l}
	var gw strings.Builder
	for g := range l.Gateways {
		fmt.Fprintf(&gw, `---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge-%d, namespace: %s}
spec:
  selector: {istio: edge-%d}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*/*.g%d.fleet.example"]
`, g, GatewayNamespace, g, g)
	}
	if err := os.WriteFile(filepath.Join(dir, "gateways.yaml"), []byte(gw.String()), 0o644); err != nil {
		return nil, err
	}
	for i := range l.Policies {
		g := i % l.Gateways
		hosts := make([]string, l.hostCount(i))
		for h := range hosts {
			hosts[h] = fmt.Sprintf("h%d.p%d.g%d.fleet.example", h, i, g)
			m.Names = append(m.Names, agentapi.ResourceName(fmt.Sprintf("%s/edge-%d", GatewayNamespace, g), hosts[h]))
		}
		file := filepath.Join(dir, fmt.Sprintf("policy-%04d.yaml", i))
		if i < l.Probes {
			m.Probes = append(m.Probes, Probe{Policy: i, File: file, Resource: m.Names[len(m.Names)-1]})
		}
		if err := writeAtomic(file, policyYAML(i, g, hosts, "")); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// policyYAML is policy i's VirtualService and WAFPolicy. The WAFPolicy has
// a realistic amount of content; tag, when set, adds one exclusion on the
// path tag, which is how an edit is made and later recognised.
func policyYAML(i, gateway int, hosts []string, tag string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app-%d, namespace: app-%d}
spec:
  gateways: [%s/edge-%d]
  http:
  - route:
    - destination: {host: app.app-%d.svc.cluster.local, port: {number: 8080}}
  hosts:
`, i, i, GatewayNamespace, gateway, i)
	for _, h := range hosts {
		fmt.Fprintf(&b, "  - %s\n", h)
	}
	fmt.Fprintf(&b, `---
apiVersion: waf.meshwaf.io/v1alpha1
kind: WAFPolicy
metadata: {name: waf-%d, namespace: app-%d}
spec:
  targetRefs:
  - {group: networking.istio.io, kind: VirtualService, name: app-%d, namespace: app-%d}
  mode: Prevent
  failureMode: Closed
  crs: {paranoiaLevel: 1, inboundAnomalyThreshold: 5}
  exclusions:
  - {ruleIds: ["942100"], paths: ["/search"], targets: ["ARGS:q"]}
`, i, i, i, i)
	if tag != "" {
		fmt.Fprintf(&b, "  - {ruleIds: [\"920350\"], paths: [%q]}\n", tag)
	}
	return []byte(b.String())
}

// ProbeTag is the Tag function matching Edit: the path of a policy's
// last exclusion when it is an edit's, else "".
func ProbeTag(hp *agentapi.HostPolicy) string {
	ex := hp.GetExclusions()
	if len(ex) == 0 || len(ex[len(ex)-1].GetPaths()) != 1 {
		return ""
	}
	if p := ex[len(ex)-1].GetPaths()[0]; strings.HasPrefix(p, "/edit/") {
		return p
	}
	return ""
}

// Edit rewrites probe p's policy with a new exclusion and returns the tag
// the agents' new version carries and when the file took its new content.
// Exactly one host policy changes.
func (m *Manifests) Edit(p int) (tag string, at time.Time, err error) {
	probe := m.Probes[p]
	m.edits++
	tag = fmt.Sprintf("/edit/%d", m.edits)
	gateway, host, err := agentapi.SplitResourceName(probe.Resource)
	if err != nil {
		return "", time.Time{}, err
	}
	var g int
	if _, err := fmt.Sscanf(gateway, GatewayNamespace+"/edge-%d", &g); err != nil {
		return "", time.Time{}, fmt.Errorf("probe %s: %w", probe.Resource, err)
	}
	if err := writeAtomic(probe.File, policyYAML(probe.Policy, g, []string{host}, tag)); err != nil {
		return "", time.Time{}, err
	}
	return tag, time.Now(), nil
}

// writeAtomic replaces path by rename, so the control plane's poller never
// reads half a file. The temporary name is hidden, which the poller skips.
func writeAtomic(path string, content []byte) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
