package kube_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/integration/kube"
)

// An API server restart keeps the data (etcd stays up), comes back on the
// same address, and an informer started before it resumes by itself — what
// issue 3's "API server restarted mid-run" acceptance relies on.
func TestRestartAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := kube.Start(t, kube.Options{IstioCRDs: []string{}, GatewayAPICRDs: []string{}})

	if _, err := c.Apply(ctx, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n"+policy)); err != nil {
		t.Fatal(err)
	}
	dyn, err := c.Dynamic()
	if err != nil {
		t.Fatal(err)
	}
	before, err := dyn.Resource(v1alpha1.GroupVersionResource).Namespace("shop").Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	seen := make(chan string, 16)
	factory := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	informer := factory.ForResource(v1alpha1.GroupVersionResource).Informer()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { seen <- obj.(*unstructured.Unstructured).GetName() },
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer func() { close(stop); factory.Shutdown() }()
	factory.Start(stop)
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		t.Fatal("informer did not sync")
	}
	expectAdd(t, seen, "shop")

	stopping := time.Now()
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("API server stopped in %v", time.Since(stopping).Round(time.Millisecond))
	if _, err := dyn.Resource(v1alpha1.GroupVersionResource).Namespace("shop").Get(ctx, "shop", metav1.GetOptions{}); err == nil {
		t.Fatal("API server still answers after StopAPIServer")
	}
	start := time.Now()
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("API server ready again after %v", time.Since(start).Round(time.Millisecond))

	after, err := dyn.Resource(v1alpha1.GroupVersionResource).Namespace("shop").Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.GetUID() != before.GetUID() {
		t.Fatalf("policy UID changed across the restart: %s → %s", before.GetUID(), after.GetUID())
	}
	// The informer's watch broke with the restart; a policy created now
	// reaches it only if it re-established the watch.
	second := []byte(`
apiVersion: waf.meshwaf.io/v1alpha1
kind: WAFPolicy
metadata: {name: second, namespace: shop}
spec:
  targetRefs: [{group: networking.istio.io, kind: VirtualService, name: shop}]
`)
	if _, err := c.Apply(ctx, second); err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	expectAdd(t, seen, "second")
	t.Logf("informer saw the new policy %v after it was applied", time.Since(applied).Round(time.Millisecond))

	// A crash (SIGKILL, connections cut without goodbye) recovers the same way.
	c.KillAPIServer()
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	third := strings.Replace(string(second), "name: second", "name: third", 1)
	if _, err := c.Apply(ctx, []byte(third)); err != nil {
		t.Fatal(err)
	}
	expectAdd(t, seen, "third")
}

func expectAdd(t *testing.T, seen <-chan string, name string) {
	t.Helper()
	select {
	case got := <-seen:
		if got != name {
			t.Fatalf("informer added %q, want %q", got, name)
		}
	case <-time.After(90 * time.Second): // client-go backs off up to 30 s between relists
		t.Fatalf("informer never saw %q", name)
	}
}
