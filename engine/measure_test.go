package engine

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	coreruleset "github.com/corazawaf/coraza-coreruleset/v4"
	coraza "github.com/corazawaf/coraza/v3"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/integration/bench/scenario"
	"github.com/meshwaf/meshwaf/seclang"
)

// The side-by-side measurement of docs/decisions.md ("A faster engine"). It
// compiles the WAF the agent compiles for a default Prevent policy at
// paranoia levels 1 and 2, once with Coraza's operators and once per engine
// variant in the same process, and feeds them the bench's requests in turns.
//
//	MESHWAF_ENGINE_MEASURE=1 go test -count=1 -run '^TestMeasure' -v -timeout 30m ./engine
//
// It must run alone: the stock WAFs have to be compiled before the engine
// is installed.

const measureEnv = "MESHWAF_ENGINE_MEASURE"

// send inspects one request as the bench's in-process baseline does.
func send(waf coraza.WAF, sc scenario.Scenario, seq int) []int {
	tx := waf.NewTransaction()
	defer tx.Close()
	tx.ProcessConnection("127.0.0.1", 40000+seq%20000, "127.0.0.1", 8080)
	tx.ProcessURI(sc.Target, sc.Method, "HTTP/1.1")
	tx.AddRequestHeader("host", "shop.example.com")
	for _, h := range scenario.BrowserHeaders {
		tx.AddRequestHeader(h[0], h[1])
	}
	if len(sc.Body) > 0 {
		tx.AddRequestHeader("content-type", sc.ContentType)
		tx.AddRequestHeader("content-length", strconv.Itoa(len(sc.Body)))
	}
	tx.AddRequestHeader("x-forwarded-proto", "http")
	tx.AddRequestHeader("x-request-id", fmt.Sprintf("%08x-0000-4000-8000-%012x", seq, seq*7919))
	tx.SetServerName("shop.example.com")
	it := tx.ProcessRequestHeaders()
	if it == nil && len(sc.Body) > 0 && tx.IsRequestBodyAccessible() {
		it, _, _ = tx.WriteRequestBody(sc.Body)
	}
	if it == nil {
		_, _ = tx.ProcessRequestBody()
	}
	tx.ProcessLogging()
	var ids []int
	for _, mr := range tx.MatchedRules() {
		if mr.Message() != "" {
			ids = append(ids, mr.Rule().ID())
		}
	}
	return ids
}

// compilePolicy compiles what the agent compiles for a default Prevent
// policy at paranoia level pl; extra directives make distinct WAFs. Once
// the engine is installed, the CRS files are the engine's (CRS), as the
// agent compiles them; stock Coraza gets the module's own.
func compilePolicy(t testing.TB, pl int32, extra string) coraza.WAF {
	t.Helper()
	p := seclang.WithDefaults(&agentapi.HostPolicy{
		Gateway: "gw", Host: "shop.example.com", Mode: agentapi.Mode_MODE_PREVENT,
		Crs: &agentapi.CoreRuleSet{ParanoiaLevel: pl},
	})
	directives, err := seclang.Render(p)
	if err != nil {
		t.Fatal(err)
	}
	root := coreruleset.FS
	if installed.Load() {
		root = CRS
	}
	waf, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(root).WithDirectives(directives + extra))
	if err != nil {
		t.Fatal(err)
	}
	return waf
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type variant struct {
	name string
	wafs map[int32]coraza.WAF
}

