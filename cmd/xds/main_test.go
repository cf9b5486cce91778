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
		"manifests only":      {[]string{"--manifests", "x"}, ""},
		"no source":           {nil, "exactly one of --manifests, --kubeconfig and --in-cluster"},
		"two sources":         {[]string{"--manifests", "x", "--in-cluster"}, "exactly one of"},
		"kubeconfig":          {[]string{"--kubeconfig", "k"}, ""},
		"webhook without tls": {[]string{"--in-cluster", "--webhook-listen", ":9443"}, "--webhook-listen needs --webhook-cert"},
		"bad log format":      {[]string{"--manifests", "x", "--log-format", "xml"}, "--log-format must be json or text"},
		"zero agent timeout":  {[]string{"--manifests", "x", "--agent-timeout", "0s"}, "--agent-timeout must be positive"},
		"unknown flag":        {[]string{"--manifest", "x"}, "flag provided but not defined"},
		"tokens from a folder": {[]string{"--manifests", "x", "--tls-cert", "c", "--tls-key", "k", "--agent-token-audience", "meshwaf"},
			"--agent-token-audience needs the Kubernetes source"},
		"tokens without tls":            {[]string{"--in-cluster", "--agent-token-audience", "meshwaf"}, "--agent-token-audience needs"},
		"tokens on kubernetes with tls": {[]string{"--in-cluster", "--tls-cert", "c", "--tls-key", "k", "--agent-token-audience", "meshwaf"}, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parseFlags(tc.args)
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}
