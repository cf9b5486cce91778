package snapshot

import "strings"

// intersect returns the most specific host matched by both a and b, which
// are exact hosts, "*.suffix" wildcards or "*" (any host). ok is false when
// no host can match both.
func intersect(a, b string) (host string, ok bool) {
	switch {
	case a == b:
		return a, true
	case covers(a, b):
		return b, true
	case covers(b, a):
		return a, true
	}
	return "", false
}

// covers reports whether pattern matches every host that host matches.
func covers(pattern, host string) bool {
	if pattern == "*" {
		return true
	}
	suffix, isWildcard := strings.CutPrefix(pattern, "*")
	if !isWildcard || host == "*" {
		return false
	}
	// "*.example.com" covers "a.example.com" and "*.a.example.com", but not
	// "example.com" itself.
	return strings.HasSuffix(host, suffix) && len(host) > len(suffix)
}
