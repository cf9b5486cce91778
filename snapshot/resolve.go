package snapshot

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/store"
)

// claim is a policy asking to protect one host on one gateway.
type claim struct {
	gateway *store.Gateway
	host    string
	policy  *store.Policy
}

func (c claim) key() string { return agentapi.ResourceName(gatewayID(c.gateway), c.host) }

// serviceIDPrefix marks the identity of a Service record. Kubernetes object
// names are DNS labels or subdomains and never contain ':', so no Gateway's
// "<namespace>/<name>" can look like a Service's, even when both share a
// namespace and name; a separator that names may contain ('.', '-') could.
const serviceIDPrefix = "service:"

// gatewayID is the identity of a store gateway record in what meshwaf
// serves: the x-meshwaf-gateway value its proxies send, the gateway part of
// agentapi.ResourceName, and so of status hosts. Gateways keep their
// "<namespace>/<name>"; a Service is "<namespace>/service:<name>".
func gatewayID(gw *store.Gateway) string {
	if gw.Ref.Kind == store.KindService {
		return gw.Ref.Namespace + "/" + serviceIDPrefix + gw.Ref.Name
	}
	return gw.Ref.NamespacedName()
}

// targetKind maps a WAFPolicy targetRef's group and kind to a store kind.
// An empty group means Istio for Gateway and VirtualService, and Gateway API
// for HTTPRoute, since meshwaf is first an Istio WAF; for Service it is the
// core group, Service's own.
func targetKind(group, kind string) (string, bool) {
	switch group + "/" + kind {
	case "/Service":
		return store.KindService, true
	case "networking.istio.io/Gateway", "/Gateway":
		return store.KindIstioGateway, true
	case "networking.istio.io/VirtualService", "/VirtualService":
		return store.KindVirtualService, true
	case "gateway.networking.k8s.io/Gateway":
		return store.KindGateway, true
	case "gateway.networking.k8s.io/HTTPRoute", "/HTTPRoute":
		return store.KindHTTPRoute, true
	}
	return "", false
}

// resolve returns every (gateway, host) the policy asks for, and a message
// per targetRef that could not be resolved.
func resolve(txn *store.ReadTxn, p *store.Policy) (claims []claim, unresolved []string) {
	for _, ref := range p.Spec.TargetRefs {
		kind, ok := targetKind(ref.Group, ref.Kind)
		if !ok {
			unresolved = append(unresolved, fmt.Sprintf("targetRef %s/%s %s: kind not supported", ref.Group, ref.Kind, ref.Name))
			continue
		}
		ns := cmp.Or(ref.Namespace, p.Ref.Namespace)
		target := store.ObjectRef{Kind: kind, Namespace: ns, Name: ref.Name}
		found, problem := targetClaims(txn, target)
		if problem != "" {
			unresolved = append(unresolved, problem)
			continue
		}
		for _, c := range found {
			c.policy = p
			claims = append(claims, c)
		}
	}
	claims = narrow(claims, p.Spec.Hosts)
	slices.SortFunc(claims, func(a, b claim) int { return cmp.Compare(a.key(), b.key()) })
	claims = slices.CompactFunc(claims, func(a, b claim) bool { return a.key() == b.key() })
	return claims, unresolved
}

// targetClaims lists the (gateway, host) pairs a target object stands for,
// or says why the target cannot be resolved.
func targetClaims(txn *store.ReadTxn, target store.ObjectRef) (claims []claim, problem string) {
	notFound := fmt.Sprintf("%s not found", target)
	switch target.Kind {
	case store.KindService:
		svc := txn.Gateway(target)
		if svc == nil {
			return nil, notFound
		}
		if len(svc.NodeLabels) == 0 {
			return nil, fmt.Sprintf("%s has no selector, so meshwaf cannot tell which pods' sidecars to protect", target)
		}
		// The whole workload, never some hosts of it: on a pod's inbound
		// side the Host header is whatever the caller sends, so a policy
		// tied to host names would be skipped by a caller naming another.
		return []claim{{gateway: svc, host: agentapi.GatewayWide}}, ""
	case store.KindIstioGateway, store.KindGateway:
		gw := txn.Gateway(target)
		if gw == nil {
			return nil, notFound
		}
		out := []claim{}
		for _, h := range gw.Hosts {
			out = append(out, claim{gateway: gw, host: h})
		}
		return out, ""
	default:
		route := txn.Route(target)
		if route == nil {
			return nil, notFound
		}
		hosts := route.Hosts
		if len(hosts) == 0 {
			hosts = []string{"*"} // a route without hostnames takes the gateway's
		}
		out := []claim{}
		for _, gwRef := range route.Gateways {
			gw := txn.Gateway(gwRef)
			if gw == nil {
				continue
			}
			for _, rh := range hosts {
				for _, gh := range gw.Hosts {
					if h, ok := intersect(rh, gh); ok {
						out = append(out, claim{gateway: gw, host: h})
					}
				}
			}
		}
		return out, ""
	}
}

// narrow keeps the claims whose host matches one of hosts, made as
// specific as both allow. No hosts means no narrowing. A Service's claim
// is never narrowed (see targetClaims): spec.hosts only choose among the
// names gateways and routes serve. Keeping it whole, rather than refusing
// hosts next to a Service target, lets one policy cover some hosts of a
// gateway and the Service behind it, and errs towards inspecting more.
func narrow(claims []claim, hosts []string) []claim {
	if len(hosts) == 0 {
		return claims
	}
	var out []claim
	for _, c := range claims {
		if c.gateway.Ref.Kind == store.KindService {
			out = append(out, c)
			continue
		}
		for _, h := range hosts {
			if host, ok := intersect(c.host, h); ok {
				c.host = host
				out = append(out, c)
			}
		}
	}
	return out
}

// olderFirst orders policies by precedence: the oldest wins, then by
// namespace and name so the outcome never depends on map order.
func olderFirst(a, b *store.Policy) int {
	if c := a.Created.Compare(b.Created); c != 0 {
		return c
	}
	return cmp.Compare(a.Ref.NamespacedName(), b.Ref.NamespacedName())
}
