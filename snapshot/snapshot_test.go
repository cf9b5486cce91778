package snapshot

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/store"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var testConfig = Config{AgentCluster: "meshwaf_agent", AgentTimeout: 500 * time.Millisecond}

var ingressNode = Node{Namespace: "istio-ingress", Labels: map[string]string{"istio": "ingressgateway", "app": "x"}}

func istioGateway(ns, name string, hosts ...string) *store.Gateway {
	return &store.Gateway{
		Ref:        store.ObjectRef{Kind: store.KindIstioGateway, Namespace: ns, Name: name},
		NodeLabels: map[string]string{"istio": "ingressgateway"},
		Hosts:      hosts,
	}
}

func virtualService(ns, name string, gateway store.ObjectRef, hosts ...string) *store.Route {
	return &store.Route{
		Ref:      store.ObjectRef{Kind: store.KindVirtualService, Namespace: ns, Name: name},
		Gateways: []store.ObjectRef{gateway},
		Hosts:    hosts,
	}
}

func policy(ns, name string, age time.Duration, spec v1alpha1.WAFPolicySpec) *store.Policy {
	return &store.Policy{
		Ref:     store.ObjectRef{Kind: store.KindWAFPolicy, Namespace: ns, Name: name},
		Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(-age),
		Spec:    &spec,
	}
}

func target(group, kind, ns, name string) []v1alpha1.TargetRef {
	return []v1alpha1.TargetRef{{Group: group, Kind: kind, Namespace: ns, Name: name}}
}

var public = istioGateway("istio-ingress", "public", "shop.example.com", "api.example.com", "*.apps.example.com")

