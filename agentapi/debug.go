package agentapi

// PolicyView is one row of an agent's GET /debug/policies
// (docs/architecture.md): a host policy the agent enforces, by resource
// name. The agent writes it and the test harness reads it.
type PolicyView struct {
	Name          string `json:"name"`
	Gateway       string `json:"gateway"`
	Host          string `json:"host"`
	Policy        string `json:"policy"`
	PolicyVersion string `json:"policyVersion"`
	Mode          string `json:"mode"`
}
