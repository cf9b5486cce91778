// Package snapshot translates what the store holds into what meshwaf
// serves: per gateway, the ECDS configuration of the meshwaf.waf filter;
// per (gateway, host), the HostPolicy agents enforce; per WAFPolicy, the
// status users see.
//
// Build is a pure function of one store read transaction and a Config: no
// I/O, no clocks, no randomness, so equal inputs give byte-equal output and
// the same Version. It must not import watch, xds, agent, client-go or any
// gRPC server code.
package snapshot
