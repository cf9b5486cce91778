package main

import (
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	tests := map[string]struct {
		args    []string
		wantErr string
	}{
		"manifests only":        {[]string{"--manifests", "x"}, ""},
		"no source":             {nil, "exactly one of --manifests, --kubeconfig and --in-cluster"},
		"two sources":           {[]string{"--manifests", "x", "--in-cluster"}, "exactly one of"},
		"two Kubernetes":        {[]string{"--kubeconfig", "k", "--in-cluster"}, "exactly one of"},
		"kubeconfig":            {[]string{"--kubeconfig", "k"}, ""},
		"bad log format":        {[]string{"--manifests", "x", "--log-format", "xml"}, "--log-format must be json or text"},
		"unknown flag":          {[]string{"--manifest", "x"}, "flag provided but not defined"},
		"tokens on kubernetes":  {[]string{"--in-cluster", "--tls-cert", "c", "--tls-key", "k", "--agent-token-audience", "meshwaf"}, ""},
		"webhook flags (later)": {[]string{"--in-cluster", "--webhook-listen", ":9443"}, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, _, err := parseFlags(tc.args)
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// The service accounts reach the Config only with tokens on.
func TestParseFlagsSplitsAgentAccounts(t *testing.T) {
	c, _, err := parseFlags([]string{"--in-cluster", "--agent-token-audience", "meshwaf", "--agent-service-accounts", "a/b,c/d"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.AgentAccounts, " "); got != "a/b c/d" {
		t.Errorf("AgentAccounts = %q", got)
	}
}
