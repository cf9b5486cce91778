// Package rebuild runs the control plane's pipeline: it waits until every
// source has synced, then rebuilds the snapshot from one store read
// transaction whenever the store changes — debounced, so a burst of edits
// becomes one push — and hands it to the publisher (the xDS server) only if
// its version changed.
//
// It imports store and snapshot; it must not import watch, xds or agent.
package rebuild
