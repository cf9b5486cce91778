package watch

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/store"
)

// watched are the resources the Kubernetes source reads. WAFPolicies are
// required; the Istio and Gateway API kinds are read when installed.
// Services are always there: a policy targeting one protects its pods.
var watched = []schema.GroupVersionResource{
	{Group: groupCore, Version: "v1", Resource: "services"},
	{Group: groupIstio, Version: "v1", Resource: "gateways"},
	{Group: groupIstio, Version: "v1", Resource: "virtualservices"},
	{Group: groupGatewayAPI, Version: "v1", Resource: "gateways"},
	{Group: groupGatewayAPI, Version: "v1", Resource: "httproutes"},
	v1alpha1.GroupVersionResource,
}

// KubernetesConfig configures a Kubernetes source.
type KubernetesConfig struct {
	Client    dynamic.Interface
	Discovery discovery.DiscoveryInterface
	Store     *store.Store
	Validate  PolicyValidator
	Logger    *slog.Logger
}

// Kubernetes is a Source reading the Kubernetes API through informers.
// Informers re-list and re-watch by themselves when the API server goes
// away and comes back, so the store never sees an empty world in between:
// objects are only removed when the API server says they were deleted.
type Kubernetes struct {
	cfg    KubernetesConfig
	synced chan struct{}
}

// NewKubernetes returns a Kubernetes source; it reads nothing until Start.
func NewKubernetes(cfg KubernetesConfig) *Kubernetes {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Kubernetes{cfg: cfg, synced: make(chan struct{})}
}

// Synced is closed once every informer has listed its resource.
func (k *Kubernetes) Synced() <-chan struct{} { return k.synced }

// Start watches until ctx is done.
func (k *Kubernetes) Start(ctx context.Context) error {
	resources, err := k.availableResources(ctx)
	if err != nil {
		return err
	}
	factory := dynamicinformer.NewDynamicSharedInformerFactory(k.cfg.Client, 0)
	for _, gvr := range resources {
		informer := factory.ForResource(gvr).Informer()
		_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    k.upsert,
			UpdateFunc: func(_, obj any) { k.upsert(obj) },
			DeleteFunc: k.remove,
		})
		if err != nil {
			return fmt.Errorf("watching %s: %w", gvr, err)
		}
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for gvr, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("listing %s did not finish", gvr)
		}
	}
	if ctx.Err() == nil {
		k.cfg.Logger.Info("kubernetes objects listed", "resources", len(resources))
		close(k.synced)
	}
	<-ctx.Done()
	return nil
}

// availableResources asks the API server which watched resources exist,
// retrying while it cannot be reached. A missing WAFPolicy CRD is an error:
// meshwaf cannot work without it.
func (k *Kubernetes) availableResources(ctx context.Context) ([]schema.GroupVersionResource, error) {
	delay := 500 * time.Millisecond
	for {
		var available []schema.GroupVersionResource
		var unreachable error
		for _, gvr := range watched {
			list, err := k.cfg.Discovery.ServerResourcesForGroupVersion(gvr.GroupVersion().String())
			if err != nil {
				if !isNotFound(err) {
					unreachable = err
				}
				continue
			}
			if slices.ContainsFunc(list.APIResources, func(r metaResource) bool { return r.Name == gvr.Resource }) {
				available = append(available, gvr)
			}
		}
		switch {
		case unreachable != nil:
			k.cfg.Logger.Warn("kubernetes API not reachable, retrying", "error", unreachable, "retryIn", delay.String())
		case !slices.Contains(available, v1alpha1.GroupVersionResource):
			return nil, fmt.Errorf("the WAFPolicy CRD (%s) is not installed: apply deploy/crds first", v1alpha1.GroupVersionResource)
		default:
			for _, gvr := range watched {
				if !slices.Contains(available, gvr) {
					k.cfg.Logger.Info("resource not installed, not watching it", "resource", gvr.String())
				}
			}
			return available, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

func (k *Kubernetes) upsert(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	doc, err := u.MarshalJSON()
	if err != nil {
		k.cfg.Logger.Error("object not readable", "kind", u.GetKind(), "name", u.GetNamespace()+"/"+u.GetName(), "error", err)
		return
	}
	ref, known, err := decodeHead(doc)
	if err != nil || !known {
		return
	}
	record, err := decode(ref, doc, k.cfg.Validate)
	if err != nil {
		k.cfg.Logger.Error("object rejected", "object", ref.String(), "error", err.Error())
		record = lastGood(record, k.cfg.Store.Read().Object(ref))
		if record == nil {
			return
		}
	}
	setSource(record, store.SourceKubernetes)
	var objs store.Objects
	objs.Add(record)
	if err := k.cfg.Store.Upsert(objs); err != nil {
		k.cfg.Logger.Error("writing store", "object", ref.String(), "error", err)
	}
}

func (k *Kubernetes) remove(obj any) {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	doc, err := u.MarshalJSON()
	if err != nil {
		return
	}
	ref, known, err := decodeHead(doc)
	if err != nil || !known {
		return
	}
	if err := k.cfg.Store.Delete(ref); err != nil {
		k.cfg.Logger.Error("deleting from store", "object", ref.String(), "error", err)
	}
}

type metaResource = metav1.APIResource

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }
