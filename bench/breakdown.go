package bench

import (
	"regexp"
	"strconv"
	"strings"
	"time"
)

// A breakdown is where one process's CPU went, per request, by category of
// function (flat time: each sample counts for the function it was in).
// Comparing (a)'s with (b)'s shows whether the agent does more work or
// does the same work more slowly.
type breakdown map[string]time.Duration

// Categories, in report order. A function belongs to the first whose
// pattern matches its name.
var categories = []struct {
	name    string
	pattern *regexp.Regexp
}{
	{"Coraza rules and operators", regexp.MustCompile(`corazawaf|aho-corasick|libinjection|binaryregexp`)},
	{"Go regexp (Coraza's @rx)", regexp.MustCompile(`^regexp`)},
	{"stack growth", regexp.MustCompile(`^runtime\.(newstack|copystack|morestack|adjust|step$|pcvalue|findfunc|funcInfo|funcspdelta|pcdatavalue|readvarint|\(\*stkframe\)|\(\*unwinder\)|\(\*moduledata\)\.textAddr|getStackMap)`)},
	{"garbage collector", regexp.MustCompile(`^runtime\.(gc|scan|greyobject|markBits|findObject|wbBuf|bulkBarrier|typePointers|tryDefer|sweep|bgsweep|deductAssist|.*[mM]ark)|gcWriteBarrier|^internal/runtime/gc|\(\*mspan\)\.(moveInlineMarks|markBits)|\(\*gcWork\)`)},
	{"memory allocation", regexp.MustCompile(`^runtime\.(mallocgc|nextFreeFast|memclr|growslice|makeslice|newobject|\(\*mcache\)|\(\*mcentral\)|\(\*mheap\)|\(\*mspan\)|\(\*pallocBits\)|heapSetType|spanClass|writeHeapBits)`)},
	{"system calls", regexp.MustCompile(`[sS]yscall|^runtime\.(futex|usleep|epollwait|nanotime|osyield|write1|read$)`)},
	{"scheduler (goroutine switches, idle threads)", regexp.MustCompile(`^runtime\.(schedule|findRunnable|stealWork|park|ready|wakep|startm|stopm|mPark|notes|notewakeup|lock|unlock|mcall|gopark|goready|runq|netpoll|execute|gogo|newproc|selectgo|chan|casgstatus|checkTimers|resetspinning|handoffp|acquirep|releasep|procyield|entersyscall|exitsyscall|reentersyscall|goexit|gdestroy|sysmon|retake|.*[tT]imer|asyncPreempt|preempt)|lock_spinbit`)},
	{"gRPC, HTTP/2, protobuf", regexp.MustCompile(`grpc|golang\.org/x/net/http2|protobuf|protowire`)},
	{"meshwaf agent", regexp.MustCompile(`github\.com/meshwaf/meshwaf/agent`)},
}

const otherCategory = "strings, maps, memory copies and other"

// categoryOf names the category of a function.
func categoryOf(fn string) string {
	for _, c := range categories {
		if c.pattern.MatchString(fn) {
			return c.name
		}
	}
	return otherCategory
}

// topLine is one row of `go tool pprof -top`: flat, flat%, sum%, cum, cum%,
// function.
var topLine = regexp.MustCompile(`^\s*([\d.]+)(ns|us|µs|ms|s|min|h)\s+[\d.]+%\s+[\d.]+%\s+[\d.]+(?:ns|us|µs|ms|s|min|h)\s+[\d.]+%\s+(.+)$`)

// parseBreakdown reads a `go tool pprof -top` listing of every node and
// divides each category's flat time by the number of requests profiled.
func parseBreakdown(listing string, requests int) breakdown {
	out := breakdown{}
	if requests <= 0 {
		return out
	}
	for _, line := range strings.Split(listing, "\n") {
		m := topLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			continue
		}
		unit := m[2]
		if unit == "µs" {
			unit = "us"
		}
		d, err := time.ParseDuration(strconv.FormatFloat(v, 'f', -1, 64) + unit)
		if err != nil {
			continue
		}
		out[categoryOf(strings.TrimSpace(m[3]))] += d / time.Duration(requests)
	}
	return out
}

func (b breakdown) total() time.Duration {
	var sum time.Duration
	for _, d := range b {
		sum += d
	}
	return sum
}

// categoryNames lists every category in report order.
func categoryNames() []string {
	names := make([]string, 0, len(categories)+1)
	for _, c := range categories {
		names = append(names, c.name)
	}
	return append(names, otherCategory)
}
