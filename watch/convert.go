package watch

import (
	"errors"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/store"
)

// The API groups meshwaf understands.
const (
	groupIstio      = "networking.istio.io"
	groupGatewayAPI = "gateway.networking.k8s.io"
	groupMeshwaf    = v1alpha1.Group
	// groupCore is Kubernetes' core group (apiVersion "v1"), which has no
	// name.
	groupCore = ""
)

// gatewayNameLabel is the label Istio puts on the proxies it deploys for a
// Gateway API Gateway.
const gatewayNameLabel = "gateway.networking.k8s.io/gateway-name"

// object is the common head of every Kubernetes-style document.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name       string `json:"name"`
		Namespace  string `json:"namespace"`
		Generation int64  `json:"generation"`
	} `json:"metadata"`
}

func (o object) group() string {
	group, _, found := strings.Cut(o.APIVersion, "/")
	if !found {
		return "" // the core group
	}
	return group
}

// kindOf maps apiVersion and kind to a store kind; ok is false for kinds
// meshwaf does not read (which are ignored, not errors).
func kindOf(o object) (kind string, ok bool) {
	switch o.group() + "/" + o.Kind {
	case groupIstio + "/Gateway":
		return store.KindIstioGateway, true
	case groupIstio + "/VirtualService":
		return store.KindVirtualService, true
	case groupGatewayAPI + "/Gateway":
		return store.KindGateway, true
	case groupGatewayAPI + "/HTTPRoute":
		return store.KindHTTPRoute, true
	case groupMeshwaf + "/" + v1alpha1.Kind:
		return store.KindWAFPolicy, true
	case groupCore + "/Service":
		return store.KindService, true
	}
	return "", false
}

// decodeHead reads the kind and name of a JSON document. ok is false for a
// kind meshwaf ignores.
func decodeHead(doc []byte) (ref store.ObjectRef, ok bool, err error) {
	var head object
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return store.ObjectRef{}, false, err
	}
	if head.APIVersion == "" || head.Kind == "" {
		return store.ObjectRef{}, false, errors.New("apiVersion and kind are required")
	}
	kind, ok := kindOf(head)
	if !ok {
		return store.ObjectRef{}, false, nil
	}
	if head.Metadata.Name == "" {
		return store.ObjectRef{}, false, errors.New("metadata.name is required")
	}
	ns := head.Metadata.Namespace
	if ns == "" {
		ns = "default"
	}
	return store.ObjectRef{Kind: kind, Namespace: ns, Name: head.Metadata.Name}, true, nil
}

// decode converts one document of a known kind into a store record
// (*store.Gateway, *store.Route or *store.Policy).
func decode(ref store.ObjectRef, doc []byte, validate PolicyValidator) (any, error) {
	switch ref.Kind {
	case store.KindService:
		return decodeService(ref, doc)
	case store.KindIstioGateway:
		return decodeIstioGateway(ref, doc)
	case store.KindVirtualService:
		return decodeVirtualService(ref, doc)
	case store.KindGateway:
		return decodeGatewayAPIGateway(ref, doc)
	case store.KindHTTPRoute:
		return decodeHTTPRoute(ref, doc)
	case store.KindWAFPolicy:
		return decodePolicy(ref, doc, validate)
	}
	return nil, fmt.Errorf("no decoder for %s", ref.Kind)
}

