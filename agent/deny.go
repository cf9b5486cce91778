package agent

import (
	"fmt"

	"github.com/meshwaf/meshwaf/agentapi"
)

// TransactionIDHeader carries the Coraza transaction id on denials so that
// a blocked user's report can be matched to its audit line.
const TransactionIDHeader = "x-meshwaf-transaction-id"

// denial is the block response both protocols send, in neutral form.
type denial struct {
	status  int
	headers []header
	body    string
}

// denialFor builds the policy's block response for v. An empty policy body
// becomes meshwaf's JSON body carrying the transaction id. A redirecting
// rule adds its location.
func denialFor(p *agentapi.HostPolicy, v verdict) denial {
	if v.action == actionOverloaded {
		// Not the policy's block response: nothing was found to block.
		return denial{status: v.status, headers: []header{
			{"content-type", "application/json"},
			{TransactionIDHeader, v.txID},
		}, body: fmt.Sprintf(`{"error":"web application firewall overloaded","transaction_id":%q}`, v.txID)}
	}
	br := p.GetBlockResponse()
	status := v.status
	if status == 0 {
		status = int(br.GetStatus())
	}
	body, ctype := br.GetBody(), br.GetContentType()
	if body == "" {
		body = fmt.Sprintf(`{"blocked":true,"transaction_id":%q}`, v.txID)
		ctype = "application/json"
	}
	d := denial{status: status, body: body, headers: []header{
		{"content-type", ctype},
		{TransactionIDHeader, v.txID},
	}}
	if v.location != "" {
		d.headers = append(d.headers, header{"location", v.location})
	}
	return d
}
