package snapshot

import (
	"slices"
	"strings"
	"testing"
	"time"

	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/store"
)

func service(ns, name string, selector map[string]string) *store.Gateway {
	return &store.Gateway{
		Ref:           store.ObjectRef{Kind: store.KindService, Namespace: ns, Name: name},
		NodeNamespace: ns,
		NodeLabels:    selector,
	}
}

// filterOf is the filter config node gets, decoded.
func filterOf(t *testing.T, snap *Snapshot, node Node) proto.Message {
	t.Helper()
	fc, err := snap.FilterConfig(node)
	if err != nil {
		t.Fatal(err)
	}
	if fc.GetName() != FilterName {
		t.Fatalf("filter config named %q", fc.GetName())
	}
	f, err := fc.GetTypedConfig().UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// gatewayMetadata lists the x-meshwaf-gateway values of an ext_authz config.
func gatewayMetadata(a *extauthzv3.ExtAuthz) []string {
	var out []string
	for _, h := range a.GetGrpcService().GetInitialMetadata() {
		if h.GetKey() == agentapi.GatewayMetadataKey {
			out = append(out, h.GetValue())
		}
	}
	return out
}

func statusOf(t *testing.T, snap *Snapshot, ns, name string) PolicyStatus {
	t.Helper()
	for _, p := range snap.Policies {
		if p.Ref.Namespace == ns && p.Ref.Name == name {
			return p
		}
	}
	t.Fatalf("no status for policy %s/%s", ns, name)
	return PolicyStatus{}
}

// A policy on a Service protects every request its pods' sidecars receive,
// whatever the Host, under an identity no gateway of the same namespace
// and name can have.
func TestServiceTargetProtectsItsPods(t *testing.T) {
	api := service("shop", "api", map[string]string{"app": "api"})
	// Gateways named like the Service, in its namespace, each with a
	// policy of its own: none may be taken for the Service.
	gatewayAPI := &store.Gateway{
		Ref:           store.ObjectRef{Kind: store.KindGateway, Namespace: "shop", Name: "api"},
		NodeNamespace: "shop",
		NodeLabels:    map[string]string{"gateway.networking.k8s.io/gateway-name": "api"},
		Hosts:         []string{"*"},
	}
	objs := store.Objects{
		Gateways: []*store.Gateway{api, gatewayAPI, service("shop", "web", map[string]string{"app": "web"})},
		Policies: []*store.Policy{
			policy("shop", "workload", 0, v1alpha1.WAFPolicySpec{
				TargetRefs: target("", "Service", "", "api"),
				// Hosts narrow gateway claims only.
				Hosts: []string{"api.example.com"},
				Mode:  v1alpha1.ModeDetect,
			}),
			policy("shop", "edge", 0, v1alpha1.WAFPolicySpec{
				TargetRefs: target("gateway.networking.k8s.io", "Gateway", "", "api"),
			}),
		},
	}
	snap := build(t, objs)

	const id = "shop/service:api"
	name := agentapi.ResourceName(id, agentapi.GatewayWide)
	workload := statusOf(t, snap, "shop", "workload")
	if !slices.Equal(workload.Hosts, []string{name}) || len(workload.Unresolved) != 0 || len(workload.Conflicts) != 0 {
		t.Errorf("workload policy status = %+v, want hosts [%s] only", workload, name)
	}
	edge := statusOf(t, snap, "shop", "edge")
	if !slices.Equal(edge.Hosts, []string{"shop/api/*"}) || len(edge.Conflicts) != 0 {
		t.Errorf("edge policy status = %+v, want the Gateway's own shop/api/* without conflict", edge)
	}
	hp := snap.HostPolicies[name]
	if hp.GetGateway() != id || hp.GetHost() != agentapi.GatewayWide || hp.GetPolicy() != "shop/workload" ||
		hp.GetMode() != agentapi.Mode_MODE_DETECT {
		t.Errorf("host policy %s = %v", name, hp)
	}
	if gw, host, err := agentapi.SplitResourceName(name); err != nil || gw != id || host != agentapi.GatewayWide {
		t.Errorf("agents split %q into %q, %q, %v", name, gw, host, err)
	}

	var ids []string
	for _, g := range snap.Gateways {
		ids = append(ids, g.ID)
	}
	// shop/service:web has no policy, so it is left out.
	if want := []string{"shop/api", id}; !slices.Equal(ids, want) {
		t.Errorf("snapshot gateways = %v, want %v", ids, want)
	}

	pod := Node{Namespace: "shop", Labels: map[string]string{"app": "api", "pod-template-hash": "7d9f"}}
	authz, ok := filterOf(t, snap, pod).(*extauthzv3.ExtAuthz)
	if !ok {
		t.Fatalf("a pod of the Service got %T, want ext_authz", filterOf(t, snap, pod))
	}
	if got := gatewayMetadata(authz); !slices.Equal(got, []string{id}) {
		t.Errorf("x-meshwaf-gateway = %v, want [%s]", got, id)
	}
	if authz.GetFailureModeAllow() || authz.GetWithRequestBody().GetMaxRequestBytes() != v1alpha1.DefaultRequestBodyLimitBytes {
		t.Errorf("ext_authz = %v, want the policy's defaults (fail closed, 128 KiB bodies)", authz)
	}

	for name, node := range map[string]Node{
		"same labels in another namespace": {Namespace: "other", Labels: map[string]string{"app": "api"}},
		"a pod of another Service":         {Namespace: "shop", Labels: map[string]string{"app": "web"}},
		"no labels":                        {Namespace: "shop"},
	} {
		if f := filterOf(t, snap, node); !proto.Equal(f, &rbacv3.RBAC{}) {
			t.Errorf("%s: filter = %T %v, want the pass-through RBAC filter", name, f, f)
		}
	}
}

func TestServiceTargetUnresolved(t *testing.T) {
	tests := map[string]struct {
		ref  v1alpha1.TargetRef
		want string
	}{
		"no selector":                         {v1alpha1.TargetRef{Kind: "Service", Name: "legacy"}, "Service shop/legacy has no selector"},
		"missing":                             {v1alpha1.TargetRef{Kind: "Service", Name: "gone"}, "Service shop/gone not found"},
		"other group":                         {v1alpha1.TargetRef{Group: "serving.knative.dev", Kind: "Service", Name: "api"}, "kind not supported"},
		"an empty group's Gateway is Istio's": {v1alpha1.TargetRef{Kind: "Gateway", Name: "api"}, "Gateway.networking.istio.io shop/api not found"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			snap := build(t, store.Objects{
				Gateways: []*store.Gateway{service("shop", "legacy", nil), service("shop", "api", map[string]string{"app": "api"})},
				Policies: []*store.Policy{policy("shop", "p", 0, v1alpha1.WAFPolicySpec{TargetRefs: []v1alpha1.TargetRef{tt.ref}})},
			})
			st := statusOf(t, snap, "shop", "p")
			if len(st.Hosts) != 0 || len(st.Unresolved) != 1 || !strings.Contains(st.Unresolved[0], tt.want) {
				t.Errorf("status = %+v, want no hosts and unresolved %q", st, tt.want)
			}
			if len(snap.HostPolicies) != 0 {
				t.Errorf("host policies %v for an unresolved target", snap.HostPolicies)
			}
		})
	}
}

// Two policies on one Service conflict like two on one gateway host: the
// older keeps the workload.
func TestServiceTargetConflict(t *testing.T) {
	spec := v1alpha1.WAFPolicySpec{TargetRefs: target("", "Service", "shop", "api")}
	snap := build(t, store.Objects{
		Gateways: []*store.Gateway{service("shop", "api", map[string]string{"app": "api"})},
		Policies: []*store.Policy{policy("shop", "newer", 0, spec), policy("team", "older", time.Hour, spec)},
	})
	if older := statusOf(t, snap, "team", "older"); !slices.Equal(older.Hosts, []string{"shop/service:api/*"}) {
		t.Errorf("older policy hosts = %v", older.Hosts)
	}
	newer := statusOf(t, snap, "shop", "newer")
	if len(newer.Hosts) != 0 || len(newer.Conflicts) != 1 || !strings.Contains(newer.Conflicts[0], "team/older") {
		t.Errorf("newer policy status = %+v, want a conflict naming team/older", newer)
	}
}
