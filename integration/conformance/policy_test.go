package conformance

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshwaf/meshwaf/integration/fixtures"
)

// protocol is the Envoy filter the gateway uses to reach the agent. meshwaf
// has no switch for it: the control plane chooses ext_proc for a gateway as
// soon as one of its policies inspects responses, so each protocol gets the
// same policy with only responseBody.inspect differing.
type protocol string

const (
	extAuthz protocol = "ext_authz"
	extProc  protocol = "ext_proc"
)

// markerHeader is the header go-ftw puts on its marker requests.
const markerHeader = "X-CRS-Test"

// gatewayManifest is an Istio ingress gateway serving every host, because
// the CRS tests send all sorts of Host headers (and none at all).
var gatewayManifest = fixtures.IstioGateway("*/*")

// crsTestRules configure the CRS the way its regression suite expects
// (coreruleset tests/regression/README, "Requirements": rule 900005 there),
// through the only door a WAFPolicy has, custom rules:
//
//   - Detect mode and paranoia level 4 are policy fields (the README's
//     ctl:ruleEngine=DetectionOnly and tx.blocking_paranoia_level=4).
//   - The tx limits are set by a SecAction. Custom rules are rendered after
//     the CRS, so the action runs at the end of phase 1: in time for the
//     phase-2 rules reading these variables, too late for 920400, the one
//     phase-1 rule that does (see ignored.yaml).
//   - The marker rule logs the X-CRS-Test value, which puts the marker into
//     the agent's audit line, and switches the CRS off for the rest of the
//     marker request as the README's 999999 does. Its id and the SecAction's
//     lie outside the ranges reserved for the CRS and meshwaf.
const crsTestRules = `SecAction "id:1900005,phase:1,pass,nolog,t:none,\
  setvar:tx.crs_validate_utf8_encoding=1,\
  setvar:tx.arg_name_length=100,\
  setvar:tx.arg_length=400,\
  setvar:tx.total_arg_length=64000,\
  setvar:tx.max_num_args=255,\
  setvar:tx.max_file_size=64100,\
  setvar:tx.combined_file_sizes=65535"
SecRule REQUEST_HEADERS:` + markerHeader + ` "@rx ^.*$" \
  "id:1999999,phase:1,pass,t:none,log,msg:'` + markerHeader + ` %{MATCHED_VAR}',ctl:ruleRemoveById=1-999999"
`

// policyManifest is the WAFPolicy of the suite for one protocol.
func policyManifest(p protocol) string {
	inspectResponses := p == extProc
	return fmt.Sprintf(`apiVersion: waf.meshwaf.io/v1alpha1
kind: WAFPolicy
metadata:
  name: crs-regression
  namespace: istio-ingress
spec:
  targetRefs:
  - {group: networking.istio.io, kind: Gateway, name: public}
  mode: Detect
  failureMode: Closed
  crs:
    paranoiaLevel: 4
  responseBody:
    inspect: %t
  audit:
    log: Detected
  customRules: |
%s`, inspectResponses, indent(crsTestRules, "    "))
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}

// writeManifests writes the gateway and the policy for p into a new
// directory owned by t.
func writeManifests(t *testing.T, p protocol) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "manifests")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"gateway.yaml":   gatewayManifest,
		"wafpolicy.yaml": policyManifest(p),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
