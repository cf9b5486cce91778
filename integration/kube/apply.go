package kube

import (
	"context"
	"fmt"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

// FieldManager owns the fields the harness applies.
const FieldManager = "meshwaf-kube-harness"

// CRDResource is apiextensions.k8s.io/v1 customresourcedefinitions.
var CRDResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// Dynamic returns a dynamic client for the admin.
func (c *Cluster) Dynamic() (dynamic.Interface, error) { return dynamic.NewForConfig(c.admin) }

// Decode parses a multi-document YAML stream into objects; `kind: List`
// documents are flattened into their items.
func Decode(manifests []byte) ([]*unstructured.Unstructured, error) {
	docs, err := SplitYAML(manifests)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for i, doc := range docs {
		var content map[string]any
		if err := yaml.Unmarshal(doc, &content); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		u := &unstructured.Unstructured{Object: content}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, fmt.Errorf("document %d: %w", i, err)
			}
			for j := range list.Items {
				objs = append(objs, &list.Items[j])
			}
			continue
		}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("document %d: apiVersion and kind are required", i)
		}
		objs = append(objs, u)
	}
	return objs, nil
}

// Apply server-side-applies every object of a multi-document YAML stream,
// in order, as FieldManager with force, and returns them as the API server
// stored them. A namespaced object without a namespace goes to "default".
// Objects of a kind whose CRD was created moments before (even earlier in
// the same stream) are retried until discovery serves the kind.
func (c *Cluster) Apply(ctx context.Context, manifests []byte) ([]*unstructured.Unstructured, error) {
	objs, err := Decode(manifests)
	if err != nil {
		return nil, err
	}
	return c.ApplyObjects(ctx, objs...)
}

// DryRun server-side-applies every object with dryRun=All: the API server
// runs validation and admission and persists nothing. Use it to check
// manifests whose side effects a test must not have, such as a webhook
// configuration naming a Service (the API server would call its ClusterIP,
// which nothing here serves).
func (c *Cluster) DryRun(ctx context.Context, manifests []byte) error {
	objs, err := Decode(manifests)
	if err != nil {
		return err
	}
	_, err = c.applyObjects(ctx, metav1.ApplyOptions{FieldManager: FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}}, objs)
	return err
}

// ApplyFile applies the YAML file at path (see Apply).
func (c *Cluster) ApplyFile(ctx context.Context, path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return c.Apply(ctx, data)
}

// ApplyObjects applies objects (see Apply).
func (c *Cluster) ApplyObjects(ctx context.Context, objs ...*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	return c.applyObjects(ctx, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}, objs)
}

func (c *Cluster) applyObjects(ctx context.Context, opts metav1.ApplyOptions, objs []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	m, err := c.newMapper()
	if err != nil {
		return nil, err
	}
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, obj := range objs {
		ri, err := m.resource(ctx, obj)
		if err != nil {
			return out, err
		}
		applied, err := ri.Apply(ctx, obj.GetName(), obj, opts)
		if err != nil {
			return out, fmt.Errorf("apply %s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
		out = append(out, applied)
	}
	return out, nil
}

// Delete deletes every object of a multi-document YAML stream; objects that
// do not exist are not an error. Deletion is asynchronous for objects with
// finalizers (and namespaces never finish: there is no controller manager).
func (c *Cluster) Delete(ctx context.Context, manifests []byte) error {
	objs, err := Decode(manifests)
	if err != nil {
		return err
	}
	m, err := c.newMapper()
	if err != nil {
		return err
	}
	for _, obj := range objs {
		ri, err := m.resource(ctx, obj)
		if err != nil {
			return err
		}
		if err := ri.Delete(ctx, obj.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
	}
	return nil
}

// WaitForCRDs waits until each named CRD is Established, which is when its
// kind can be created and watched.
func (c *Cluster) WaitForCRDs(ctx context.Context, names ...string) error {
	dyn, err := c.Dynamic()
	if err != nil {
		return err
	}
	for _, name := range names {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			crd, err := dyn.Resource(CRDResource).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil //nolint:nilerr // not created yet or API server busy: keep polling
			}
			return conditionTrue(crd, "Established"), nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not established: %w", name, err)
		}
	}
	return nil
}

// conditionTrue reports whether obj's status has condition typ with status True.
func conditionTrue(obj *unstructured.Unstructured, typ string) bool {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ && m["status"] == "True" {
			return true
		}
	}
	return false
}

// mapper resolves kinds to resources through discovery, forgetting what it
// knows when a kind is missing so CRDs created a moment ago are found.
type mapper struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func (c *Cluster) newMapper() (*mapper, error) {
	dyn, err := dynamic.NewForConfig(c.admin)
	if err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(c.admin)
	if err != nil {
		return nil, err
	}
	return &mapper{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))}, nil
}

func (m *mapper) resource(ctx context.Context, obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	var mapping *meta.RESTMapping
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		var err error
		mapping, err = m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) {
			m.mapper.Reset()
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return nil, fmt.Errorf("no resource for %s: %w", gvk, err)
	}
	if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
		return m.dyn.Resource(mapping.Resource), nil
	}
	if obj.GetNamespace() == "" {
		obj.SetNamespace("default")
	}
	return m.dyn.Resource(mapping.Resource).Namespace(obj.GetNamespace()), nil
}
