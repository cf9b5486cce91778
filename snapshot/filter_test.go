package snapshot

import (
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/store"
)

func TestFilterSelection(t *testing.T) {
	onShop := func(spec v1alpha1.WAFPolicySpec) *store.Policy {
		spec.TargetRefs = target("networking.istio.io", "Gateway", "istio-ingress", "public")
		spec.Hosts = []string{"shop.example.com"}
		return policy("shop", "shop", 0, spec)
	}
	onAPI := func(spec v1alpha1.WAFPolicySpec) *store.Policy {
		spec.TargetRefs = target("networking.istio.io", "Gateway", "istio-ingress", "public")
		spec.Hosts = []string{"api.example.com"}
		return policy("api", "api", 0, spec)
	}
	inspect := v1alpha1.ResponseBody{Inspect: true}
	noBody := false
	tests := map[string]struct {
		policies []*store.Policy
		want     proto.Message // a message of the filter type wanted
		check    func(t *testing.T, f proto.Message)
	}{
		"no policy is a pass-through rbac filter": {
			want: &rbacv3.RBAC{},
		},
		"request inspection only is ext_authz": {
			policies: []*store.Policy{onShop(v1alpha1.WAFPolicySpec{})},
			want:     &extauthzv3.ExtAuthz{},
		},
		"response inspection is ext_proc": {
			policies: []*store.Policy{onShop(v1alpha1.WAFPolicySpec{ResponseBody: inspect}), onAPI(v1alpha1.WAFPolicySpec{})},
			want:     &extprocv3.ExternalProcessor{},
			check: func(t *testing.T, f proto.Message) {
				p := f.(*extprocv3.ExternalProcessor)
				m := p.GetProcessingMode()
				// Responses are sent only when the agent asks, per request.
				if m.GetRequestBodyMode() != extprocv3.ProcessingMode_BUFFERED || m.GetResponseBodyMode() != extprocv3.ProcessingMode_NONE ||
					m.GetResponseHeaderMode() != extprocv3.ProcessingMode_SKIP || !p.GetAllowModeOverride() || p.GetFailureModeAllow() ||
					p.GetObservabilityMode() || p.GetMessageTimeout().AsDuration() != testConfig.AgentTimeout || p.GetGrpcService().GetTimeout() != nil {
					t.Errorf("ext_proc config = %v", p)
				}
			},
		},
		"response inspection in mode off is ext_authz": {
			policies: []*store.Policy{onShop(v1alpha1.WAFPolicySpec{Mode: v1alpha1.ModeOff, ResponseBody: inspect}), onAPI(v1alpha1.WAFPolicySpec{})},
			want:     &extauthzv3.ExtAuthz{},
		},
		"inspect partial buffers partial request bodies": {
			policies: []*store.Policy{
				onShop(v1alpha1.WAFPolicySpec{ResponseBody: inspect}),
				onAPI(v1alpha1.WAFPolicySpec{RequestBody: v1alpha1.RequestBody{OverLimit: v1alpha1.OverLimitInspectPartial}}),
			},
			want: &extprocv3.ExternalProcessor{},
			check: func(t *testing.T, f proto.Message) {
				if m := f.(*extprocv3.ExternalProcessor).GetProcessingMode(); m.GetRequestBodyMode() != extprocv3.ProcessingMode_BUFFERED_PARTIAL {
					t.Errorf("request body mode = %v, want BUFFERED_PARTIAL", m.GetRequestBodyMode())
				}
			},
		},
		"no request body inspection sends no request body": {
			policies: []*store.Policy{onShop(v1alpha1.WAFPolicySpec{ResponseBody: inspect, RequestBody: v1alpha1.RequestBody{Inspect: &noBody}})},
			want:     &extprocv3.ExternalProcessor{},
			check: func(t *testing.T, f proto.Message) {
				if m := f.(*extprocv3.ExternalProcessor).GetProcessingMode(); m.GetRequestBodyMode() != extprocv3.ProcessingMode_NONE {
					t.Errorf("request body mode = %v, want NONE", m.GetRequestBodyMode())
				}
			},
		},
		"every policy failing open fails ext_proc open": {
			policies: []*store.Policy{onShop(v1alpha1.WAFPolicySpec{ResponseBody: inspect, FailureMode: v1alpha1.FailureModeOpen})},
			want:     &extprocv3.ExternalProcessor{},
			check: func(t *testing.T, f proto.Message) {
				if !f.(*extprocv3.ExternalProcessor).GetFailureModeAllow() {
					t.Error("failure_mode_allow = false, want true")
				}
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			snap := build(t, store.Objects{Gateways: []*store.Gateway{public}, Policies: tt.policies})
			fc, err := snap.FilterConfig(ingressNode)
			if err != nil {
				t.Fatal(err)
			}
			got, err := fc.GetTypedConfig().UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			if got.ProtoReflect().Descriptor().FullName() != tt.want.ProtoReflect().Descriptor().FullName() {
				t.Fatalf("filter is %s, want %s", got.ProtoReflect().Descriptor().FullName(), tt.want.ProtoReflect().Descriptor().FullName())
			}
			if tt.check != nil {
				tt.check(t, got)
			}
		})
	}
}

// The ext_proc config names the gateways and the policy set exactly as
// ext_authz does, so the agent reads the same metadata from both, plus the
// message timeout, which ext_authz conveys as the call's deadline.
func TestExtProcMetadata(t *testing.T) {
	spec := v1alpha1.WAFPolicySpec{TargetRefs: target("networking.istio.io", "Gateway", "istio-ingress", "public")}
	authzSnap := build(t, store.Objects{Gateways: []*store.Gateway{public}, Policies: []*store.Policy{policy("shop", "shop", 0, spec)}})
	spec.ResponseBody.Inspect = true
	procSnap := build(t, store.Objects{Gateways: []*store.Gateway{public}, Policies: []*store.Policy{policy("shop", "shop", 0, spec)}})
	metadata := func(snap *Snapshot) []string {
		fc, err := snap.FilterConfig(ingressNode)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := fc.GetTypedConfig().UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		var svc interface {
			GetInitialMetadata() []*corev3.HeaderValue
		}
		switch f := cfg.(type) {
		case *extauthzv3.ExtAuthz:
			svc = f.GetGrpcService()
		case *extprocv3.ExternalProcessor:
			svc = f.GetGrpcService()
		}
		var out []string
		for _, h := range svc.GetInitialMetadata() {
			if h.GetKey() != agentapi.PolicyDigestMetadataKey { // differs with the policy version
				out = append(out, h.GetKey()+"="+h.GetValue())
			}
		}
		return out
	}
	authz, proc := metadata(authzSnap), metadata(procSnap)
	want := append(slices.Clone(authz), agentapi.MessageTimeoutMetadataKey+"=500ms")
	if !slices.Equal(proc, want) {
		t.Errorf("ext_proc metadata %v, want ext_authz's %v plus the message timeout", proc, authz)
	}
}