var cases = []struct {
	name  string
	objs  store.Objects
	nodes []Node
}{
	{
		name: "gateway target narrowed to one host",
		objs: store.Objects{
			Gateways: []*store.Gateway{public},
			Policies: []*store.Policy{policy("shop", "shop", 0, v1alpha1.WAFPolicySpec{
				TargetRefs: target("networking.istio.io", "Gateway", "istio-ingress", "public"),
				Hosts:      []string{"shop.example.com"},
			})},
		},
		nodes: []Node{ingressNode, {Namespace: "other", Labels: map[string]string{"istio": "egressgateway"}}},
	},
	{
		name: "two hosts with different modes and a wildcard",
		objs: store.Objects{
			Gateways: []*store.Gateway{public},
			Routes: []*store.Route{
				virtualService("shop", "shop", public.Ref, "shop.example.com"),
				virtualService("apps", "apps", public.Ref, "*.apps.example.com"),
			},
			Policies: []*store.Policy{
				policy("shop", "strict", 0, v1alpha1.WAFPolicySpec{
					TargetRefs: target("networking.istio.io", "VirtualService", "", "shop"),
					Mode:       v1alpha1.ModePrevent,
					Exclusions: []v1alpha1.Exclusion{{RuleIDs: []string{"942100"}, Paths: []string{"/search"}, Targets: []string{"ARGS:q"}}},
				}),
				policy("apps", "watch", 0, v1alpha1.WAFPolicySpec{
					TargetRefs:  target("", "VirtualService", "", "apps"),
					Mode:        v1alpha1.ModeDetect,
					FailureMode: v1alpha1.FailureModeOpen,
					RequestBody: v1alpha1.RequestBody{LimitBytes: 1 << 20, OverLimit: v1alpha1.OverLimitInspectPartial},
				}),
			},
		},
		nodes: []Node{ingressNode},
	},
	{
		name: "older policy wins a conflict and a missing target is reported",
		objs: store.Objects{
			Gateways: []*store.Gateway{public},
			Policies: []*store.Policy{
				policy("shop", "newer", time.Hour, v1alpha1.WAFPolicySpec{
					TargetRefs: append(target("networking.istio.io", "Gateway", "istio-ingress", "public"),
						v1alpha1.TargetRef{Group: "networking.istio.io", Kind: "VirtualService", Name: "gone"}),
					Hosts: []string{"api.example.com"},
					Mode:  v1alpha1.ModeDetect,
				}),
				policy("shop", "older", 2*time.Hour, v1alpha1.WAFPolicySpec{
					TargetRefs: target("networking.istio.io", "Gateway", "istio-ingress", "public"),
					Hosts:      []string{"api.example.com"},
				}),
			},
		},
		nodes: []Node{ingressNode},
	},
	{
		name: "rejected versions report while the last accepted one protects",
		objs: store.Objects{
			Gateways: []*store.Gateway{public},
			Policies: []*store.Policy{
				func() *store.Policy {
					p := policy("shop", "edited", 0, v1alpha1.WAFPolicySpec{
						TargetRefs: target("networking.istio.io", "Gateway", "istio-ingress", "public"),
						Hosts:      []string{"shop.example.com"},
					})
					p.Generation, p.SpecGeneration, p.Rejected = 3, 2, `spec.mode: "Block" is not one of Prevent, Detect, Off`
					return p
				}(),
				{
					Ref:        store.ObjectRef{Kind: store.KindWAFPolicy, Namespace: "shop", Name: "never-valid"},
					Generation: 1,
					Rejected:   "custom rules line 1: unknown directive",
				},
			},
		},
		nodes: []Node{ingressNode},
	},
	{
		name: "response inspection selects ext_proc",
		objs: store.Objects{
			Gateways: []*store.Gateway{public},
			Routes: []*store.Route{
				virtualService("shop", "shop", public.Ref, "shop.example.com"),
				virtualService("apps", "apps", public.Ref, "*.apps.example.com"),
			},
			Policies: []*store.Policy{
				policy("shop", "leaks", 0, v1alpha1.WAFPolicySpec{
					TargetRefs:   target("networking.istio.io", "VirtualService", "", "shop"),
					ResponseBody: v1alpha1.ResponseBody{Inspect: true, LimitBytes: 65536},
				}),
				policy("apps", "partial", 0, v1alpha1.WAFPolicySpec{
					TargetRefs:  target("", "VirtualService", "", "apps"),
					Mode:        v1alpha1.ModeDetect,
					FailureMode: v1alpha1.FailureModeOpen,
					RequestBody: v1alpha1.RequestBody{LimitBytes: 1 << 20, OverLimit: v1alpha1.OverLimitInspectPartial},
				}),
			},
		},
		nodes: []Node{ingressNode},
	},
	{
		name: "gateway api gateway and httproute",
		objs: store.Objects{
			Gateways: []*store.Gateway{{
				Ref:           store.ObjectRef{Kind: store.KindGateway, Namespace: "edge", Name: "web"},
				NodeNamespace: "edge",
				NodeLabels:    map[string]string{"gateway.networking.k8s.io/gateway-name": "web"},
				Hosts:         []string{"*"},
			}},
			Routes: []*store.Route{{
				Ref:      store.ObjectRef{Kind: store.KindHTTPRoute, Namespace: "edge", Name: "store"},
				Gateways: []store.ObjectRef{{Kind: store.KindGateway, Namespace: "edge", Name: "web"}},
				Hosts:    []string{"store.example.com"},
			}},
			Policies: []*store.Policy{policy("edge", "store", 0, v1alpha1.WAFPolicySpec{
				TargetRefs: target("gateway.networking.k8s.io", "HTTPRoute", "", "store"),
				CRS:        v1alpha1.CRS{ParanoiaLevel: 2},
			})},
		},
		nodes: []Node{
			{Namespace: "edge", Labels: map[string]string{"gateway.networking.k8s.io/gateway-name": "web"}},
			{Namespace: "elsewhere", Labels: map[string]string{"gateway.networking.k8s.io/gateway-name": "web"}},
		},
	},
	{
		name: "service target protects every host of its pods",
		objs: store.Objects{
			Gateways: []*store.Gateway{{
				Ref:           store.ObjectRef{Kind: store.KindService, Namespace: "shop", Name: "api"},
				NodeNamespace: "shop",
				NodeLabels:    map[string]string{"app": "api"},
			}},
			Policies: []*store.Policy{policy("shop", "api", 0, v1alpha1.WAFPolicySpec{
				TargetRefs:  target("", "Service", "", "api"),
				Hosts:       []string{"api.shop.svc.cluster.local"},
				FailureMode: v1alpha1.FailureModeOpen,
			})},
		},
		nodes: []Node{
			{Namespace: "shop", Labels: map[string]string{"app": "api", "version": "v1"}},
			{Namespace: "shop", Labels: map[string]string{"app": "web"}},
		},
	},
}

