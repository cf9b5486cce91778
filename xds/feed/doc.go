// Package feed serves one resource type to many subscribers over Envoy's
// delta xDS protocol, built for a fleet: every agent of a cluster gets the
// same resources, so the work of a change is done once, not once per agent.
//
// A Feed holds immutable generations of named resources. Publishing a new
// generation records which names changed; a subscriber that holds
// generation N is brought to the newest one by one response listing what
// changed since N, and that response is encoded once and shared, byte for
// byte, by every subscriber that held N (see codec.go). Per subscriber the
// feed keeps a few numbers, never a map of resource versions, so memory
// does not grow with fleet size times resource count.
//
// Each stream has at most one response in flight: the next is sent only
// after the subscriber ACKs or NACKs, and it carries everything that
// changed meanwhile. A slow subscriber therefore gets fewer, larger
// updates instead of a growing queue, and a stuck one holds nothing but a
// reference to a shared response.
//
// feed imports gRPC, protobuf and Envoy's discovery protos; it knows
// nothing of meshwaf's own types and must not import other meshwaf
// packages.
package feed
