package stack

import "github.com/meshwaf/meshwaf/integration/freeport"

// fillPorts gives every zero port a free loopback port (see freeport: it
// stays free across a component's restart). Another program could still
// take it before the component binds it, which is rare enough that the
// clear "address in use" failure is preferable to plumbing listeners into
// subprocesses.
func fillPorts(p Ports) (Ports, error) {
	used := map[int]bool{}
	for _, port := range []*int{&p.Gateway, &p.EnvoyAdmin, &p.XDS, &p.XDSHTTP, &p.Agent, &p.AgentHTTP, &p.Backend} {
		if *port != 0 {
			used[*port] = true
		}
	}
	for _, port := range []*int{&p.Gateway, &p.EnvoyAdmin, &p.XDS, &p.XDSHTTP, &p.Agent, &p.AgentHTTP, &p.Backend} {
		for *port == 0 {
			free, err := freeport.Port()
			if err != nil {
				return p, err
			}
			if !used[free] {
				used[free] = true
				*port = free
			}
		}
	}
	return p, nil
}
