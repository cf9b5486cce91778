package kube

import (
	"context"
	"fmt"
	"os/exec"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Clientset returns a typed client for the admin.
func (c *Cluster) Clientset() (*kubernetes.Clientset, error) { return kubernetes.NewForConfig(c.admin) }

// EnsureNamespace creates a namespace unless it exists.
func (c *Cluster) EnsureNamespace(ctx context.Context, name string) error {
	cs, err := c.Clientset()
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// ServiceAccountConfig returns a client configuration that authenticates as
// the ServiceAccount namespace/name — creating both if missing — with a
// one-hour token from the TokenRequest API, exactly as a pod would. Use it
// to run code under test with its real RBAC, never as the admin.
func (c *Cluster) ServiceAccountConfig(ctx context.Context, namespace, name string) (*rest.Config, error) {
	cs, err := c.Clientset()
	if err != nil {
		return nil, err
	}
	if err := c.EnsureNamespace(ctx, namespace); err != nil {
		return nil, err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create service account %s/%s: %w", namespace, name, err)
	}
	expiry := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token for %s/%s: %w", namespace, name, err)
	}
	return &rest.Config{
		Host:            c.admin.Host,
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.keys.caPEM},
		QPS:             c.admin.QPS,
		Burst:           c.admin.Burst,
	}, nil
}

// Kubectl runs the cluster's kubectl as the admin and returns its combined
// output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.bins.Kubectl, append([]string{"--kubeconfig=" + c.kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %v: %w\n%s", args, err, out)
	}
	return string(out), nil
}

// PodToken returns a token of the ServiceAccount namespace/account for
// audience, bound to a pod of that account scheduled on node, as the
// kubelet projects one into a pod's volume: the API server records the pod
// and its node in the token, and a TokenReview reports the node name. The
// Node and the Pod are created as API objects only; nothing runs.
func (c *Cluster) PodToken(ctx context.Context, namespace, account, node, audience string) (string, error) {
	cs, err := c.Clientset()
	if err != nil {
		return "", err
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create node %s: %w", node, err)
	}
	pod, err := cs.CoreV1().Pods(namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: account + "-", Namespace: namespace},
		Spec: corev1.PodSpec{
			ServiceAccountName: account, NodeName: node,
			Containers: []corev1.Container{{Name: "agent", Image: "meshwaf-agent"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create pod of %s/%s on %s: %w", namespace, account, node, err)
	}
	return c.BoundToken(ctx, pod, audience, 3600)
}

// BoundToken returns a token of pod's ServiceAccount for audience (empty:
// the API server's), valid for expirySeconds and bound to pod, as the
// kubelet requests one for a projected serviceAccountToken volume.
func (c *Cluster) BoundToken(ctx context.Context, pod *corev1.Pod, audience string, expirySeconds int64) (string, error) {
	cs, err := c.Clientset()
	if err != nil {
		return "", err
	}
	account := pod.Spec.ServiceAccountName
	var audiences []string
	if audience != "" {
		audiences = []string{audience}
	}
	tr, err := cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, account, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences: audiences, ExpirationSeconds: &expirySeconds,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", pod.Namespace, account, err)
	}
	return tr.Status.Token, nil
}
