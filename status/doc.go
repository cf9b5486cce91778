// Package status writes what meshwaf observed back where Kubernetes users
// look: each WAFPolicy's status (conditions Accepted, ResolvedRefs,
// Conflicted, Programmed; effective hosts; how many agents applied the
// current version). Only the elected leader writes; every replica serves,
// and every replica reports its agents (Publisher) so that the leader
// counts the whole fleet.
//
// Desired and fleetConvergence are pure functions; Writer, Publisher and
// RunAsLeader do the I/O. It reads the snapshot and the xDS server's fleet
// view; it must not import watch or agent.
package status
