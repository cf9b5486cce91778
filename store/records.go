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
)

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
// which Envoy proxies it configures and which hosts it serves.
type Gateway struct {
	Ref ObjectRef
	// NodeNamespace, when set, restricts the gateway to proxies running in
	// that namespace (Gateway API); Istio Gateways select across namespaces.
	NodeNamespace string
	// NodeLabels are the labels a proxy must carry to be configured by this
	// gateway (an Istio Gateway's selector, or Gateway API's gateway-name label).
	NodeLabels map[string]string
	// Hosts are the hosts the gateway's listeners accept; "*" means any.
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

// Policy is a WAFPolicy as the user wrote it (defaults not applied).
type Policy struct {
	Ref     ObjectRef
	Created time.Time
	Spec    v1alpha1.WAFPolicySpec
	Source  string
}
