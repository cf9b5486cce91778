package tune

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
)

// Write reports what lines found and proposes the exclusions, as YAML a
// user can review and apply: the findings and the projected effect as
// comments, then per policy either the whole WAFPolicy with the new
// exclusions after its own (when specs has it, read from the manifests),
// or the exclusions to add to its spec.exclusions.
func Write(w io.Writer, lines []Line, specs map[string]v1alpha1.WAFPolicySpec) error {
	findings := Findings(lines)
	var b strings.Builder
	fmt.Fprintf(&b, "# meshwaf tune: %d findings in %d audit lines\n", len(findings), len(lines))
	if len(findings) == 0 {
		b.WriteString("# nothing to exclude: no rule matched a request variable\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	thresholds := map[string]int{}
	for name, spec := range specs {
		thresholds[name] = int(spec.WithDefaults().CRS.InboundAnomalyThreshold)
	}
	var policies []string
	for _, f := range findings {
		if !slices.Contains(policies, f.Policy) {
			policies = append(policies, f.Policy)
		}
	}
	for _, name := range policies {
		var mine []Finding
		for _, f := range findings {
			if f.Policy == name {
				mine = append(mine, f)
			}
		}
		fmt.Fprintf(&b, "#\n# policy %s:\n", name)
		for _, f := range mine {
			fmt.Fprintf(&b, "#   %d lines (%d blocked): rule %d at %s in %s: %s\n", f.Lines, f.Blocked, f.RuleID, f.Path, f.Target, f.Msg)
		}
		var linesOfPolicy []Line
		for _, l := range lines {
			if l.Policy == name {
				linesOfPolicy = append(linesOfPolicy, l)
			}
		}
		rep := Project(linesOfPolicy, mine, thresholds)
		fmt.Fprintf(&b, "# with these exclusions, replaying the log: %d of %d blocked requests still blocked, %d of %d detections left\n",
			rep.StillBlocked, rep.Blocked, rep.StillDetected, rep.Detected)
		exclusions := Exclusions(mine)
		doc, err := policyDocument(name, exclusions, specs)
		if err != nil {
			return err
		}
		b.WriteString("---\n")
		b.Write(doc)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// policyDocument is the WAFPolicy name with exclusions added to its spec
// when specs has it, else a fragment with only the exclusions to add.
func policyDocument(name string, exclusions []v1alpha1.Exclusion, specs map[string]v1alpha1.WAFPolicySpec) ([]byte, error) {
	spec, known := specs[name]
	if !known {
		frag, err := yaml.Marshal(map[string]any{"spec": map[string]any{"exclusions": exclusions}})
		if err != nil {
			return nil, err
		}
		return append([]byte("# add to the spec.exclusions of WAFPolicy "+name+" (not in the manifests given with -f):\n"), frag...), nil
	}
	namespace, policy, _ := strings.Cut(name, "/")
	spec.Exclusions = append(slices.Clone(spec.Exclusions), exclusions...)
	return yaml.Marshal(map[string]any{
		"apiVersion": v1alpha1.SchemeGroupVersion.String(), "kind": v1alpha1.Kind,
		"metadata": map[string]string{"name": policy, "namespace": namespace},
		"spec":     spec,
	})
}
