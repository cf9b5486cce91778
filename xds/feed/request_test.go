package feed

import (
	"maps"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
)

func TestFirstRequestIsReadInPlace(t *testing.T) {
	g := publish(emptyGeneration(), map[string]string{"a": "1", "b": "1"})
	inSync := map[string]string{"a": g.ResourceVersion("a"), "b": g.ResourceVersion("b")}
	tests := map[string]struct {
		held       map[string]string
		wantInSync bool
	}{
		"exactly what is served":       {held: inSync, wantInSync: true},
		"one at another version":       {held: map[string]string{"a": "old", "b": g.ResourceVersion("b")}},
		"one missing":                  {held: map[string]string{"a": g.ResourceVersion("a")}},
		"one too many":                 {held: map[string]string{"a": g.ResourceVersion("a"), "b": g.ResourceVersion("b"), "c": "1"}},
		"as many, but another name":    {held: map[string]string{"a": g.ResourceVersion("a"), "c": g.ResourceVersion("b")}},
		"nothing held (a fresh agent)": {held: nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			want := &discovery.DeltaDiscoveryRequest{
				Node: &corev3.Node{Id: "agent-1"}, TypeUrl: thingType, ResponseNonce: "n",
				ResourceNamesSubscribe: []string{Wildcard}, InitialResourceVersions: tc.held,
			}
			raw, err := proto.Marshal(want)
			if err != nil {
				t.Fatal(err)
			}
			first, err := parseFirstRequest(raw)
			if err != nil {
				t.Fatal(err)
			}
			rest := proto.Clone(want).(*discovery.DeltaDiscoveryRequest)
			rest.InitialResourceVersions = nil
			if !proto.Equal(first.DeltaDiscoveryRequest, rest) {
				t.Fatalf("decoded %v, want %v", first.DeltaDiscoveryRequest, rest)
			}
			if first.holds != len(tc.held) {
				t.Fatalf("counted %d held, want %d", first.holds, len(tc.held))
			}
			held, err := first.held()
			if err != nil || !maps.Equal(held, tc.held) && len(tc.held) > 0 {
				t.Fatalf("held %v (%v), want %v", held, err, tc.held)
			}
			got, err := first.inSyncWith(g)
			if err != nil || got != tc.wantInSync {
				t.Fatalf("in sync %v (%v), want %v", got, err, tc.wantInSync)
			}
		})
	}
}

// Whatever a client sends, reading it in place never panics, and where
// protobuf decodes it, it reads the same request.
func FuzzFirstRequest(f *testing.F) {
	for _, req := range []*discovery.DeltaDiscoveryRequest{
		{TypeUrl: thingType},
		{Node: &corev3.Node{Id: "n"}, InitialResourceVersions: map[string]string{"a": "1", "b": "2"}},
	} {
		raw, _ := proto.Marshal(req)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		first, err := parseFirstRequest(raw)
		var want discovery.DeltaDiscoveryRequest
		if proto.Unmarshal(raw, &want) != nil {
			return
		}
		if err != nil {
			t.Fatalf("protobuf decodes it but the in-place read fails: %v", err)
		}
		held, err := first.held()
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(held, want.GetInitialResourceVersions()) && len(held)+len(want.GetInitialResourceVersions()) > 0 {
			t.Fatalf("held %v, protobuf says %v", held, want.GetInitialResourceVersions())
		}
		want.InitialResourceVersions = nil
		if !proto.Equal(first.DeltaDiscoveryRequest, &want) {
			t.Fatalf("decoded %v, protobuf says %v", first.DeltaDiscoveryRequest, &want)
		}
	})
}
