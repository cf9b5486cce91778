package stack

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/meshwaf/meshwaf/deploy"
	"github.com/meshwaf/meshwaf/integration/freeport"
	"github.com/meshwaf/meshwaf/integration/proc"
)

// Stack is a running meshwaf installation. Its methods are safe to call from
// several goroutines, except Stop, which must be called once.
type Stack struct {
	cfg     Config
	runDir  string
	ports   Ports
	backend *backend
	envoy   *proc.Process

	pki *PKI
	// procMu guards xds and agent, the processes a test may stop and start
	// again while the stack runs (KillControlPlane, KillAgent and the
	// restarts) as other goroutines send traffic and call PIDs or Alive.
	procMu sync.Mutex
	xds    *proc.Process // nil with EnvoyOnly and while stopped
	agent  *proc.Process // nil with EnvoyOnly and while stopped
}

// Start runs every component and returns once all are ready and, unless
// EnvoyOnly, Envoy has received its first meshwaf.waf configuration. On
// error, whatever was started is stopped again.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	cfg = cfg.withDefaults()
	if cfg.Manifests == "" && cfg.Kubeconfig == "" && !cfg.EnvoyOnly {
		return nil, errors.New("stack: Config.Manifests or Config.Kubeconfig is required")
	}
	s := &Stack{cfg: cfg}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Stop())
		}
	}()
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	if s.backend, err = startBackend(net.JoinHostPort(cmp.Or(cfg.PodIP, "127.0.0.1"), strconv.Itoa(s.ports.Backend)), cfg.Backend); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	if !cfg.EnvoyOnly {
		if err := s.startMeshwaf(ctx); err != nil {
			return nil, err
		}
	}
	if cfg.NoEnvoy {
		cfg.Logf("stack ready without Envoy, run dir %s", s.runDir)
		return s, nil
	}
	if err := s.startEnvoy(ctx); err != nil {
		return nil, err
	}
	if !cfg.EnvoyOnly {
		cfg.Logf("waiting for Envoy to receive %s over ECDS", wafFilterName)
		if err := s.WaitECDSReloads(ctx, 1, cfg.ReadyTimeout); err != nil {
			return nil, err
		}
	}
	cfg.Logf("stack ready: gateway %s, run dir %s", s.GatewayURL(), s.runDir)
	return s, nil
}

// prepare resolves paths and ports, creates the run directory and finds or
// builds every binary, so that failures happen before anything runs.
func (s *Stack) prepare(ctx context.Context) error {
	cfg := &s.cfg
	if cfg.RepoRoot == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		if cfg.RepoRoot, err = RepoRoot(wd); err != nil {
			return err
		}
	}
	if cfg.Manifests != "" {
		abs, err := filepath.Abs(cfg.Manifests)
		if err != nil {
			return err
		}
		cfg.Manifests = abs
	}
	s.runDir = cfg.RunDir
	if s.runDir == "" {
		dir, err := os.MkdirTemp("", "meshwaf-stack-")
		if err != nil {
			return err
		}
		s.runDir = dir
	} else if err := os.MkdirAll(s.runDir, 0o755); err != nil {
		return err
	}
	var err error
	if s.ports, err = fillPorts(cfg.Ports); err != nil {
		return err
	}
	if cfg.EnvoyPath, err = FindEnvoy(ctx, cfg.RepoRoot, cfg.EnvoyPath); err != nil {
		return fmt.Errorf("envoy is required (set MESHWAF_ENVOY or fix scripts/install-envoy.sh): %w", err)
	}
	if s.pki, err = newPKI(pkiDir(s.runDir), cfg.NodeID); err != nil {
		return err
	}
	if cfg.Binaries == nil && !cfg.EnvoyOnly {
		cfg.Logf("building cmd/xds and cmd/agent")
		bins, err := Build(ctx, cfg.RepoRoot, filepath.Join(s.runDir, "bin"))
		if err != nil {
			return err
		}
		cfg.Binaries = &bins
	}
	return nil
}

func (s *Stack) startMeshwaf(ctx context.Context) error {
	if err := s.startControlPlane(ctx); err != nil {
		return err
	}
	return s.startAgent(ctx)
}

