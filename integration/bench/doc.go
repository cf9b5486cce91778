// Package bench measures what meshwaf's inspection costs against the
// system users would pick instead, nginx + ModSecurity v3, side by side in
// one run, for a fixed set of requests (benign GET, form POST, 1 KB JSON
// POST, 10 KB form POST, SQL injection GET) at CRS paranoia levels 1 and 2:
//
//	meshwaf: HTTP through a real Envoy gateway whose meshwaf filter calls
//	    a real agent (mode (c)); its CPU is Envoy's and the agent's;
//	the peer: nginx with ModSecurity v3 from Debian's packages
//	    (scripts/install-modsecurity.sh), enforcing seclang.Render of the
//	    same policy with the same CRS files (peer.go, peerconf.go); its CPU
//	    is nginx's master and workers'.
//
// Both proxy to the same backend, which runs in the harness's process and
// is counted for neither. Supporting modes show where meshwaf's CPU goes:
//
//	(a) Coraza in-process: a WAF compiled from seclang.Render of the same
//	    HostPolicy the agent gets, fed the way the agent feeds it, in a
//	    worker process of its own (the test binary re-executed);
//	(b) the agent over gRPC: ext_authz Check calls straight to the agent
//	    (and the same calls for a host without policy, the floor the
//	    agent's gRPC handling costs);
//	(d) Envoy alone: an identical gateway whose meshwaf filter is the no-op
//	    the control plane sends when no policy applies.
//
// CPU per request is process CPU (the run time of its threads, from
// /proc/<pid>/task/*/schedstat) over a loop of requests, divided by their
// number; latency is the client's wall time per request. Every mode is
// measured one request at a time and with LoadInFlight in flight (a closed
// loop, load.go), all modes taking turns in the same rounds so that drift
// is shared; each round's meshwaf/peer ratio is kept to show the spread.
// Answers other than 2xx and the WAF's 403 are counted, not fatal. Two
// more steps: overload (overload.go: 32 and 128 requests of the most
// expensive scenario through Envoy + agent, throughput against the peak,
// every non-2xx accounted for by the agent's metric and audit log) and the
// agent's memory with 1, 10 and 100 distinct policies (memory.go). The
// report's goals table compares all of it with issue 10's goals.
//
// TestBench runs the harness with a handful of requests as part of the
// normal test suite, the peer, overload (seconds) and memory (1 and 10
// policies) included, so the harness cannot rot; `make bench` runs it in
// full and writes docs/reports/bench.md. The package talks to meshwaf's
// processes only as Envoy and an operator would (integration/stack, gRPC,
// HTTP); it imports seclang and agentapi to build the in-process baseline
// and the peer's rules from the very directives the agent compiles.
package bench
