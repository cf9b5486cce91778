// Package proc starts the test harnesses' child programs (Envoy, the
// control plane and agent binaries, etcd, kube-apiserver, istiod,
// pilot-agent), each logging to a file, in a process group of its own that
// dies with the test binary, and stops them.
//
// proc imports only the standard library.
package proc
