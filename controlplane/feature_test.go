package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extensionservice "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/snapshot"
)

var update = flag.Bool("update", false, "rewrite the feature tests' want.json files from what the control plane answers")

// The feature tier: each folder of testdata/features is one case, its
// manifests/ a folder the control plane reads as `--manifests` does, and
// case.yaml the proxies that ask for their filter. The control plane runs
// in this process (New, Run), and real gRPC clients ask it what Envoy and
// an agent would: every proxy's meshwaf.waf configuration over ECDS, and
// every host policy over the agents' delta xDS. The answers, as JSON, must
// equal want.json (go test ./controlplane -update rewrites them; review the
// diff). The whole pipeline (watch, store, rebuild, snapshot, xds) is
// crossed in milliseconds, without a binary or an Envoy.
func TestFeatures(t *testing.T) {
	cases, err := filepath.Glob("testdata/features/*")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no feature cases: %v", err)
	}
	for _, dir := range cases {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			got := runFeature(t, dir)
			wantFile := filepath.Join(dir, "want.json")
			if *update {
				if err := os.WriteFile(wantFile, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatalf("%v (run go test ./controlplane -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("answers differ from %s (go test ./controlplane -update, then review the diff); got:\n%s", wantFile, got)
			}
		})
	}
}

// featureCase is a case's case.yaml.
type featureCase struct {
	// Proxies ask for meshwaf.waf over ECDS, as Istio's proxies describe
	// themselves: the pod's namespace and labels.
	Proxies []struct {
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"proxies"`
}

// featureAnswers is what want.json holds.
type featureAnswers struct {
	// Filters is each proxy's meshwaf.waf, by "namespace label=value,…".
	Filters map[string]any `json:"filters"`
	// Hosts is every host policy an agent receives, by resource name.
	Hosts map[string]any `json:"hosts"`
}

func runFeature(t *testing.T, dir string) []byte {
	raw, err := os.ReadFile(filepath.Join(dir, "case.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var fc featureCase
	if err := yaml.UnmarshalStrict(raw, &fc); err != nil {
		t.Fatalf("case.yaml: %v", err)
	}
	addr := startInProcess(t, filepath.Join(dir, "manifests"))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	answers := featureAnswers{Filters: map[string]any{}, Hosts: map[string]any{}}
	for _, p := range fc.Proxies {
		filter, err := askFilter(ctx, conn, p.Namespace, p.Labels)
		if err != nil {
			t.Fatalf("ECDS for %s %v: %v", p.Namespace, p.Labels, err)
		}
		answers.Filters[proxyName(p.Namespace, p.Labels)] = filter
	}
	if answers.Hosts, err = askHostPolicies(ctx, conn); err != nil {
		t.Fatalf("host policies: %v", err)
	}
	out, err := json.MarshalIndent(answers, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// startInProcess runs the control plane on manifests in this process and
// returns its gRPC address.
func startInProcess(t *testing.T, manifests string) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := New(Config{
		Manifests: manifests, Listener: lis, HTTPListen: "127.0.0.1:0",
		AgentCluster: "meshwaf-agent", AgentTimeout: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	return lis.Addr().String()
}

// askFilter asks for meshwaf.waf as an Istio proxy in namespace with labels
// and returns the TypedExtensionConfig it gets, as JSON values.
func askFilter(ctx context.Context, conn *grpc.ClientConn, namespace string, labels map[string]string) (any, error) {
	labelValues := map[string]any{}
	for k, v := range labels {
		labelValues[k] = v
	}
	metadata, err := structpb.NewStruct(map[string]any{"NAMESPACE": namespace, "LABELS": labelValues})
	if err != nil {
		return nil, err
	}
	stream, err := extensionservice.NewExtensionConfigDiscoveryServiceClient(conn).StreamExtensionConfigs(ctx)
	if err != nil {
		return nil, err
	}
	defer stream.CloseSend()
	if err := stream.Send(&discoveryv3.DiscoveryRequest{
		Node:    &corev3.Node{Id: "router~10.0.0.1~gateway." + namespace + "~cluster.local", Metadata: metadata},
		TypeUrl: resource.ExtensionConfigType, ResourceNames: []string{snapshot.FilterName},
	}); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	if len(resp.GetResources()) != 1 {
		return nil, fmt.Errorf("%d resources, want 1", len(resp.GetResources()))
	}
	var tec corev3.TypedExtensionConfig
	if err := resp.GetResources()[0].UnmarshalTo(&tec); err != nil {
		return nil, err
	}
	return jsonValue(&tec)
}

// askHostPolicies subscribes as an agent does and returns the first
// answer's host policies by name.
func askHostPolicies(ctx context.Context, conn *grpc.ClientConn) (map[string]any, error) {
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	defer stream.CloseSend()
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{
		Node: &corev3.Node{Id: "node-a"}, TypeUrl: agentapi.HostPolicyTypeURL, ResourceNamesSubscribe: []string{"*"},
	}); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	hosts := map[string]any{}
	for _, r := range resp.GetResources() {
		var p agentapi.HostPolicy
		if err := r.GetResource().UnmarshalTo(&p); err != nil {
			return nil, err
		}
		if hosts[r.GetName()], err = jsonValue(&p); err != nil {
			return nil, err
		}
	}
	return hosts, nil
}

// jsonValue is m as plain JSON values, so that want.json is indented and
// ordered by encoding/json rather than by protojson, whose spacing varies
// on purpose.
func jsonValue(m proto.Message) (any, error) {
	raw, err := protojson.Marshal(m)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return v, nil
}

func proxyName(namespace string, labels map[string]string) string {
	name := namespace
	for i, k := range slices.Sorted(maps.Keys(labels)) {
		sep := ","
		if i == 0 {
			sep = " "
		}
		name += sep + k + "=" + labels[k]
	}
	return name
}

// testWriter sends the control plane's log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
