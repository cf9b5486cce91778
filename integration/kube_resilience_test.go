package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshwaf/meshwaf/api/v1alpha1"
	"github.com/meshwaf/meshwaf/integration/devpki"
	"github.com/meshwaf/meshwaf/integration/kube"
	"github.com/meshwaf/meshwaf/integration/stack"
)

// badRule does not compile: the regular expression is not closed.
const badRule = `  customRules: |
    SecRule ARGS "@rx (unclosed" "id:10001,phase:2,deny"
`

// With the webhook registered, a policy whose custom rule does not compile
// is refused at apply time with a message naming the directive. With the
// webhook gone, the bad version gets in, becomes Accepted=False with the
// reason, and the last good version keeps blocking.
func TestKubernetesWebhookAndInvalidPolicy(t *testing.T) {
	c := startCluster(t)
	apply(t, c, istioGateway, shopVirtualService("shop.example.com"))
	certFile, keyFile, caPEM := webhookCert(t)
	port := freeLoopbackPort(t)
	s := startKubeStack(t, c, stack.DefaultGateway,
		"--webhook-listen", fmt.Sprintf("127.0.0.1:%d", port), "--webhook-cert", certFile, "--webhook-key", keyFile)
	apply(t, c, webhookConfiguration(port, caPEM))

	apply(t, c, shopPolicy("Prevent"))
	waitStatus(t, s, sqliGET, http.StatusForbidden, kubeDeadline)
	good := waitProgrammed(t, c, "shop", 10*time.Second)

	_, err := c.Apply(kubeCtx(t), []byte(kubePolicy("shop", "networking.istio.io", "VirtualService", "shop", "shop", "Prevent", badRule)))
	if err == nil {
		t.Fatal("the webhook admitted a policy whose custom rule does not compile")
	}
	t.Logf("webhook refused: %v", err)
	for _, want := range []string{"admission webhook", "WAFPolicy shop/shop", "custom rules line 1", "@rx (unclosed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q lacks %q", err, want)
		}
	}

	// The webhook is unavailable: the bad version is stored, and reported.
	if err := c.Delete(kubeCtx(t), []byte(webhookConfiguration(port, caPEM))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "bad policy admitted without the webhook", func() error {
		_, err := c.Apply(kubeCtx(t), []byte(kubePolicy("shop", "networking.istio.io", "VirtualService", "shop", "shop", "Prevent", badRule)))
		return err
	})
	waitFor(t, 10*time.Second, "Accepted=False", func() error {
		p := policyStatus(t, c, "shop")
		accepted := condition(p, v1alpha1.ConditionAccepted)
		if accepted.Status != metav1.ConditionFalse || p.Status.ObservedGeneration != p.Generation ||
			!strings.Contains(accepted.Message, "custom rules line 1") {
			return fmt.Errorf("Accepted=%s (%s) at observed generation %d of %d",
				accepted.Status, accepted.Message, p.Status.ObservedGeneration, p.Generation)
		}
		if p.Status.Agents.PolicyVersion != good.Status.Agents.PolicyVersion {
			return fmt.Errorf("enforced version changed from %s to %s", good.Status.Agents.PolicyVersion, p.Status.Agents.PolicyVersion)
		}
		return nil
	})
	if r := send(t, s, sqliGET); r.status != http.StatusForbidden {
		t.Fatalf("after the bad version: attack got %d, want 403 from the last good version", r.status)
	}
}

// Two control plane replicas both serve; killing the one writing status
// moves status writing to the other within 20 s.
func TestKubernetesLeaderFailover(t *testing.T) {
	c := startCluster(t)
	apply(t, c, istioGateway, shopVirtualService("shop.example.com"), shopPolicy("Prevent"))

	// Replica B starts first, so it takes the Lease; the stack's replica A
	// then serves Envoy and the agent as a follower.
	b := startReplica(t, c, "replica-b")
	waitFor(t, 20*time.Second, "replica-b leading", func() error { return leaseHeldBy(t, c, "replica-b") })
	s := startKubeStack(t, c, stack.DefaultGateway)
	waitStatus(t, s, sqliGET, http.StatusForbidden, kubeDeadline)
	for name, url := range map[string]string{"replica A": s.ControlPlaneURL(), "replica B": b.url} {
		if n := hostPolicyCount(t, url); n != 1 {
			t.Fatalf("%s serves %d host policies, want 1", name, n)
		}
	}
	// The leader has no agent; the one agent is replica A's. The status
	// must count it all the same, from replica A's report.
	waitFor(t, 20*time.Second, "status written by the leader, counting replica A's agent", func() error {
		p := policyStatus(t, c, "shop")
		prog := condition(p, v1alpha1.ConditionProgrammed)
		if p.Status.ObservedGeneration != p.Generation || p.Status.Agents.Desired != 1 || p.Status.Agents.Applied != 1 ||
			prog.Status != metav1.ConditionTrue {
			return fmt.Errorf("observed generation %d of %d, agents %+v, Programmed=%s (%s); want 1 of 1 agents",
				p.Status.ObservedGeneration, p.Generation, p.Status.Agents, prog.Status, prog.Message)
		}
		return nil
	})

	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	apply(t, c, shopPolicy("Detect"))
	waitStatus(t, s, sqliGET, http.StatusOK, kubeDeadline) // replica A keeps serving
	var p v1alpha1.WAFPolicy
	waitFor(t, 20*time.Second, "status of the new generation", func() error {
		p = policyStatus(t, c, "shop")
		if p.Status.ObservedGeneration != p.Generation || p.Status.Agents.Desired != 1 || p.Status.Agents.Applied != 1 {
			return fmt.Errorf("observed generation %d of %d, agents %+v; want 1 of 1 agents",
				p.Status.ObservedGeneration, p.Generation, p.Status.Agents)
		}
		return nil
	})
	t.Logf("leader killed → status written by the other replica after %s", time.Since(killed).Round(100*time.Millisecond))
	if err := leaseHeldBy(t, c, "replica-b"); err == nil {
		t.Fatal("the killed replica still holds the Lease")
	}
}

