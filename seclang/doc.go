// Package seclang turns a HostPolicy into the Coraza SecLang directives that
// enforce it: the Coraza recommended configuration, the OWASP CRS v4 setup
// and rules (from coraza-coreruleset's embedded filesystem), the policy's
// tuning, its exclusions and its custom rules. It also validates custom rules
// on their own, so the control plane can reject a bad manifest before any
// agent sees it.
//
// Render is deterministic and leaves out everything that identifies a policy
// (names, versions), so two hosts with the same settings render the same text
// and an agent can share one compiled WAF between them.
//
// seclang imports agentapi and Coraza only. It must not import store, watch,
// snapshot, xds or agent.
package seclang
