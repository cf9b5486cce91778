package fleet

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

// notesHeading starts the hand-written part of the report, which
// WriteReportFile keeps when it rewrites the measured part.
const notesHeading = "## Notes (written by hand, kept by `make bench-fleet`)"

// WriteReportFile writes r as markdown to path, keeping the notes section
// of the file already there.
func WriteReportFile(path string, r *Result) error {
	var b bytes.Buffer
	WriteReport(&b, r)
	notes := "\n" + notesHeading + "\n\n(none yet)\n"
	if old, err := os.ReadFile(path); err == nil {
		if i := bytes.Index(old, []byte(notesHeading)); i >= 0 {
			notes = "\n" + string(old[i:])
		}
	}
	b.WriteString(notes)
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// Goal limits of issue 5.
const (
	goalChange     = time.Second
	goalChangeSize = 4 << 10
	goalResync     = 30 * time.Second
	goalRSS        = 512 << 20
)

// WriteReport writes the measured part of the report.
func WriteReport(w io.Writer, r *Result) {
	p, l := r.Params, r.Params.Layout
	fmt.Fprintf(w, "# Fleet benchmark: %d agents, %d hosts, %d policies\n\n", p.Agents, l.Hosts, l.Policies)
	fmt.Fprintf(w, "Measured by integration/fleet TestFleet (`make bench-fleet` runs it with -full) on %s, in %s.\n\n",
		r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Duration.Round(time.Second))
	if r.Err != nil {
		fmt.Fprintf(w, "**The run did not complete.** It stopped with:\n\n```\n%s\n```\n\nWhat was measured before that follows.\n\n", r.Err)
	}
	writeSetup(w, r)
	writeGoals(w, r)
	writeChanges(w, r)
	writeResyncs(w, r)
	writeResources(w, r)
}

func writeSetup(w io.Writer, r *Result) {
	p, l, m := r.Params, r.Params.Layout, r.Machine
	fmt.Fprintf(w, "## Setup\n\n")
	fmt.Fprintf(w, "| | |\n| --- | --- |\n")
	fmt.Fprintf(w, "| machine | %s, %d cores (GOMAXPROCS %d), %d MiB, Linux %s |\n", m.CPU, m.Cores, m.GOMAXPROCS, m.MemoryMiB, m.Kernel)
	fmt.Fprintf(w, "| Go | %s |\n", m.GoVersion)
	fmt.Fprintf(w, "| control plane | the real `meshwaf-xds` (`go build ./cmd/xds`) of %s, `--manifests DIR`, loopback, plain gRPC |\n", revision())
	fmt.Fprintf(w, "| agents | %d simulated agents in one process (one gRPC connection and one delta xDS stream each, wildcard subscription, ACK at once; no Coraza). Each checks every resource it receives (type, name, version, and the gateway and host inside the body, read in place from the wire; see wire.go) and decodes in full only the edited ones it tracks", p.Agents)
	if p.Stuck > 0 {
		fmt.Fprintf(w, ", plus %d that subscribe and never read", p.Stuck)
	}
	fmt.Fprintf(w, " |\n")
	fmt.Fprintf(w, "| manifests | %d hosts, %d WAFPolicies, %d Istio Gateways: one VirtualService per policy binds its hosts to one gateway and the policy targets it; %d policies have exactly one host (the edited ones), the others %d–%d hosts each |\n",
		l.Hosts, l.Policies, l.Gateways, l.Probes, l.hostCount(l.Policies-1), l.hostCount(l.Probes))
	fmt.Fprintf(w, "| one-host change | %d edits, one after another, each after the previous reached every agent plus a random 0.3–0.8 s pause; each adds an exclusion to one of the one-host policies (file replaced by rename) |\n", p.Changes)
	other := r.MachineCPU - r.HarnessCPU - time.Duration(r.ControlPlaneCPU*float64(time.Second))
	fmt.Fprintf(w, "| other load | processes other than the run used %.0f CPU-seconds during it (%.0f%% of the machine) |\n\n",
		other.Seconds(), 100*other.Seconds()/(r.Duration.Seconds()*float64(max(1, m.Cores))))
}

// revision names the checked-out commit, and says if the tree was dirty.
func revision() string {
	root, err := stack.RepoRoot(".")
	if err != nil {
		return "an unknown revision"
	}
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "an unknown revision"
	}
	rev := "commit " + strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain").Output(); err == nil && len(st) > 0 {
		rev += " with uncommitted changes"
	}
	return rev
}