func decodeIstioGateway(ref store.ObjectRef, doc []byte) (*store.Gateway, error) {
	var gw struct {
		Spec struct {
			Selector map[string]string `json:"selector"`
			Servers  []struct {
				Hosts []string `json:"hosts"`
			} `json:"servers"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(doc, &gw); err != nil {
		return nil, err
	}
	if len(gw.Spec.Selector) == 0 {
		return nil, errors.New("spec.selector: meshwaf needs a selector to know which proxies this gateway configures")
	}
	var hosts []string
	for _, server := range gw.Spec.Servers {
		for _, h := range server.Hosts {
			// Istio hosts may carry a namespace scope ("ns/host", "*/host")
			// that restricts which VirtualServices bind; the host is what
			// clients send.
			if _, host, scoped := strings.Cut(h, "/"); scoped {
				h = host
			}
			hosts = append(hosts, strings.ToLower(h))
		}
	}
	return &store.Gateway{Ref: ref, NodeLabels: gw.Spec.Selector, Hosts: dedupe(hosts)}, nil
}

// decodeService records which proxies a Service stands for: the sidecars
// of the pods in its namespace whose labels include its selector. Only the
// selector is kept; ports do not matter, since a policy on a Service covers
// every request its pods receive. A Service without a selector (an
// ExternalName Service, or one whose endpoints are managed by hand) is
// recorded all the same, with no labels: it is an ordinary object, not a
// mistake, and a policy targeting it is told why it cannot be protected.
func decodeService(ref store.ObjectRef, doc []byte) (*store.Gateway, error) {
	var svc struct {
		Spec struct {
			Selector map[string]string `json:"selector"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(doc, &svc); err != nil {
		return nil, err
	}
	return &store.Gateway{Ref: ref, NodeNamespace: ref.Namespace, NodeLabels: svc.Spec.Selector}, nil
}

func decodeVirtualService(ref store.ObjectRef, doc []byte) (*store.Route, error) {
	var vs struct {
		Spec struct {
			Hosts    []string `json:"hosts"`
			Gateways []string `json:"gateways"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(doc, &vs); err != nil {
		return nil, err
	}
	route := &store.Route{Ref: ref, Hosts: lower(vs.Spec.Hosts)}
	for _, g := range vs.Spec.Gateways {
		if g == "mesh" {
			continue // sidecars, not a gateway
		}
		ns, name, scoped := strings.Cut(g, "/")
		if !scoped {
			ns, name = ref.Namespace, g
		}
		route.Gateways = append(route.Gateways, store.ObjectRef{Kind: store.KindIstioGateway, Namespace: ns, Name: name})
	}
	return route, nil
}

func decodeGatewayAPIGateway(ref store.ObjectRef, doc []byte) (*store.Gateway, error) {
	var gw struct {
		Spec struct {
			Listeners []struct {
				Hostname string `json:"hostname"`
			} `json:"listeners"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(doc, &gw); err != nil {
		return nil, err
	}
	var hosts []string
	for _, l := range gw.Spec.Listeners {
		h := strings.ToLower(l.Hostname)
		if h == "" {
			h = "*" // a listener without hostname accepts every host
		}
		hosts = append(hosts, h)
	}
	return &store.Gateway{
		Ref:           ref,
		NodeNamespace: ref.Namespace,
		NodeLabels:    map[string]string{gatewayNameLabel: ref.Name},
		Hosts:         dedupe(hosts),
	}, nil
}

func decodeHTTPRoute(ref store.ObjectRef, doc []byte) (*store.Route, error) {
	var hr struct {
		Spec struct {
			ParentRefs []struct {
				Group     string `json:"group"`
				Kind      string `json:"kind"`
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"parentRefs"`
			Hostnames []string `json:"hostnames"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(doc, &hr); err != nil {
		return nil, err
	}
	route := &store.Route{Ref: ref, Hosts: lower(hr.Spec.Hostnames)}
	for _, p := range hr.Spec.ParentRefs {
		if (p.Group != "" && p.Group != groupGatewayAPI) || (p.Kind != "" && p.Kind != "Gateway") {
			continue // parents that are not gateways (e.g. Services for mesh routing)
		}
		ns := p.Namespace
		if ns == "" {
			ns = ref.Namespace
		}
		route.Gateways = append(route.Gateways, store.ObjectRef{Kind: store.KindGateway, Namespace: ns, Name: p.Name})
	}
	return route, nil
}

// decodePolicy decodes a WAFPolicy. When the newest version cannot be
// accepted it returns the error and a record saying so (Rejected set, no
// Spec), which callers combine with the last accepted version.
func decodePolicy(ref store.ObjectRef, doc []byte, validate PolicyValidator) (*store.Policy, error) {
	var p v1alpha1.WAFPolicy
	// Strict: a misspelt field in a security policy must not be silently
	// ignored.
	strictErr := yaml.UnmarshalStrict(doc, &p)
	if strictErr != nil {
		// Read what can be read, so the rejection can be reported on the
		// object; the spec itself is not trusted.
		p = v1alpha1.WAFPolicy{}
		_ = yaml.Unmarshal(doc, &p)
	}
	record := &store.Policy{
		Ref: ref, Created: p.CreationTimestamp.Time, Generation: p.Generation, Status: p.Status,
	}
	err := strictErr
	if err == nil {
		err = p.Spec.Validate()
	}
	if err == nil && validate != nil {
		err = validate(p.Spec)
	}
	if err != nil {
		record.Rejected = err.Error()
		return record, err
	}
	record.Spec, record.SpecGeneration = &p.Spec, p.Generation
	return record, nil
}

func lower(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		out = append(out, strings.ToLower(s))
	}
	return dedupe(out)
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// CheckPolicy applies to one WAFPolicy document (JSON or YAML) exactly the
// checks the sources apply, so the admission webhook rejects precisely what
// the sources would.
func CheckPolicy(doc []byte, validate PolicyValidator) error {
	ref, known, err := decodeHead(doc)
	if err != nil {
		return err
	}
	if !known || ref.Kind != store.KindWAFPolicy {
		return fmt.Errorf("not a %s/%s %s", v1alpha1.Group, v1alpha1.Version, v1alpha1.Kind)
	}
	_, err = decodePolicy(ref, doc, validate)
	return err
}
