package watch

import (
	"context"
	"log/slog"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	discoveryfake "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/store"
)

var servicesResource = schema.GroupVersionResource{Version: "v1", Resource: "services"}

func service(ns, name string, selector map[string]any) *unstructured.Unstructured {
	spec := map[string]any{}
	if selector != nil {
		spec["selector"] = selector
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     spec,
	}}
}

// eventually polls cond until it holds or a few seconds passed: informers
// hand events to their handlers asynchronously.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The Kubernetes source reads Services through an informer, like the
// routing kinds: created, changed and deleted Services reach the store.
func TestKubernetesReadsServices(t *testing.T) {
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{
			servicesResource:              "ServiceList",
			v1alpha1.GroupVersionResource: "WAFPolicyList",
		},
		service("shop", "api", map[string]any{"app": "api"}))
	disc := &discoveryfake.FakeDiscovery{Fake: &k8stesting.Fake{Resources: []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{{Name: "services", Namespaced: true, Kind: "Service"}}},
		{GroupVersion: v1alpha1.SchemeGroupVersion.String(), APIResources: []metav1.APIResource{{Name: v1alpha1.Plural, Namespaced: true, Kind: v1alpha1.Kind}}},
	}}}
	db := store.New()
	k := NewKubernetes(KubernetesConfig{Client: client, Discovery: disc, Store: db, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- k.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	select {
	case <-k.Synced():
	case err := <-done:
		t.Fatalf("Start returned before listing: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Services and WAFPolicies never listed")
	}

	apiRef := store.ObjectRef{Kind: store.KindService, Namespace: "shop", Name: "api"}
	eventually(t, "Service shop/api in the store", func() bool { return db.Read().Gateway(apiRef) != nil })
	api := db.Read().Gateway(apiRef)
	if api.NodeNamespace != "shop" || len(api.NodeLabels) != 1 || api.NodeLabels["app"] != "api" || api.Source != store.SourceKubernetes {
		t.Fatalf("Service shop/api = %+v", api)
	}

	services := client.Resource(servicesResource).Namespace("shop")
	if _, err := services.Update(ctx, service("shop", "api", map[string]any{"app": "api", "track": "canary"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new selector", func() bool { return db.Read().Gateway(apiRef).NodeLabels["track"] == "canary" })

	if err := services.Delete(ctx, "api", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Service shop/api removed", func() bool { return db.Read().Gateway(apiRef) == nil })
}
