// Package bench measures what meshwaf's inspection costs, side by side in
// one run, for a fixed set of requests (benign GET, form POST, 1 KB JSON
// POST, 10 KB form POST, SQL injection GET) at CRS paranoia levels 1 and 2:
//
//	(a) Coraza in-process: a WAF compiled from seclang.Render of the same
//	    HostPolicy the agent gets, fed the way the agent feeds it, in a
//	    worker process of its own (the test binary re-executed);
//	(b) the agent over gRPC: ext_authz Check calls straight to a real agent
//	    process (and the same calls for a host without policy, the floor
//	    the agent's gRPC handling costs);
//	(c) Envoy and the agent end to end, through a real gateway;
//	(d) Envoy alone: an identical gateway whose meshwaf filter is the no-op
//	    the control plane sends when no policy applies.
//
// CPU per request is process CPU (the run time of its threads, from
// /proc/<pid>/task/*/schedstat) over a loop of sequential requests, divided
// by their number; latency is the client's wall time per request (for (a),
// the worker's time per transaction). The same modes are also measured under
// load (load.go): LoadInFlight requests in flight in a closed loop, (a)
// inspecting from as many goroutines, taking turns with the one-at-a-time
// modes in the same rounds. The CPU goal is evaluated both ways, the latency
// goal one at a time only. Everything runs on loopback with bounded request
// counts.
//
// A full run also profiles (a) and (b) for one scenario (Go's CPU profiler
// in both processes, perf's software event counts where perf works), paces
// (a) like requests arriving over the network as a diagnostic, and compares
// Coraza's performance options with the agent's configuration in-process
// (options.go).
//
// TestBench runs the harness with a handful of requests as part of the
// normal test suite, so the harness cannot rot; `make bench` runs it in
// full and writes docs/reports/bench.md. The package talks to meshwaf's
// processes only as Envoy and an operator would (integration/stack, gRPC,
// HTTP); it imports seclang and agentapi to build the in-process baseline
// from the very directives the agent compiles.
package bench