// startAgent runs the agent and waits for its readiness (its first
// policies compiled). Like the control plane's, its arguments depend only
// on the configuration and the ports.
func (s *Stack) startAgent(ctx context.Context) error {
	cfg, p := s.cfg, s.ports
	env, err := AgentEnvironment()
	if err != nil {
		return err
	}
	args := append(s.pki.agentTLSArgs(cfg.AgentTokenFile),
		"--xds-address", freeport.Addr(p.XDS),
		"--listen", net.JoinHostPort(cmp.Or(cfg.PodIP, "127.0.0.1"), strconv.Itoa(p.Agent)),
		"--http-listen", freeport.Addr(p.AgentHTTP),
		"--node-id", cfg.NodeID,
		"--audit-log", s.LogPaths().Audit,
		"--drain-delay", cfg.AgentDrainDelay.String(),
		"--log-format", "json")
	if cfg.InspectionWorkers > 0 {
		args = append(args, "--inspection-workers", strconv.Itoa(cfg.InspectionWorkers))
	}
	agent, err := proc.Start("agent", s.LogPaths().Agent, cfg.Binaries.Agent, proc.Options{Env: env}, args...)
	if err != nil {
		return err
	}
	s.procMu.Lock()
	s.agent = agent
	s.procMu.Unlock()
	return s.waitReady(ctx, agent, s.AgentURL()+"/readyz")
}

// startControlPlane runs the control plane and waits for its readiness. Its
// arguments depend only on the configuration and the ports, so a restart
// gets exactly the flags and addresses of the first start.
func (s *Stack) startControlPlane(ctx context.Context) error {
	cfg, p := s.cfg, s.ports
	source := []string{"--manifests", cfg.Manifests}
	if cfg.Kubeconfig != "" {
		source = append([]string{"--kubeconfig", cfg.Kubeconfig}, cfg.ControlPlaneArgs...)
	}
	if cfg.AgentTimeout > 0 {
		source = append(source, "--agent-timeout", cfg.AgentTimeout.String())
	}
	source = append(source, s.pki.controlPlaneTLSArgs()...)
	xds, err := proc.Start("control plane", s.LogPaths().ControlPlane, cfg.Binaries.ControlPlane, proc.Options{},
		append(source,
			"--listen", freeport.Addr(p.XDS),
			"--http-listen", freeport.Addr(p.XDSHTTP),
			"--agent-cluster", cmp.Or(cfg.AgentCluster, AgentCluster),
			"--log-format", "json")...)
	if err != nil {
		return err
	}
	// Recorded before waiting, so that Stop ends a control plane that
	// never became ready.
	s.procMu.Lock()
	s.xds = xds
	s.procMu.Unlock()
	return s.waitReady(ctx, xds, s.ControlPlaneURL()+"/readyz")
}

// controlPlane is the running control plane process, nil if there is none.
func (s *Stack) controlPlane() *proc.Process { return s.running(&s.xds) }

// agentProcess is the running agent, nil if there is none.
func (s *Stack) agentProcess() *proc.Process { return s.running(&s.agent) }

func (s *Stack) running(p **proc.Process) *proc.Process {
	s.procMu.Lock()
	defer s.procMu.Unlock()
	return *p
}

// take removes a running process from the stack, for a test to stop it. A
// process that had already exited on its own is reported as an error
// rather than silently "stopped".
func (s *Stack) take(p **proc.Process, what string) (*proc.Process, error) {
	s.procMu.Lock()
	q := *p
	*p = nil
	s.procMu.Unlock()
	if q == nil {
		return nil, fmt.Errorf("%s: %w", what, errNotRunning)
	}
	if err := q.Exited(); err != nil {
		return nil, err
	}
	return q, nil
}

// KillControlPlane ends the control plane with SIGKILL, as the OOM killer or
// a lost node does: no graceful stream shutdown, no last words in its log.
// Envoy and the agent only see their connections reset, which is the
// failure they must ride out with their last configuration. Until
// RestartControlPlane, PIDs reports 0 for the control plane and Alive does
// not count it as a crash.
func (s *Stack) KillControlPlane() error {
	p, err := s.take(&s.xds, "kill control plane")
	if err != nil {
		return err
	}
	p.Kill()
	return nil
}