func metStr(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

func writeGoals(w io.Writer, r *Result) {
	fmt.Fprintf(w, "## Goals\n\n| goal | limit | measured | |\n| --- | --- | --- | --- |\n")
	if len(r.Changes) > 0 {
		all, size := changeDist(r.Changes), int64(0)
		for _, c := range r.Changes {
			size = max(size, c.Traffic.TCP.Max)
		}
		fmt.Fprintf(w, "| one-host change ACKed by all %d agents, p99 over %d changes, from the file write | ≤ %s | %s | %s |\n",
			r.Params.Agents, all.N, secs(goalChange), ms(all.P99), metStr(all.P99 <= goalChange && r.ChangeFailure == ""))
		fmt.Fprintf(w, "| bytes sent to an agent for a one-host change (largest, all TCP bytes) | ≤ 4 KB | %d B | %s |\n",
			size, metStr(size <= goalChangeSize))
	} else {
		fmt.Fprintf(w, "| one-host change | ≤ %s | not measured | **not met** |\n", secs(goalChange))
	}
	for _, rs := range []*Resync{r.Initial, r.Full} {
		if rs != nil {
			fmt.Fprintf(w, "| full resync of %d hosts to %d agents: %s | ≤ %s | %s | %s |\n",
				r.Params.Layout.Hosts, r.Params.Agents, rs.Name, secs(goalResync), secs(rs.All), metStr(rs.All <= goalResync))
		}
	}
	fmt.Fprintf(w, "| control plane peak RSS (any process of the run) | ≤ 512 MiB | %d MiB | %s |\n\n", r.PeakRSS>>20, metStr(r.PeakRSS > 0 && r.PeakRSS <= goalRSS))
}

func changeDist(cs []Change) Dist {
	all := make([]time.Duration, len(cs))
	for i, c := range cs {
		all[i] = c.All
	}
	return distOf(all)
}

func writeChanges(w io.Writer, r *Result) {
	if len(r.Changes) == 0 {
		return
	}
	var detect, build, push, per []time.Duration
	for _, c := range r.Changes {
		if c.Published {
			detect, build, push = append(detect, c.Detect), append(build, c.Build), append(push, c.Push)
		}
		per = append(per, c.PerAgent.P99)
	}
	fmt.Fprintf(w, "## One-host changes\n\n")
	if r.ChangeFailure != "" {
		fmt.Fprintf(w, "**Not every change reached every agent**, so the edits stopped after %d of %d:\n\n```\n%s\n```\n\n", len(r.Changes)+1, r.Params.Changes, r.ChangeFailure)
	}
	fmt.Fprintf(w, "Each change is timed from the file write to the last agent's ACK. The control plane's own log line `snapshot published` (its `time` minus `took`) splits that into *detect* (the folder poll every 100 ms and the ~100 ms debounce), *build+publish* (the rebuild and the hand-over to the xDS caches, which includes queuing the responses to every stream) and *push* (from that log line to the last ACK).\n\n")
	fmt.Fprintf(w, "| over %d changes | p50 | p99 | max |\n| --- | --- | --- | --- |\n", len(r.Changes))
	row := func(name string, d Dist) {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", name, ms(d.P50), ms(d.P99), ms(d.Max))
	}
	row("all agents ACKed (from the write)", changeDist(r.Changes))
	row("detect", distOf(detect))
	row("build+publish", distOf(build))
	row("push (publish → last ACK)", distOf(push))
	row("p99 over agents, per change", distOf(per))
	fmt.Fprintf(w, "\nPer change and agent: at most %d resource(s) and %d response(s) received.\n\n", maxOf(r.Changes, func(c Change) int64 { return c.Traffic.MaxResources }), maxOf(r.Changes, func(c Change) int64 { return c.Traffic.MaxResponses }))
	fmt.Fprintf(w, "| bytes per agent per change | mean | max |\n| --- | --- | --- |\n")
	bytesRow := func(name string, get func(Traffic) ByteStats) {
		var mean float64
		var mx int64
		for _, c := range r.Changes {
			mean += get(c.Traffic).Mean / float64(len(r.Changes))
			mx = max(mx, get(c.Traffic).Max)
		}
		fmt.Fprintf(w, "| %s | %.0f | %d |\n", name, mean, mx)
	}
	bytesRow("received, TCP (everything the control plane sent)", func(t Traffic) ByteStats { return t.TCP })
	bytesRow("received, gRPC wire (messages + headers)", func(t Traffic) ByteStats { return t.Wire })
	bytesRow("received, protobuf (DeltaDiscoveryResponse)", func(t Traffic) ByteStats { return t.Proto })
	bytesRow("sent, TCP (the ACK)", func(t Traffic) ByteStats { return t.Out })
	fmt.Fprintf(w, "\n<details><summary>Every change</summary>\n\n| # | all ACKed | detect | build+publish | push | agent p50 | max TCP bytes |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for i, c := range r.Changes {
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %d |\n", i+1, ms(c.All), ms(c.Detect), ms(c.Build), ms(c.Push), ms(c.PerAgent.P50), c.Traffic.TCP.Max)
	}
	fmt.Fprintf(w, "\n</details>\n\n")
}

func maxOf(cs []Change, get func(Change) int64) int64 {
	var m int64
	for _, c := range cs {
		m = max(m, get(c))
	}
	return m
}

func writeResyncs(w io.Writer, r *Result) {
	fmt.Fprintf(w, "## Full resyncs\n\n")
	fmt.Fprintf(w, "Timed from the agents' start (fresh fleets) or from the start of the new control plane process (restarts) to the last agent ACKing a response that left it holding exactly the %d host policies /debug/snapshot serves, at their versions.\n\n", r.Params.Layout.Hosts)
	fmt.Fprintf(w, "| resync | all agents | agent p50 | after /readyz | bytes per agent (TCP in, mean) | bytes per agent (TCP out, mean) | resources per agent (max) | streams opened / broken | control plane CPU | control plane peak RSS | agents' CPU |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, rs := range []*Resync{r.Initial, r.Again, r.Resume, r.Full} {
		if rs == nil {
			continue
		}
		ready := "—"
		if rs.FromReady != 0 {
			ready = secs(rs.FromReady)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %d | %d / %d | %.1f s | %d MiB | %.1f s |\n", rs.Name, secs(rs.All), secs(rs.PerAgent.P50), ready,
			size(rs.Traffic.TCP.Mean), size(rs.Traffic.Out.Mean), rs.Traffic.MaxResources, rs.Traffic.Streams, rs.Traffic.StreamErrors,
			rs.CPU, rs.PeakRSS>>20, rs.HarnessCPU.Seconds())
	}
	for _, rs := range []*Resync{r.Initial, r.Again, r.Resume, r.Full} {
		if rs != nil && rs.StreamError != "" {
			fmt.Fprintf(w, "\nA broken stream during \"%s\" (an agent's last error): `%s`\n", rs.Name, rs.StreamError)
		}
	}
	if r.Initial != nil {
		fmt.Fprintf(w, "\nThe initial response to a fresh agent is one DeltaDiscoveryResponse of %s (protobuf); the real agent accepts responses of up to 256 MiB (gRPC's default, 4 MiB, would cap a cluster at some 15,000 hosts).\n", size(r.Initial.Traffic.Proto.Mean))
	}
	fmt.Fprintln(w)
}

func writeResources(w io.Writer, r *Result) {
	fmt.Fprintf(w, "## Control plane resources\n\n| | |\n| --- | --- |\n")
	fmt.Fprintf(w, "| peak RSS (VmHWM, any process) | %d MiB |\n", r.PeakRSS>>20)
	fmt.Fprintf(w, "| steady RSS, all agents connected and idle | %d MiB |\n", r.SteadyRSS>>20)
	fmt.Fprintf(w, "| CPU: start-up (load %d hosts, first snapshot) | %.1f s |\n", r.Params.Layout.Hosts, r.StartupCPU)
	fmt.Fprintf(w, "| CPU: all %d one-host changes | %.1f s |\n", len(r.Changes), r.ChangeCPU)
	fmt.Fprintf(w, "| CPU: whole run, every process | %.1f s |\n", r.ControlPlaneCPU)
	settled := "never, within a minute"
	if r.GoroutinesSettled > 0 || r.GoroutinesAfter <= r.GoroutinesBefore {
		settled = secs(r.GoroutinesSettled)
	}
	fmt.Fprintf(w, "| goroutines: before the fleet / connected / after it left | %d / %d / %d (back to the start after %s) |\n",
		r.GoroutinesBefore, r.GoroutinesConnected, r.GoroutinesAfter, settled)
	fmt.Fprintf(w, "| snapshots published | %d |\n\n", r.Published)
	fmt.Fprintf(w, "The simulated agents (this test process) used %.0f CPU-seconds in all (%.1f s during the changes) and at most %d MiB.\n\n",
		r.HarnessCPU.Seconds(), r.ChangeHarnessCPU.Seconds(), r.HarnessPeakRSS>>20)
	if len(r.Warnings) > 0 {
		fmt.Fprintf(w, "Warnings and errors the control plane logged:\n\n| level and message | count |\n| --- | --- |\n")
		for _, k := range slices.Sorted(maps.Keys(r.Warnings)) {
			fmt.Fprintf(w, "| %s | %d |\n", k, r.Warnings[k])
		}
		fmt.Fprintln(w)
	}
}

// ms writes short durations in milliseconds and long ones in seconds.
func ms(d time.Duration) string {
	if d >= 10*time.Second || d <= -10*time.Second {
		return secs(d)
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func size(b float64) string {
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%.2f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}
