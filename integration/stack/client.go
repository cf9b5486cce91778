package stack

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/meshwaf/meshwaf/integration/proc"

	"github.com/meshwaf/meshwaf/agentapi"
)

// httpClient is for the components' own endpoints; short timeouts keep a
// hung component from hanging a test.
var httpClient = &http.Client{Timeout: 5 * time.Second}

// waitReady polls url until it answers 200, the process exits, or the
// configured timeout passes.
func (s *Stack) waitReady(ctx context.Context, p *proc.Process, url string) error {
	s.cfg.Logf("waiting for %s (%s)", p.Name(), url)
	return p.WaitHTTP(ctx, httpClient, url, s.cfg.ReadyTimeout)
}

func get(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), err
}

// getJSON decodes the JSON answer of a GET of url into v; what names the
// endpoint in errors.
func getJSON(ctx context.Context, what, url string, v any) error {
	status, body, err := get(ctx, url)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("%s: status %d: %s", what, status, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		return fmt.Errorf("%s: %w: %s", what, err, body)
	}
	return nil
}

// EnvoyStats returns Envoy's counters and gauges whose names match the
// regular expression filter (as Envoy's /stats?filter= takes it).
// Histograms are left out.
func (s *Stack) EnvoyStats(ctx context.Context, filter string) (map[string]uint64, error) {
	return EnvoyStats(ctx, s.AdminURL(), filter)
}

// EnvoyStats reads the counters and gauges of the Envoy whose admin
// endpoint is adminURL (see Stack.EnvoyStats), for Envoys the stack did
// not start.
func EnvoyStats(ctx context.Context, adminURL, filter string) (map[string]uint64, error) {
	status, body, err := get(ctx, adminURL+"/stats?filter="+url.QueryEscape(filter))
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("envoy /stats: status %d: %s", status, body)
	}
	stats := map[string]uint64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(value, 10, 64); err == nil {
			stats[name] = n
		}
	}
	return stats, nil
}

// ECDSFilterType returns the type URL of the meshwaf.waf configuration the
// Envoy whose admin endpoint is adminURL holds (its config dump), which
// says whether it calls the agent over ext_authz or ext_proc.
func ECDSFilterType(ctx context.Context, adminURL string) (string, error) {
	status, body, err := get(ctx, adminURL+"/config_dump?resource=ecds_filters")
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("envoy /config_dump: status %d: %s", status, body)
	}
	var dump struct {
		Configs []struct {
			ECDSFilter struct {
				Name        string `json:"name"`
				TypedConfig struct {
					Type string `json:"@type"`
				} `json:"typed_config"`
			} `json:"ecds_filter"`
		} `json:"configs"`
	}
	if err := json.Unmarshal([]byte(body), &dump); err != nil {
		return "", fmt.Errorf("config dump: %w", err)
	}
	for _, c := range dump.Configs {
		if c.ECDSFilter.Name == wafFilterName {
			return c.ECDSFilter.TypedConfig.Type, nil
		}
	}
	return "", fmt.Errorf("config dump has no ecds_filter %s", wafFilterName)
}

// ECDSStatPrefix is where Envoy counts ECDS activity for the meshwaf.waf
// HTTP filter (config_reload, config_fail, config_conflict, ...).
const ECDSStatPrefix = "extension_config_discovery.http_filter." + wafFilterName + "."

// ECDSReloads is how often Envoy has applied a new meshwaf.waf
// configuration received over ECDS.
func (s *Stack) ECDSReloads(ctx context.Context) (uint64, error) {
	return ECDSReloads(ctx, s.AdminURL())
}

// ECDSReloads is how often the Envoy whose admin endpoint is adminURL has
// applied a new meshwaf.waf configuration received over ECDS.
func ECDSReloads(ctx context.Context, adminURL string) (uint64, error) {
	stats, err := EnvoyStats(ctx, adminURL, "^"+strings.ReplaceAll(ECDSStatPrefix, ".", `\.`)+"config_reload$")
	if err != nil {
		return 0, err
	}
	return stats[ECDSStatPrefix+"config_reload"], nil
}

// WaitECDSReloads waits until Envoy has applied at least n meshwaf.waf
// configurations.
func (s *Stack) WaitECDSReloads(ctx context.Context, n uint64, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		got, err := s.ECDSReloads(ctx)
		if err == nil && got >= n {
			return nil
		}
		if aliveErr := s.Alive(); aliveErr != nil {
			return aliveErr
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("envoy applied %d %s configurations, want %d within %s (last error %v); control plane log:\n%s\nenvoy log:\n%s",
				got, wafFilterName, n, timeout, err, proc.Tail(s.LogPaths().ControlPlane, 20), proc.Tail(s.LogPaths().Envoy, 20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// EnvoyCertificates returns the serial numbers (hex, lower case, no
// leading zeros) of the certificates Envoy holds that name uri among their
// subject alternative names, as its admin endpoint /certs lists them (a
// certificate loaded through SDS has no path there, only "<inline>").
func (s *Stack) EnvoyCertificates(ctx context.Context, uri string) ([]string, error) {
	certs, err := s.envoyCerts(ctx)
	if err != nil {
		return nil, err
	}
	var serials []string
	for _, c := range certs {
		for _, cert := range c.CertChain {
			for _, san := range cert.SubjectAltNames {
				if san.URI == uri {
					serials = append(serials, cert.serial())
				}
			}
		}
	}
	return serials, nil
}

// EnvoyCAs returns the serial numbers, as EnvoyCertificates does, of the CA
// certificates Envoy verifies peers with.
func (s *Stack) EnvoyCAs(ctx context.Context) ([]string, error) {
	certs, err := s.envoyCerts(ctx)
	if err != nil {
		return nil, err
	}
	var serials []string
	for _, c := range certs {
		for _, cert := range c.CACert {
			serials = append(serials, cert.serial())
		}
	}
	return serials, nil
}

// envoyCertificate is one certificate in Envoy's /certs.
type envoyCertificate struct {
	SerialNumber    string `json:"serial_number"`
	SubjectAltNames []struct {
		URI string `json:"uri"`
	} `json:"subject_alt_names"`
}

func (c envoyCertificate) serial() string {
	return strings.TrimLeft(strings.ToLower(c.SerialNumber), "0")
}

// envoyTLSContext is one TLS context in Envoy's /certs: the CA
// certificates it verifies peers with and its own certificate chain.
type envoyTLSContext struct {
	CACert    []envoyCertificate `json:"ca_cert"`
	CertChain []envoyCertificate `json:"cert_chain"`
}

// envoyCerts reads Envoy's /certs.
func (s *Stack) envoyCerts(ctx context.Context) ([]envoyTLSContext, error) {
	var certs struct {
		Certificates []envoyTLSContext `json:"certificates"`
	}
	err := getJSON(ctx, "envoy /certs", s.AdminURL()+"/certs", &certs)
	return certs.Certificates, err
}

// AgentPolicy is one entry of the agent's /debug/policies.
type AgentPolicy = agentapi.PolicyView

// AgentPolicies returns what the agent says it enforces.
func (s *Stack) AgentPolicies(ctx context.Context) ([]AgentPolicy, error) {
	if s.agentProcess() == nil {
		return nil, fmt.Errorf("agent: %w", errNotRunning)
	}
	var out struct {
		Policies []AgentPolicy `json:"policies"`
	}
	err := getJSON(ctx, "agent /debug/policies", s.AgentURL()+"/debug/policies", &out)
	return out.Policies, err
}
