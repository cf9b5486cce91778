package stack

import (
	"slices"
	"testing"
	"testing/fstest"

	"github.com/meshwaf/meshwaf/deploy"
)

func TestAgentEnvironmentComesFromTheDaemonSet(t *testing.T) {
	env, err := AgentEnvironment()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(env, "GODEBUG=schedtrace=2147483647") {
		t.Errorf("agent environment %q lacks the DaemonSet's GODEBUG", env)
	}
	for _, e := range env {
		if e == "NODE_NAME=" {
			t.Errorf("a value taken from the pod became %q", e)
		}
	}
}

func TestAgentEnvironmentNeedsTheAgentContainer(t *testing.T) {
	files := fstest.MapFS{deploy.AgentDaemonSet: {Data: []byte("kind: Service\n---\nkind: DaemonSet\nspec: {}\n")}}
	if _, err := agentEnvironment(files); err == nil {
		t.Error("a manifest without the agent container gave an environment")
	}
}
