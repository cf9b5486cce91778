// Package kube is a test harness that runs a real Kubernetes control plane —
// etcd and kube-apiserver, nothing else — on loopback, for tests that must
// prove behaviour against the real API rather than a fake clientset.
//
// Start brings up etcd and kube-apiserver in a temporary directory, installs
// the CRDs meshwaf watches (its own WAFPolicy from deploy/crds, Istio's
// Gateway and VirtualService from the istio.io/api module, Gateway API's
// from the sigs.k8s.io/gateway-api module) and hands back an admin
// *rest.Config. The API server can be stopped and restarted on the same
// address while etcd keeps the data, which is how tests simulate an API
// server outage.
//
// The binaries come from scripts/install-kube.sh (built from the Go module
// proxy, cached by version); when they are missing the harness runs the
// script and fails the test if that fails: a Kubernetes test never skips.
//
// There is no controller manager, scheduler or kubelet: Deployments make no
// Pods, and a deleted namespace stays Terminating forever, so tests use a
// fresh namespace each instead of deleting and reusing one.
//
// Only loopback is reachable: Services get ClusterIPs from 10.0.0.0/24 but
// nothing routes them, and a test must never make the API server dial one.
// So a test's ValidatingWebhookConfiguration uses clientConfig.url
// (https://127.0.0.1:<port>/validate-wafpolicy, caBundle from the test's own
// CA), never clientConfig.service; deploy/kubernetes/40-webhook.yaml is only
// ever dry-run here.
//
// WAFPolicy and Programmed read a policy's status as tests assert on it;
// they are why the harness imports api/v1alpha1, the WAFPolicy types.
//
// It is imported only by tests; it must not import meshwaf's runtime
// packages (watch, snapshot, xds, agent), so that their tests can use it.
package kube
