// Package store holds everything meshwaf knows about the world — gateways,
// routes and WAF policies — as immutable records in an in-memory go-memdb
// database, and tells one listener when it changed.
//
// Sources (package watch) write records; the snapshot builder reads them
// through one consistent read transaction. This is the only package that
// imports go-memdb. It must not import watch, snapshot, xds or agent.
package store
