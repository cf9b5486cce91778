// Package watch keeps the store in sync with the outside world. A Source
// reads objects — from a folder of YAML manifests, or from the Kubernetes
// API — converts them into store records and writes them in one
// transaction, after which the store signals the change.
//
// Invalid objects are reported in the log with where they came from and
// why, and the last good version of each object stays in force, so one bad
// edit never removes protection. This package must not import snapshot,
// xds, agent or controlplane (docs/architecture.md, TestImportRules).
package watch
