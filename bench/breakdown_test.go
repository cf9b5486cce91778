package bench

import (
	"testing"
	"time"
)

func TestCategoryOf(t *testing.T) {
	tests := map[string]string{
		"github.com/corazawaf/coraza/v3/internal/corazawaf.(*Rule).doEvaluate": "Coraza rules and operators",
		"regexp.(*Regexp).tryBacktrack":                                        "Go regexp (Coraza's @rx)",
		"regexp/syntax.(*Inst).MatchRunePos":                                   "Go regexp (Coraza's @rx)",
		"runtime.copystack":                                                    "stack growth",
		"runtime.gcDrain":                                                      "garbage collector",
		"runtime.scanObject":                                                   "garbage collector",
		"runtime.mallocgc":                                                     "memory allocation",
		"internal/runtime/syscall/linux.Syscall6":                              "system calls",
		"runtime.futex":                                                        "system calls",
		"runtime.findRunnable":                                                 "scheduler (goroutine switches, idle threads)",
		"google.golang.org/grpc/internal/transport.(*loopyWriter).run":         "gRPC, HTTP/2, protobuf",
		"google.golang.org/protobuf/internal/impl.(*MessageInfo).unmarshalPointer": "gRPC, HTTP/2, protobuf",
		"github.com/meshwaf/meshwaf/agent.fromCheckRequest":                        "meshwaf agent",
		"strings.ToLower": otherCategory,
	}
	for fn, want := range tests {
		t.Run(fn, func(t *testing.T) {
			if got := categoryOf(fn); got != want {
				t.Errorf("categoryOf(%q) = %q, want %q", fn, got, want)
			}
		})
	}
}

func TestParseBreakdownDividesFlatTimeByRequests(t *testing.T) {
	listing := `File: agent
Type: cpu
Showing nodes accounting for 4.63s, 100% of 4.63s total
      flat  flat%   sum%        cum   cum%
     0.30s  6.48%  6.48%      0.55s 11.88%  regexp.(*Regexp).tryBacktrack
     100ms  2.16%  8.64%      3.51s 75.81%  github.com/corazawaf/coraza/v3/internal/corazawaf.(*Rule).doEvaluate
      10ms  0.22%  8.86%       10ms  0.22%  runtime.futex
         0     0%  8.86%      3.61s 77.97%  github.com/meshwaf/meshwaf/agent.(*exchange).run
`
	got := parseBreakdown(listing, 100)
	want := map[string]time.Duration{
		"Go regexp (Coraza's @rx)":   3 * time.Millisecond,
		"Coraza rules and operators": time.Millisecond,
		"system calls":               100 * time.Microsecond,
		"meshwaf agent":              0,
	}
	for c, d := range want {
		if got[c] != d {
			t.Errorf("%s = %v, want %v (breakdown %v)", c, got[c], d, got)
		}
	}
	if total := got.total(); total != 4100*time.Microsecond {
		t.Errorf("total = %v, want 4.1ms", total)
	}
}
