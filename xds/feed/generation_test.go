package feed

import (
	"fmt"
	"slices"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

const testType = "type.googleapis.com/test.Thing"

// publish applies bodies (name → content) to g the way Feed.Publish does.
func publish(g *Generation, bodies map[string]string) *Generation {
	encoded := map[string][]byte{}
	for name, body := range bodies {
		encoded[name] = []byte(body)
	}
	if next := g.next(testType, encoded); next != nil {
		return next
	}
	return g
}

func names(resources []*discovery.Resource) []string {
	out := []string{}
	for _, r := range resources {
		out = append(out, r.GetName())
	}
	return out
}

func TestGenerations(t *testing.T) {
	g0 := emptyGeneration()
	g1 := publish(g0, map[string]string{"a": "1", "b": "1"})
	g2 := publish(g1, map[string]string{"a": "1", "b": "2", "c": "1"})
	g3 := publish(g2, map[string]string{"a": "1", "c": "1"})

	if g1.Version() != 1 || g2.Version() != 2 || g3.Version() != 3 {
		t.Fatalf("versions %d %d %d, want 1 2 3", g1.Version(), g2.Version(), g3.Version())
	}
	if same := publish(g3, map[string]string{"a": "1", "c": "1"}); same != g3 {
		t.Fatal("publishing unchanged content made a new generation")
	}
	if empty := publish(g0, nil); empty.Version() != 1 {
		t.Fatal("the first publication must be a generation even when empty: fresh subscribers wait for it")
	}
	if g3.ChangedAt("a") != 1 || g3.ChangedAt("c") != 2 || g3.ChangedAt("b") != 0 {
		t.Fatalf("changedAt a=%d c=%d b=%d, want 1 2 0", g3.ChangedAt("a"), g3.ChangedAt("c"), g3.ChangedAt("b"))
	}
	if g3.entries["a"] != g1.entries["a"] {
		t.Fatal("an unchanged resource must be shared between generations, not rebuilt")
	}

	tests := map[string]struct {
		from                  uint64
		wantUpdated, wantGone []string
	}{
		"from the previous generation only the removal travels":                    {from: 2, wantGone: []string{"b"}},
		"two generations back: the new resource, and the one updated then removed": {from: 1, wantUpdated: []string{"c"}, wantGone: []string{"b"}},
		"in sync: nothing": {from: 3},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			changed, ok := g3.changedSince(tc.from)
			if !ok {
				t.Fatal("the log should reach back")
			}
			updated, gone := g3.diff(changed)
			if got := names(updated); !slices.Equal(got, orEmpty(tc.wantUpdated)) {
				t.Errorf("updated %v, want %v", got, tc.wantUpdated)
			}
			if !slices.Equal(orEmpty(gone), orEmpty(tc.wantGone)) {
				t.Errorf("removed %v, want %v", gone, tc.wantGone)
			}
		})
	}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func TestDiffHeld(t *testing.T) {
	g := publish(emptyGeneration(), map[string]string{"a": "1", "b": "1"})
	tests := map[string]struct {
		held                  map[string]string
		wantUpdated, wantGone []string
	}{
		"holds exactly what is served": {
			held: map[string]string{"a": g.ResourceVersion("a"), "b": g.ResourceVersion("b")},
		},
		"one stale, one unknown, one missing": {
			held:        map[string]string{"a": "old", "x": "1"},
			wantUpdated: []string{"a", "b"}, wantGone: []string{"x"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			updated, gone := g.diffHeld(tc.held)
			if got := names(updated); !slices.Equal(got, orEmpty(tc.wantUpdated)) {
				t.Errorf("updated %v, want %v", got, tc.wantUpdated)
			}
			if !slices.Equal(orEmpty(gone), orEmpty(tc.wantGone)) {
				t.Errorf("removed %v, want %v", gone, tc.wantGone)
			}
		})
	}
}

// The change log is bounded by generations and by names; a subscriber
// behind it is told so instead of being sent a wrong diff.
func TestChangeLogIsBounded(t *testing.T) {
	g := publish(emptyGeneration(), map[string]string{"a": "0"})
	for i := 1; i <= maxLogGenerations+10; i++ {
		g = publish(g, map[string]string{"a": fmt.Sprint(i)})
	}
	if len(g.log) != maxLogGenerations {
		t.Fatalf("log holds %d generations, want %d", len(g.log), maxLogGenerations)
	}
	if _, ok := g.changedSince(1); ok {
		t.Fatal("a diff from a generation the log no longer reaches must be refused")
	}
	if changed, ok := g.changedSince(g.Version() - maxLogGenerations); !ok || !slices.Equal(changed, []string{"a"}) {
		t.Fatalf("from the oldest covered generation: %v %v", changed, ok)
	}

	big := map[string]string{}
	for i := range minLogNames {
		big[fmt.Sprint("host-", i)] = "1"
	}
	for round := range 2 * maxLogNamesFactor {
		for name := range big {
			big[name] = fmt.Sprint(round)
		}
		g = publish(g, big)
	}
	logged := 0
	for _, c := range g.log {
		logged += len(c.names)
	}
	if logged > maxLogNamesFactor*len(big) {
		t.Fatalf("after %d full replacements of %d names the log keeps %d names, more than %d× the resources",
			2*maxLogNamesFactor, len(big), logged, maxLogNamesFactor)
	}
}
