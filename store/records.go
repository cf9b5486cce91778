package store

import (
	"time"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
)

// Kinds of objects meshwaf reads.
const (
	KindIstioGateway   = "Gateway.networking.istio.io"
	KindVirtualService = "VirtualService.networking.istio.io"
	KindGateway        = "Gateway.gateway.networking.k8s.io"
	KindHTTPRoute      = "HTTPRoute.gateway.networking.k8s.io"
	KindWAFPolicy      = "WAFPolicy.waf.meshwaf.io"
	// KindService is a core Service: the core group has no name, so the
	// kind has no suffix.
	KindService = "Service"
)

// SourceKubernetes is the Source of every record read from the API server.
const SourceKubernetes = "kubernetes"

// ObjectRef names one object of one kind.
type ObjectRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// NamespacedName is "<namespace>/<name>".
func (r ObjectRef) NamespacedName() string { return r.Namespace + "/" + r.Name }

// String is "<kind> <namespace>/<name>", for logs and status messages.
func (r ObjectRef) String() string { return r.Kind + " " + r.NamespacedName() }

// key is the primary key of the record in its table.
func (r ObjectRef) key() string { return r.Kind + "/" + r.NamespacedName() }

// Gateway is a gateway object (an Istio Gateway or a Gateway API Gateway):
// which Envoy proxies it configures and which hosts it serves. A Service
// (KindService) is recorded the same way, because a policy on it is
// enforced by the same filter on a set of proxies: the sidecars of the
// pods it selects.
type Gateway struct {
	Ref ObjectRef
	// NodeNamespace, when set, restricts the gateway to proxies running in
	// that namespace (Gateway API, Service); Istio Gateways select across
	// namespaces.
	NodeNamespace string
	// NodeLabels are the labels a proxy must carry to be configured by this
	// gateway (an Istio Gateway's selector, Gateway API's gateway-name
	// label, or a Service's spec.selector). Empty selects no proxy: a
	// Service without a selector has no pods meshwaf can know.
	NodeLabels map[string]string
	// Hosts are the hosts the gateway's listeners accept; "*" means any.
	// Empty for a Service, which has no listener hosts: its pods take
	// whatever Host a caller sends.
	Hosts []string
	// Source says where the object came from (a file path or "kubernetes").
	Source string
}

// Route is a routing object (an Istio VirtualService or a Gateway API
// HTTPRoute) that binds hosts to gateways.
type Route struct {
	Ref ObjectRef
	// Gateways are the gateways the route is attached to.
	Gateways []ObjectRef
	// Hosts are the hosts the route serves.
	Hosts  []string
	Source string
}

// Policy is a WAFPolicy: the newest spec that was accepted (defaults not
// applied), and why a newer one was not, if it was not. Keeping both lets
// the last good version protect while status says what is wrong.
type Policy struct {
	Ref     ObjectRef
	Created time.Time
	Source  string
	// Generation is the newest generation seen (0 for files).
	Generation int64
	// Spec is the newest accepted spec; nil if no version was ever accepted.
	Spec *v1alpha1.WAFPolicySpec
	// SpecGeneration is the generation Spec came from.
	SpecGeneration int64
	// Rejected is why generation Generation was not accepted; empty if it was.
	Rejected string
	// Status is the status currently recorded in the cluster, so it can be
	// updated without losing condition transition times.
	Status v1alpha1.WAFPolicyStatus
}

// KeepingSpecOf returns p (a rejected newer version) carrying prev's
// accepted spec, so protection continues while p is reported.
func (p *Policy) KeepingSpecOf(prev *Policy) *Policy {
	out := *p
	if prev != nil && prev.Spec != nil {
		out.Spec, out.SpecGeneration = prev.Spec, prev.SpecGeneration
	}
	return &out
}