// KillAgent ends the agent with SIGKILL, as a crash or the OOM killer
// does: Envoy's ext_authz calls fail at once, and the gateway answers by
// the policy's failure mode. Until RestartAgent, PIDs reports 0 for the
// agent and Alive does not count it as a crash.
func (s *Stack) KillAgent() error {
	p, err := s.take(&s.agent, "kill agent")
	if err != nil {
		return err
	}
	p.Kill()
	return nil
}

// TerminateAgent sends the agent SIGTERM, as the kubelet does in a rolling
// update, and waits up to grace for it to exit on its own.
func (s *Stack) TerminateAgent(grace time.Duration) error {
	p, err := s.take(&s.agent, "terminate agent")
	if err != nil {
		return err
	}
	return p.Stop(grace)
}

// RestartAgent starts the agent again after KillAgent or TerminateAgent,
// with the same flags on the same ports, and returns once it is ready.
func (s *Stack) RestartAgent(ctx context.Context) error {
	if s.cfg.EnvoyOnly {
		return errors.New("restart agent: the stack runs EnvoyOnly")
	}
	if p := s.agentProcess(); p != nil {
		return fmt.Errorf("restart agent: pid %d is still running", p.PID())
	}
	s.cfg.Logf("restarting the agent on %s", freeport.Addr(s.ports.Agent))
	return s.startAgent(ctx)
}

// RestartControlPlane starts the control plane again after
// KillControlPlane, with the same flags on the same ports, so Envoy's
// static meshwaf_xds cluster and the agent's --xds-address reach it without
// being told, as they would reach a restarted pod behind its Service. It
// returns once the new process is ready (it has built its first snapshot);
// Envoy and the agent reconnect on their own backoff schedules.
func (s *Stack) RestartControlPlane(ctx context.Context) error {
	if s.cfg.EnvoyOnly {
		return errors.New("restart control plane: the stack runs EnvoyOnly")
	}
	if p := s.controlPlane(); p != nil {
		return fmt.Errorf("restart control plane: pid %d is still running", p.PID())
	}
	s.cfg.Logf("restarting the control plane on %s", freeport.Addr(s.ports.XDS))
	return s.startControlPlane(ctx)
}

func (s *Stack) startEnvoy(ctx context.Context) error {
	cfg := s.cfg
	conf, err := buildEnvoyConfig(deploy.FS, bootstrapParams{Gateway: cfg.Gateway, Ports: s.ports,
		AcceptHTTP10: cfg.AcceptHTTP10, PKI: s.pki, SDSDir: s.runDir})
	if err != nil {
		return err
	}
	for path, content := range conf.SDSFiles {
		if err := os.WriteFile(path, content, 0o644); err != nil {
			return err
		}
	}
	bootPath := filepath.Join(s.runDir, "envoy-bootstrap.json")
	if err := os.WriteFile(bootPath, conf.Bootstrap, 0o644); err != nil {
		return err
	}
	// Kept on disk only for people reading a failed run; Envoy gets the
	// override on the command line, as pilot-agent passes it.
	if err := os.WriteFile(filepath.Join(s.runDir, "envoy-override.json"), conf.Override, 0o644); err != nil {
		return err
	}
	cfg.Logf("starting envoy as gateway %s{%s}", cfg.Gateway.Namespace, labelString(cfg.Gateway.Labels))
	s.envoy, err = proc.Start("envoy", s.LogPaths().Envoy, cfg.EnvoyPath, proc.Options{},
		"-c", bootPath,
		"--config-yaml", string(conf.Override),
		// Several stacks (parallel tests) must not share hot-restart
		// shared memory.
		"--disable-hot-restart",
		"--concurrency", "1",
		"--drain-time-s", "1",
		"--drain-strategy", "immediate",
		"--local-address-ip-version", "v4",
		"--log-level", "info")
	if err != nil {
		return err
	}
	return s.waitReady(ctx, s.envoy, s.AdminURL()+"/ready")
}

