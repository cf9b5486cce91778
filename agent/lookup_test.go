package agent

import (
	"testing"

	"github.com/meshwaf/meshwaf/agentapi"
)

func TestNormalizeHost(t *testing.T) {
	tests := map[string]struct{ in, want string }{
		"lower-cases":         {"Shop.Example.COM", "shop.example.com"},
		"strips port":         {"shop.example.com:8443", "shop.example.com"},
		"strips trailing dot": {"shop.example.com.", "shop.example.com"},
		"ipv6 with port":      {"[::1]:8080", "::1"},
		"ipv6 bracketed":      {"[::1]", "::1"},
		"ipv4 with port":      {"10.0.0.1:80", "10.0.0.1"},
		"empty":               {"", ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := normalizeHost(tt.in); got != tt.want {
				t.Errorf("normalizeHost(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	reg := NewRegistry(nil)
	entries := map[string]*Entry{}
	for _, name := range []string{
		"ns/a/shop.example.com",
		"ns/a/*.example.com",
		"ns/a/*.api.example.com",
		"ns/b/*",
		"ns/b/shop.example.com",
		"ns/b/*.api.example.com",
	} {
		gw, host, err := agentapi.SplitResourceName(name)
		if err != nil {
			t.Fatal(err)
		}
		// Mode Off entries need no WAF, which keeps this test cheap.
		entries[name] = &Entry{Name: name, Policy: &agentapi.HostPolicy{Gateway: gw, Host: host, Mode: agentapi.Mode_MODE_OFF}}
	}
	reg.Replace(entries)

	tests := map[string]struct {
		gateways []string
		host     string
		want     string // resource name, "" for none
	}{
		"exact host":                        {[]string{"ns/a"}, "shop.example.com", "ns/a/shop.example.com"},
		"longest wildcard wins":             {[]string{"ns/a"}, "v1.api.example.com", "ns/a/*.api.example.com"},
		"shorter wildcard":                  {[]string{"ns/a"}, "www.example.com", "ns/a/*.example.com"},
		"wildcard spans labels":             {[]string{"ns/a"}, "a.b.example.com", "ns/a/*.example.com"},
		"wildcard needs a label":            {[]string{"ns/a"}, "example.com", ""},
		"gateway-wide as last resort":       {[]string{"ns/b"}, "other.org", "ns/b/*"},
		"exact beats earlier gw wildcard":   {[]string{"ns/a", "ns/b"}, "v1.api.example.com", "ns/a/*.api.example.com"},
		"exact across gateways first":       {[]string{"ns/b", "ns/a"}, "shop.example.com", "ns/b/shop.example.com"},
		"wildcard before other gw catchall": {[]string{"ns/b", "ns/a"}, "www.example.com", "ns/a/*.example.com"},
		"unknown gateway":                   {[]string{"ns/c"}, "shop.example.com", ""},
		"no gateway metadata":               {nil, "shop.example.com", ""},
		"empty host gets gateway-wide":      {[]string{"ns/b"}, "", "ns/b/*"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := ""
			if e := reg.Lookup(tt.gateways, tt.host); e != nil {
				got = e.Name
			}
			if got != tt.want {
				t.Errorf("Lookup(%v, %q) = %q, want %q", tt.gateways, tt.host, got, tt.want)
			}
		})
	}
}
