package controlplane

import (
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

func TestConfigCheck(t *testing.T) {
	files := Config{Manifests: "x", AgentTimeout: time.Second}
	kube := Config{Kube: &rest.Config{}, AgentTimeout: time.Second}
	with := func(c Config, edit func(*Config)) Config { edit(&c); return c }
	tests := map[string]struct {
		cfg     Config
		wantErr string
	}{
		"manifests":                       {files, ""},
		"kubernetes":                      {kube, ""},
		"no source":                       {Config{AgentTimeout: time.Second}, "exactly one source"},
		"two sources":                     {with(files, func(c *Config) { c.Kube = &rest.Config{} }), "exactly one source"},
		"webhook without tls":             {with(kube, func(c *Config) { c.WebhookListen = ":9443" }), "--webhook-listen needs --webhook-cert"},
		"zero agent timeout":              {with(files, func(c *Config) { c.AgentTimeout = 0 }), "--agent-timeout must be positive"},
		"client CA without a certificate": {with(files, func(c *Config) { c.ClientCA = "ca" }), "--client-ca needs them"},
		"tokens from a folder": {with(files, func(c *Config) { c.TLSCert, c.TLSKey, c.TokenAudience = "c", "k", "meshwaf" }),
			"--agent-token-audience needs the Kubernetes source"},
		"tokens without tls":            {with(kube, func(c *Config) { c.TokenAudience = "meshwaf" }), "--agent-token-audience needs"},
		"tokens on kubernetes with tls": {with(kube, func(c *Config) { c.TLSCert, c.TLSKey, c.TokenAudience = "c", "k", "meshwaf" }), ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.cfg.Check()
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}
