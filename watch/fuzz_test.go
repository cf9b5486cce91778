package watch

import (
	"testing"
)

// FuzzDecode feeds arbitrary manifests through the YAML split, the head
// decode and the record conversion: bad input must become an error, never
// a panic, and accepted policies must have passed validation.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(gatewayYAML))
	f.Add([]byte(policyYAML("Prevent")))
	f.Add([]byte("apiVersion: waf.meshwaf.io/v1alpha1\nkind: WAFPolicy\nmetadata: {name: x}\nspec: {targetRefs: [{kind: Gateway, name: g}], hosts: [\"*.a\"]}\n"))
	f.Add([]byte("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec: {parentRefs: [{name: g}], hostnames: [A.B]}\n"))
	f.Add([]byte(servicesYAML))
	f.Add([]byte("---\n---\n# only a comment\n"))
	f.Fuzz(func(t *testing.T, content []byte) {
		docs, err := splitDocuments(content)
		if err != nil {
			return
		}
		for _, doc := range docs {
			ref, known, err := decodeHead(doc)
			if err != nil || !known {
				continue
			}
			record, err := decode(ref, doc, rejectBadRules)
			if err != nil {
				continue
			}
			if record == nil {
				t.Fatalf("%s decoded to nil without an error", ref)
			}
		}
	})
}