// TestMeasureCPU prints CPU per request for each scenario, paranoia level
// and variant: the median of the rounds and their range.
func TestMeasureCPU(t *testing.T) {
	if os.Getenv(measureEnv) == "" {
		t.Skip("set " + measureEnv + "=1 to measure")
	}
	if installed.Load() {
		t.Fatal("the engine is already installed: run this test alone")
	}
	levels := []int32{1, 2}
	compileAll := func(name string) variant {
		v := variant{name: name, wafs: map[int32]coraza.WAF{}}
		for _, pl := range levels {
			v.wafs[pl] = compilePolicy(t, pl, "")
		}
		return v
	}
	variants := []variant{compileAll("stock")}
	Install()
	for _, n := range thresholds() {
		restore := setMinFastLen(n)
		variants = append(variants, compileAll(fmt.Sprintf("re2≥%d", n)))
		restore()
	}
	if os.Getenv("MESHWAF_ENGINE_PM") == "1" {
		installACPM()
		variants = append(variants, compileAll("re2+ac-pm"))
	}
	rounds := 7
	if s := os.Getenv("MESHWAF_ENGINE_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	budget := 150 * time.Millisecond
	results := map[string][]float64{} // scenario|pl|variant → µs per request
	for _, pl := range levels {
		for _, sc := range scenario.All() {
			// Verdicts first: every variant must match the same rules.
			want := send(variants[0].wafs[pl], sc, 0)
			for _, v := range variants[1:] {
				if got := send(v.wafs[pl], sc, 0); !slices.Equal(got, want) {
					t.Errorf("PL%d %s: %s matched %v, stock %v", pl, sc.Name, v.name, got, want)
				}
			}
			// Calibrate the batch to about budget with the stock WAF.
			start, n := time.Now(), 0
			for time.Since(start) < budget/3 {
				send(variants[0].wafs[pl], sc, n)
				n++
			}
			batch := max(3*n, 5)
			for r := range rounds {
				for i := range variants {
					v := variants[(i+r)%len(variants)] // rotate who goes first
					runtime.GC()
					c0 := cpuTime()
					for j := range batch {
						send(v.wafs[pl], sc, j)
					}
					us := float64(cpuTime()-c0) / float64(batch) / 1e3
					key := fmt.Sprintf("%s|%d|%s", sc.Name, pl, v.name)
					results[key] = append(results[key], us)
				}
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "CPU per request, µs: median [min–max] of %d rounds; ratio = median / stock median\n", rounds)
	fmt.Fprintf(&b, "%-16s %-3s", "scenario", "PL")
	for _, v := range variants {
		fmt.Fprintf(&b, " | %-26s", v.name)
	}
	b.WriteString("\n")
	for _, pl := range levels {
		for _, sc := range scenario.All() {
			fmt.Fprintf(&b, "%-16s %-3d", sc.Name, pl)
			base := median(results[fmt.Sprintf("%s|%d|stock", sc.Name, pl)])
			for _, v := range variants {
				xs := results[fmt.Sprintf("%s|%d|%s", sc.Name, pl, v.name)]
				fmt.Fprintf(&b, " | %6.0f [%5.0f–%5.0f] %4.2f×", median(xs), slices.Min(xs), slices.Max(xs), median(xs)/base)
			}
			b.WriteString("\n")
		}
	}
	t.Log("\n" + b.String())
}

func thresholds() []int {
	s := os.Getenv("MESHWAF_ENGINE_THRESHOLDS")
	if s == "" {
		return []int{0, 64}
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, _ := strconv.Atoi(f)
		out = append(out, n)
	}
	return out
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// TestMeasureMemory compiles 1 and 10 distinct WAFs (PL1, each with one
// more rule) in a fresh process per case, stock and with the engine,
// serves every scenario through each, and prints the Go heap in use and
// the resident set.
func TestMeasureMemory(t *testing.T) {
	if os.Getenv(measureEnv) == "" {
		t.Skip("set " + measureEnv + "=1 to measure")
	}
	if c := os.Getenv("MESHWAF_ENGINE_MEMORY_CHILD"); c != "" {
		memoryChild(t, c)
		return
	}
	fmt.Printf("%-8s %-5s %12s %12s\n", "variant", "WAFs", "heap MiB", "RSS MiB")
	for _, v := range []string{"stock", "engine"} {
		for _, n := range []string{"1", "10"} {
			for range 2 {
				cmd := exec.Command(os.Args[0], "-test.run=^TestMeasureMemory$", "-test.count=1")
				cmd.Env = append(os.Environ(), "MESHWAF_ENGINE_MEMORY_CHILD="+v+","+n)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%s %s: %v\n%s", v, n, err, out)
				}
				for _, line := range strings.Split(string(out), "\n") {
					if strings.HasPrefix(line, "MEM ") {
						fmt.Println(strings.TrimPrefix(line, "MEM "))
					}
				}
			}
		}
	}
}

func memoryChild(t *testing.T, spec string) {
	v, ns, _ := strings.Cut(spec, ",")
	n, _ := strconv.Atoi(ns)
	if v == "engine" {
		Install()
	}
	var wafs []coraza.WAF
	for i := range n {
		wafs = append(wafs, compilePolicy(t, 1, fmt.Sprintf("\nSecAction \"id:77%04d,phase:1,pass,nolog\"", i)))
	}
	for _, waf := range wafs {
		for _, sc := range scenario.All() {
			for j := range 20 {
				send(waf, sc, j)
			}
		}
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("MEM %-8s %-5d %12.1f %12.1f\n", v, n, float64(ms.HeapInuse)/(1<<20), rssMiB())
	runtime.KeepAlive(wafs)
}

func rssMiB() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkEngine10KBForm is for profiles of what remains with the engine:
//
//	MESHWAF_ENGINE_MEASURE=1 go test -run '^$' -bench Engine10KB -cpuprofile cpu.out ./engine
func BenchmarkEngine10KBForm(b *testing.B) {
	if os.Getenv(measureEnv) == "" {
		b.Skip("set " + measureEnv + "=1 to measure")
	}
	Install()
	waf := compilePolicy(b, 2, "")
	sc := scenario.All()[3]
	for i := 0; b.Loop(); i++ {
		send(waf, sc, i)
	}
}
