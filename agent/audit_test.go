package agent

import (
	"fmt"
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
