package agent

import (
	"net"
	"strings"

	"github.com/meshwaf/meshwaf/agentapi"
)

// Lookup picks the policy for host among the given gateways: an exact host
// first, then the longest matching "*.suffix", then a gateway-wide "*". At
// equal specificity the earlier gateway wins. host must be normalized
// (see normalizeHost). nil means no policy applies.
func (r *Registry) Lookup(gateways []string, host string) *Entry {
	t := *r.table.Load()
	if len(t) == 0 {
		return nil
	}
	if e := find(t, gateways, host); e != nil {
		return e
	}
	// Each dot starts a shorter suffix, so the first hit is the longest.
	for i := 0; i < len(host); i++ {
		if host[i] == '.' {
			if e := find(t, gateways, "*"+host[i:]); e != nil {
				return e
			}
		}
	}
	return find(t, gateways, agentapi.GatewayWide)
}

func find(t routes, gateways []string, host string) *Entry {
	if host == "" {
		return nil
	}
	for _, gw := range gateways {
		if e := t[gw][host]; e != nil {
			return e
		}
	}
	return nil
}

// normalizeHost lower-cases host and strips its port and any trailing dot,
// so "Shop.Example.com.:8443" and "shop.example.com" find the same policy.
func normalizeHost(host string) string {
	host = strings.ToLower(strings.TrimSpace(host))
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	return strings.TrimSuffix(host, ".")
}
