package bench

import "github.com/meshwaf/meshwaf/integration/bench/scenario"

// Scenario is one kind of request, sent the same way by every mode.
type Scenario = scenario.Scenario

// Scenarios are the requests every mode sends, in report order.
func Scenarios() []Scenario { return scenario.All() }

// browserHeaders are sent with every request.
var browserHeaders = scenario.BrowserHeaders
