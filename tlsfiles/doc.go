// Package tlsfiles gives gRPC transport credentials that read their
// certificates and CA bundles from files again for every connection.
//
// Kubernetes renews a mounted Secret by swapping its files in place
// (cert-manager renewing a certificate, an operator adding a new CA to a
// trust bundle before rotating to it). With these credentials the next
// connection uses what the files hold then, so neither the control plane
// nor the agents restart for a renewal or a CA rotation. Connections
// already open keep the certificates they were made with.
//
// Reading a few small files per handshake costs nothing that matters:
// connections to the control plane are long-lived streams, made once per
// agent and gateway and again after a disconnect.
package tlsfiles