// The API server restarts mid-run: the control plane resyncs without ever
// serving an empty configuration, and the attack stays blocked throughout.
func TestKubernetesAPIServerRestart(t *testing.T) {
	c := startCluster(t)
	apply(t, c, istioGateway, shopVirtualService("shop.example.com"), shopPolicy("Prevent"))
	s := startKubeStack(t, c, stack.DefaultGateway)
	waitStatus(t, s, sqliGET, http.StatusForbidden, kubeDeadline)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var problems []string
	var requests int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			r, err := trySend(s, sqliGET)
			n := hostPolicyCount(t, s.ControlPlaneURL())
			mu.Lock()
			requests++
			if err != nil || r.status != http.StatusForbidden {
				problems = append(problems, fmt.Sprintf("attack got %d (%v)", r.status, err))
			}
			if n != 1 {
				problems = append(problems, fmt.Sprintf("control plane served %d host policies", n))
			}
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	restartCtx, restartCancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer restartCancel()
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // long enough for every watch to break
	if err := c.StartAPIServer(restartCtx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	t.Logf("%d attacks sent across the API server restart", requests)
	if len(problems) > 0 {
		t.Fatalf("%d problems during the restart, first: %s", len(problems), problems[0])
	}

	// Watches resumed: a change made after the restart takes effect.
	apply(t, c, shopPolicy("Detect"))
	took := waitStatus(t, s, sqliGET, http.StatusOK, 15*time.Second)
	t.Logf("after the restart, an edit took %s to reach Envoy", took.Round(time.Millisecond))
}

// replica is a control plane process started outside the stack.
type replica struct {
	cmd *exec.Cmd
	url string
}

func startReplica(t *testing.T, c *kube.Cluster, identity string) *replica {
	t.Helper()
	httpPort := freeLoopbackPort(t)
	logFile, err := os.Create(filepath.Join(t.TempDir(), identity+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binaries(t).ControlPlane, "--kubeconfig", controlPlaneKubeconfig(t, c), "--namespace", leaseNamespace,
		"--identity", identity, "--listen", fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t)),
		"--http-listen", fmt.Sprintf("127.0.0.1:%d", httpPort), "--agent-cluster", stack.AgentCluster)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(logFile.Name())
			t.Logf("---- %s log\n%s", identity, out)
		}
	})
	r := &replica{cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", httpPort)}
	waitFor(t, 30*time.Second, identity+" ready", func() error {
		resp, err := http.Get(r.url + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	return r
}

// leaseHeldBy returns nil if identity holds the status-writing Lease.
func leaseHeldBy(t *testing.T, c *kube.Cluster, identity string) error {
	t.Helper()
	client, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	lease, err := client.CoordinationV1().Leases(leaseNamespace).Get(kubeCtx(t), "meshwaf-xds-status", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if holder := lease.Spec.HolderIdentity; holder == nil || *holder != identity {
		return fmt.Errorf("lease held by %v", holder)
	}
	return nil
}

// hostPolicyCount is how many host policies a control plane serves (-1 if
// it cannot say).
func hostPolicyCount(t *testing.T, controlPlaneURL string) int {
	resp, err := http.Get(controlPlaneURL + "/debug/snapshot")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var snap struct {
		HostPolicies map[string]json.RawMessage `json:"hostPolicies"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&snap) != nil {
		return -1
	}
	return len(snap.HostPolicies)
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// webhookCert makes the webhook's serving certificate for 127.0.0.1 and
// the CA bundle that verifies it.
func webhookCert(t *testing.T) (certFile, keyFile string, caPEM []byte) {
	t.Helper()
	ca, err := devpki.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Server("meshwaf-xds webhook", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if caPEM, err = os.ReadFile(ca.CAFile); err != nil {
		t.Fatal(err)
	}
	return serving.Cert, serving.Key, caPEM
}

func webhookConfiguration(port int, caPEM []byte) string {
	return fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: meshwaf-test}
webhooks:
- name: wafpolicies.waf.meshwaf.io
  clientConfig:
    url: https://127.0.0.1:%d/validate-wafpolicy
    caBundle: %s
  rules:
  - apiGroups: [waf.meshwaf.io]
    apiVersions: [v1alpha1]
    operations: [CREATE, UPDATE]
    resources: [wafpolicies]
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
  timeoutSeconds: 5
`, port, base64.StdEncoding.EncodeToString(caPEM))
}
