// Package conformance runs the OWASP CRS v4 regression suite (the tests
// embedded in github.com/corazawaf/coraza-coreruleset/v4/tests) against a
// real meshwaf stack: every test request goes from go-ftw through a real
// Envoy to a real agent and on to the CRS reference backend (albedo), once
// with the gateway using ext_authz and once using ext_proc.
//
// How results are judged. Most CRS tests expect rule ids in the WAF's log.
// go-ftw finds the log lines of one test between two marker requests that
// carry an X-CRS-Test header. The suite's policy has a custom rule that
// matches that header and logs its value, so each marker becomes an agent
// audit line containing it, and go-ftw's JSON id matcher reads the rule ids
// ("rules":[{"id":942100,…}]) of the audit lines in between. The agent's
// audit log, unchanged, is the WAF log go-ftw reads; the rest (status,
// response and log checks, retries) is go-ftw's own runner, driven one test
// case at a time so that one broken connection fails one test, not the run.
//
// The policy configures the CRS as the suite expects (Detect, paranoia
// level 4, the suite's tx settings); see policy_test.go.
//
// ignored.yaml lists, with a reason each, the tests meshwaf does not pass as
// written: ignored ones (still run, and the run fails if one starts to
// pass) and a few run with an adjusted expectation. The run fails on any
// other failure, on an entry naming a test the suite lacks, when Envoy's
// counters show the other protocol was used, and when Envoy cannot be found
// (it never skips). With -report (make conformance) it writes
// docs/reports/conformance.md.
//
// The package has only tests; it talks to meshwaf through integration/stack.
package conformance
