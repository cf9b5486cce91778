package engine

import (
	"fmt"
	"net/url"
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

// scenario is one request of the bench (bench/scenario.go), copied.
type scenario struct {
	name, method, target, contentType string
	body                              []byte
}

var browserHeaders = [][2]string{
	{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"},
	{"accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
	{"accept-language", "en-GB,en;q=0.9"},
	{"accept-encoding", "gzip, deflate"},
}

func scenarios() []scenario {
	return []scenario{
		{name: "benign GET", method: "GET", target: "/products/shoes?color=blue&size=42&page=2"},
		{name: "form POST", method: "POST", target: "/comments", contentType: "application/x-www-form-urlencoded",
			body: []byte("author=alice&comment=Lovely+shoes+and+very+comfortable&rating=5")},
		{name: "1 KB JSON POST", method: "POST", target: "/api/orders", contentType: "application/json", body: jsonBody(1024)},
		{name: "10 KB form POST", method: "POST", target: "/profile", contentType: "application/x-www-form-urlencoded", body: formBody(10 * 1024)},
		{name: "SQLi GET", method: "GET", target: "/search?q=" + url.QueryEscape("1' OR '1'='1' UNION SELECT username, password FROM users--")},
	}
}

var prose = []string{
	"lovely", "summer", "garden", "flowers", "bloom", "bright", "yellow", "petals", "under", "warm",
	"sunshine", "children", "played", "happily", "beside", "river", "evening", "breeze", "gentle", "colours",
}

func words(n, seed int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = prose[(i*7+seed)%len(prose)]
	}
	return strings.Join(w, " ")
}

func jsonBody(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"customer":{"id":4711,"name":"Alice Example","email":"alice@example.com"},"items":[`)
	for i := 0; b.Len() < size-80; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"sku":"SKU%04d","quantity":%d,"note":"%s"}`, i, i%3+1, words(6, i))
	}
	b.WriteString(`],"currency":"EUR","gift":false}`)
	return []byte(b.String())
}

func formBody(size int) []byte {
	v := url.Values{}
	for i := 0; len(v.Encode()) < size-200; i++ {
		v.Set(fmt.Sprintf("field%02d", i), words(30, i))
	}
	return []byte(v.Encode())
}

// send inspects one request as the bench's in-process baseline does.
func send(waf coraza.WAF, sc scenario, seq int) []int {
	tx := waf.NewTransaction()
	defer tx.Close()
	tx.ProcessConnection("127.0.0.1", 40000+seq%20000, "127.0.0.1", 8080)
	tx.ProcessURI(sc.target, sc.method, "HTTP/1.1")
	tx.AddRequestHeader("host", "shop.example.com")
	for _, h := range browserHeaders {
		tx.AddRequestHeader(h[0], h[1])
	}
	if len(sc.body) > 0 {
		tx.AddRequestHeader("content-type", sc.contentType)
		tx.AddRequestHeader("content-length", strconv.Itoa(len(sc.body)))
	}
	tx.AddRequestHeader("x-forwarded-proto", "http")
	tx.AddRequestHeader("x-request-id", fmt.Sprintf("%08x-0000-4000-8000-%012x", seq, seq*7919))
	tx.SetServerName("shop.example.com")
	it := tx.ProcessRequestHeaders()
	if it == nil && len(sc.body) > 0 && tx.IsRequestBodyAccessible() {
		it, _, _ = tx.WriteRequestBody(sc.body)
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
// policy at paranoia level pl; extra directives make distinct WAFs.
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
	waf, err := coraza.NewWAF(coraza.NewWAFConfig().WithRootFS(coreruleset.FS).WithDirectives(directives + extra))
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
		for _, sc := range scenarios() {
			// Verdicts first: every variant must match the same rules.
			want := send(variants[0].wafs[pl], sc, 0)
			for _, v := range variants[1:] {
				if got := send(v.wafs[pl], sc, 0); !slices.Equal(got, want) {
					t.Errorf("PL%d %s: %s matched %v, stock %v", pl, sc.name, v.name, got, want)
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
					key := fmt.Sprintf("%s|%d|%s", sc.name, pl, v.name)
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
		for _, sc := range scenarios() {
			fmt.Fprintf(&b, "%-16s %-3d", sc.name, pl)
			base := median(results[fmt.Sprintf("%s|%d|stock", sc.name, pl)])
			for _, v := range variants {
				xs := results[fmt.Sprintf("%s|%d|%s", sc.name, pl, v.name)]
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
		for _, sc := range scenarios() {
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
	sc := scenarios()[3]
	for i := 0; b.Loop(); i++ {
		send(waf, sc, i)
	}
}
