package stack

import (
	"bytes"
	"fmt"
	"io/fs"

	"sigs.k8s.io/yaml"

	"github.com/meshwaf/meshwaf/deploy"
)

// AgentEnvironment is the environment the agent's DaemonSet gives its
// container, as NAME=value pairs: the plain values only (not those taken
// from the pod, such as NODE_NAME). The stack starts the agent with it, so
// that tests and benchmarks run the agent as it is deployed; the bench
// gives its in-process baseline the same.
func AgentEnvironment() ([]string, error) {
	return agentEnvironment(deploy.FS)
}

func agentEnvironment(files fs.FS) ([]string, error) {
	raw, err := fs.ReadFile(files, deploy.AgentDaemonSet)
	if err != nil {
		return nil, err
	}
	type container struct {
		Name string `json:"name"`
		Env  []struct {
			Name      string `json:"name"`
			Value     string `json:"value"`
			ValueFrom any    `json:"valueFrom"`
		} `json:"env"`
	}
	for _, doc := range bytes.Split(raw, []byte("\n---")) {
		var obj struct {
			Kind string `json:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []container `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("%s: %w", deploy.AgentDaemonSet, err)
		}
		if obj.Kind != "DaemonSet" {
			continue
		}
		for _, c := range obj.Spec.Template.Spec.Containers {
			if c.Name != "agent" {
				continue
			}
			var env []string
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					env = append(env, e.Name+"="+e.Value)
				}
			}
			return env, nil
		}
	}
	return nil, fmt.Errorf("%s has no DaemonSet with a container named agent", deploy.AgentDaemonSet)
}
