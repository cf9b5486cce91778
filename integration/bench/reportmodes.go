package bench

import (
	"fmt"
	"strings"
)

// writeModes is the supporting modes' tables: where meshwaf's CPU and
// latency go, one at a time and loaded, next to the peer's.
func (rep *Report) writeModes(b *strings.Builder) {
	if len(rep.Results) == 0 {
		return
	}
	b.WriteString("## All modes: CPU per request (ms)\n\n")
	b.WriteString("| scenario | PL | (a) in-process | (b) agent | (b) floor, no policy | (c) agent | (c) Envoy | (d) Envoy | nginx + ModSecurity | requests (a/b/c/d/nginx) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Results {
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %d/%d/%d/%d/%d |\n",
			r.Scenario, r.Level, ms(r.InProcess.CPUPerRequest(0)), ms(r.Agent.CPUPerRequest(0)),
			ms(r.AgentFloor.CPUPerRequest(0)), ms(r.Envoy.CPUPerRequest(1)), ms(r.Envoy.CPUPerRequest(0)),
			ms(r.EnvoyAlone.CPUPerRequest(0)), ms(r.Peer.TotalCPUPerRequest()),
			r.InProcess.Requests, r.Agent.Requests, r.Envoy.Requests, r.EnvoyAlone.Requests, r.Peer.Requests)
	}
	fmt.Fprintf(b, "\n### Under load, %d in flight\n\n", rep.InFlight)
	b.WriteString("| scenario | PL | (a) in-process | (b) agent | (c) agent | (c) Envoy | (d) Envoy | nginx + ModSecurity | requests (a/b/c/d/nginx) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Results {
		l := r.Loaded
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %s | %d/%d/%d/%d/%d |\n",
			r.Scenario, r.Level, ms(l.InProcess.CPUPerRequest(0)), ms(l.Agent.CPUPerRequest(0)),
			ms(l.Envoy.CPUPerRequest(1)), ms(l.Envoy.CPUPerRequest(0)), ms(l.EnvoyAlone.CPUPerRequest(0)),
			ms(l.Peer.TotalCPUPerRequest()),
			l.InProcess.Requests, l.Agent.Requests, l.Envoy.Requests, l.EnvoyAlone.Requests, l.Peer.Requests)
	}
	b.WriteString("\n## All modes: latency p50 / p99 (ms)\n\n")
	b.WriteString("| scenario | PL | (a) in-process | (b) agent | (c) Envoy + agent | (d) Envoy alone | nginx + ModSecurity | (c) − (d) p99 |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Results {
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s | %s |\n",
			r.Scenario, r.Level, pair(r.InProcess), pair(r.Agent), pair(r.Envoy), pair(r.EnvoyAlone), pair(r.Peer),
			ms(r.Envoy.P99-r.EnvoyAlone.P99))
	}
	fmt.Fprintf(b, "\n### Under load, %d in flight\n\n", rep.InFlight)
	b.WriteString("| scenario | PL | (a) in-process | (b) agent | (c) Envoy + agent | (d) Envoy alone | nginx + ModSecurity |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rep.Results {
		l := r.Loaded
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s |\n",
			r.Scenario, r.Level, pair(l.InProcess), pair(l.Agent), pair(l.Envoy), pair(l.EnvoyAlone), pair(l.Peer))
	}
	fmt.Fprintf(b, "\nUnder load, (a) inspects with %d goroutines sharing the WAF in its worker; (b) gets concurrent "+
		"Check calls over one HTTP/2 connection, as Envoy sends them; (c), (d) and nginx get a keep-alive connection "+
		"per request in flight. The (b) floor is not measured under load.\n\n", rep.InFlight)
}
