package xds

import (
	"maps"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/meshwaf/meshwaf/snapshot"
)

// Istio proxies describe themselves with these node.metadata fields.
const (
	metadataNamespace = "NAMESPACE"
	metadataLabels    = "LABELS"
)

// nodeOf reads the gateway identity of an Envoy node from its metadata.
func nodeOf(n *corev3.Node) snapshot.Node {
	fields := n.GetMetadata().GetFields()
	node := snapshot.Node{
		Namespace: fields[metadataNamespace].GetStringValue(),
		Labels:    map[string]string{},
	}
	for k, v := range fields[metadataLabels].GetStructValue().GetFields() {
		node.Labels[k] = v.GetStringValue()
	}
	return node
}

// nodeKey groups Envoy nodes that must get the same filter configuration:
// all replicas of one gateway deployment share namespace and labels.
func nodeKey(n *corev3.Node) string {
	node := nodeOf(n)
	var b strings.Builder
	b.WriteString(node.Namespace)
	for _, k := range slices.Sorted(maps.Keys(node.Labels)) {
		b.WriteString("|" + k + "=" + node.Labels[k])
	}
	return b.String()
}

// nodeHasher keys the ECDS cache by nodeKey.
type nodeHasher struct{}

func (nodeHasher) ID(n *corev3.Node) string { return nodeKey(n) }