func TestBuildGolden(t *testing.T) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			snap := build(t, tc.objs)
			got := render(t, snap, tc.nodes)
			path := filepath.Join("testdata", strings.ReplaceAll(tc.name, " ", "_")+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("snapshot differs from %s (run with -update after checking):\n%s", path, got)
			}
		})
	}
}

func TestBuildIsDeterministicAndVersioned(t *testing.T) {
	objs := cases[1].objs
	first, second := build(t, objs), build(t, objs)
	if first.Version != second.Version {
		t.Fatalf("same input gave versions %s and %s", first.Version, second.Version)
	}
	changed := store.Objects{Gateways: objs.Gateways, Routes: objs.Routes, Policies: []*store.Policy{objs.Policies[0]}}
	if build(t, changed).Version == first.Version {
		t.Fatal("removing a policy did not change the version")
	}
	rejected := *objs.Policies[0]
	rejected.Generation, rejected.Rejected = 2, "spec.mode: bad"
	withRejection := store.Objects{Gateways: objs.Gateways, Routes: objs.Routes, Policies: []*store.Policy{&rejected, objs.Policies[1]}}
	if build(t, withRejection).Version == first.Version {
		t.Fatal("a rejected new generation did not change the version, so status would never report it")
	}
}

func build(t *testing.T, objs store.Objects) *Snapshot {
	t.Helper()
	db := store.New()
	if err := db.Replace(objs); err != nil {
		t.Fatal(err)
	}
	snap, err := Build(db.Read(), testConfig)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// render writes the snapshot, and the filter config each node would get,
// as stable indented JSON.
func render(t *testing.T, snap *Snapshot, nodes []Node) []byte {
	t.Helper()
	protoJSON := func(m proto.Message) json.RawMessage {
		b, err := protojson.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return normalize(t, b)
	}
	hostPolicies := map[string]json.RawMessage{}
	for name, hp := range snap.HostPolicies {
		hostPolicies[name] = protoJSON(hp)
	}
	var filters []any
	for _, n := range nodes {
		fc, err := snap.FilterConfig(n)
		if err != nil {
			t.Fatal(err)
		}
		filters = append(filters, map[string]any{"node": n, "filter": protoJSON(fc)})
	}
	out, err := json.MarshalIndent(map[string]any{
		"gateways":     snap.Gateways,
		"hostPolicies": hostPolicies,
		"policies":     snap.Policies,
		"filters":      filters,
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// normalize re-encodes JSON so protojson's unstable spacing does not leak
// into golden files.
func normalize(t *testing.T, b []byte) json.RawMessage {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPolicyChangeChangesFilterConfig(t *testing.T) {
	objs := cases[0].objs
	before := build(t, objs)
	flipped := *objs.Policies[0]
	spec := *flipped.Spec
	spec.Mode = v1alpha1.ModeDetect
	flipped.Spec = &spec
	after := build(t, store.Objects{Gateways: objs.Gateways, Policies: []*store.Policy{&flipped}})
	a, err := before.FilterConfig(ingressNode)
	if err != nil {
		t.Fatal(err)
	}
	b, err := after.FilterConfig(ingressNode)
	if err != nil {
		t.Fatal(err)
	}
	if proto.Equal(a, b) {
		t.Fatal("a mode change left the gateway's filter config unchanged, so Envoy would see no ECDS update")
	}
}