// Stop terminates every process (SIGTERM, then SIGKILL after a grace
// period) and the backend, and removes a temporary run directory.
func (s *Stack) Stop() error {
	var errs []error
	// Envoy first, so no request reaches an agent that is going away.
	for _, p := range []*proc.Process{s.envoy, s.agentProcess(), s.controlPlane()} {
		if p != nil {
			errs = append(errs, p.Stop(5*time.Second+s.cfg.AgentDrainDelay))
		}
	}
	if s.backend != nil {
		errs = append(errs, s.backend.close())
	}
	if s.cfg.RunDir == "" && s.runDir != "" && !s.cfg.KeepRunDir {
		errs = append(errs, os.RemoveAll(s.runDir))
	}
	return errors.Join(errs...)
}

// ControlPlaneAddress is the control plane's gRPC address (host:port).
func (s *Stack) ControlPlaneAddress() string { return freeport.Addr(s.ports.XDS) }

// GatewayURL is the base URL of the gateway listener.
func (s *Stack) GatewayURL() string { return "http://" + freeport.Addr(s.ports.Gateway) }

// AdminURL is the base URL of Envoy's admin interface.
func (s *Stack) AdminURL() string { return "http://" + freeport.Addr(s.ports.EnvoyAdmin) }

// ControlPlaneURL is the base URL of the control plane's HTTP endpoints.
func (s *Stack) ControlPlaneURL() string { return "http://" + freeport.Addr(s.ports.XDSHTTP) }

// AgentURL is the base URL of the agent's HTTP endpoints.
func (s *Stack) AgentURL() string { return "http://" + freeport.Addr(s.ports.AgentHTTP) }

// Ports returns the ports in use.
func (s *Stack) Ports() Ports { return s.ports }

// RunDir is where logs and generated configuration are.
func (s *Stack) RunDir() string { return s.runDir }

// PIDs of the running processes; zero for one not started or killed.
type PIDs struct{ ControlPlane, Agent, Envoy int }

func (s *Stack) PIDs() PIDs {
	pid := func(p *proc.Process) int {
		if p == nil {
			return 0
		}
		return p.PID()
	}
	return PIDs{ControlPlane: pid(s.controlPlane()), Agent: pid(s.agentProcess()), Envoy: pid(s.envoy)}
}

// LogPaths are the files each process writes (stdout and stderr together),
// and the agent's audit log.
type LogPaths struct{ ControlPlane, Agent, Envoy, Audit string }

func (s *Stack) LogPaths() LogPaths {
	return LogPaths{
		ControlPlane: filepath.Join(s.runDir, "xds.log"),
		Agent:        filepath.Join(s.runDir, "agent.log"),
		Envoy:        filepath.Join(s.runDir, "envoy.log"),
		Audit:        filepath.Join(s.runDir, "audit.log"),
	}
}

// Alive returns an error naming every process that has exited, except a
// control plane or agent stopped on purpose (KillControlPlane, KillAgent,
// TerminateAgent).
func (s *Stack) Alive() error {
	var errs []error
	for _, p := range []*proc.Process{s.controlPlane(), s.agentProcess(), s.envoy} {
		if p != nil {
			errs = append(errs, p.Exited())
		}
	}
	return errors.Join(errs...)
}

// BackendRequests counts the requests that reached the backend.
func (s *Stack) BackendRequests() int64 { return s.backend.requests.Load() }

// Describe is a short human summary, for the demo and failed tests.
func (s *Stack) Describe() string {
	p := s.PIDs()
	return "gateway " + s.GatewayURL() + " · envoy admin " + s.AdminURL() +
		" · control plane " + s.ControlPlaneURL() + " (pid " + strconv.Itoa(p.ControlPlane) + ")" +
		" · agent " + s.AgentURL() + " (pid " + strconv.Itoa(p.Agent) + ")" +
		" · envoy pid " + strconv.Itoa(p.Envoy) + " · logs " + s.runDir
}

// errNotRunning says a process the call needs was not started or was
// killed.
var errNotRunning = errors.New("not running")
