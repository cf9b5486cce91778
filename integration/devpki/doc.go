// Package devpki makes a throwaway certificate authority and the
// certificates meshwaf's parts need to speak mutual TLS: the control
// plane's serving certificate, one client certificate per agent (URI SAN
// spiffe://<domain>/agent/<node>) and one for gateways. It is for
// `make demo`, tests and trying meshwaf out; production certificates come
// from the cluster's own PKI (cert-manager, Istio's CA, SPIFFE).
//
// It imports only the standard library.
package devpki
