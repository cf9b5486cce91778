// Package tune reads the agent's audit log and proposes the narrowest
// WAFPolicy exclusions for what it found: one exclusion per rule, request
// path and matched variable, so that excluding a false positive on one
// form field at one path leaves the rule watching everything else. It also
// projects what the log would have looked like with the exclusions, from
// the excluded rules' anomaly scores. meshwaf tune runs it.
//
// It imports api/v1alpha1 only; the audit line's format is the one
// docs/architecture.md describes.
package tune
