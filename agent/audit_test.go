package agent

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/meshwaf/meshwaf/agentapi"
)

func TestShouldAudit(t *testing.T) {
	type want struct{ blocked, detected, allowed bool }
	tests := map[string]struct {
		level agentapi.AuditLevel
		want  want
	}{
		"unspecified means detected": {agentapi.AuditLevel_AUDIT_LEVEL_UNSPECIFIED, want{true, true, false}},
		"blocked":                    {agentapi.AuditLevel_AUDIT_LEVEL_BLOCKED, want{true, false, false}},
		"detected":                   {agentapi.AuditLevel_AUDIT_LEVEL_DETECTED, want{true, true, false}},
		"all":                        {agentapi.AuditLevel_AUDIT_LEVEL_ALL, want{true, true, true}},
		"none":                       {agentapi.AuditLevel_AUDIT_LEVEL_NONE, want{false, false, false}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := want{
				shouldAudit(tt.level, actionBlocked),
				shouldAudit(tt.level, actionDetected),
				shouldAudit(tt.level, actionAllowed),
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAuditLogLinesDoNotInterleave(t *testing.T) {
	buf := &syncBuffer{}
	log := NewAuditLog(buf)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			rec := &AuditRecord{TransactionID: fmt.Sprint(i), Rules: []AuditRule{{ID: 942100, Msg: "SQL Injection Attack Detected via libinjection"}}}
			if err := log.Write(rec); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := len(buf.records(t)); n != 50 {
		t.Errorf("lines = %d, want 50", n)
	}
}

// On a workload's inbound side the audit line names the calling workload by
// the identity Envoy took from its mTLS certificate (ext_authz's
// source.principal), and says nothing of it when there is none.
func TestAuditLineNamesTheCallingWorkload(t *testing.T) {
	const workload = "shop/service:api" // the identity the snapshot gives a Service
	const caller = "spiffe://cluster.local/ns/shop/sa/client"
	tests := map[string]struct {
		principal string
		want      string // "" means the key is absent
	}{
		"mTLS peer":           {caller, caller},
		"no peer certificate": {"", ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			srv, audit := newTestAuthz(t, testPolicy(workload, agentapi.GatewayWide))
			req := httpCheck("GET", "api.shop.svc.cluster.local:8080", sqliPath, nil, "")
			req.Attributes.Source.Principal = tt.principal
			resp, err := srv.Check(gatewayCtx(workload), req)
			if err != nil {
				t.Fatal(err)
			}
			if got := verdictOf(t, resp); got != 403 {
				t.Fatalf("status = %d, want 403 from the workload-wide policy", got)
			}
			recs := audit.records(t)
			if len(recs) != 1 {
				t.Fatalf("audit = %+v", recs)
			}
			if rec := recs[0]; rec.SourcePrincipal != tt.want || rec.Gateway != workload || rec.Client != "127.0.0.1" {
				t.Errorf("audit record = %+v, want source_principal %q", rec, tt.want)
			}
			audit.mu.Lock()
			line := audit.buf.String()
			audit.mu.Unlock()
			if present := strings.Contains(line, `"source_principal":`); present != (tt.want != "") {
				t.Errorf("audit line %s: source_principal present = %v, want %v", line, present, !present)
			}
		})
	}
}
