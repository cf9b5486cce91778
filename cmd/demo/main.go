package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/meshwaf/meshwaf/integration/stack"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	manifests := flag.String("manifests", "", "folder of manifests to serve (default: examples/demo in the repository)")
	keepLogs := flag.Bool("keep-logs", false, "keep the run directory with every process's log after exit")
	port := flag.Int("gateway-port", 0, "loopback port of the gateway (default: a free port)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	root, err := stack.RepoRoot(wd)
	if err != nil {
		return fmt.Errorf("run the demo from the meshwaf repository: %w", err)
	}
	if *manifests == "" {
		*manifests = filepath.Join(root, "examples", "demo")
	}
	s, err := stack.Start(ctx, stack.Config{
		Manifests:  *manifests,
		RepoRoot:   root,
		KeepRunDir: *keepLogs,
		Ports:      stack.Ports{Gateway: *port},
		Logf: func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "demo: "+format+"\n", args...)
		},
	})
	if err != nil {
		return err
	}
	printWelcome(s, *manifests)

	err = watch(ctx, s)
	fmt.Fprintln(os.Stderr, "\ndemo: stopping")
	return errors.Join(err, s.Stop())
}

// watch returns when ctx ends (Ctrl-C) or a component dies.
func watch(ctx context.Context, s *stack.Stack) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := s.Alive(); err != nil {
				return err
			}
		}
	}
}

func printWelcome(s *stack.Stack, manifests string) {
	url := s.GatewayURL()
	fmt.Printf(`
meshwaf demo is running.

  gateway        %s   (Envoy as an Istio ingress gateway)
  envoy admin    %s
  control plane  %s/debug/snapshot
  agent          %s/debug/policies
  logs           %s
  certificates   %s
                 (a CA made for this run: Envoy and the agent reach the
                 control plane over mutual TLS, as in production)

A benign request (expect 200):

  curl -i -H 'Host: shop.example.com' "%s/?id=1"

An SQL injection attempt (expect 403 while the policy is in Prevent mode):

  curl -i -H 'Host: shop.example.com' "%s/?id=1%%27%%20OR%%201=1--"

Edit the files in %s (for example mode: Detect in wafpolicy.yaml);
verdicts change within seconds, without restarting anything.
Press Ctrl-C to stop everything.
`, url, s.AdminURL(), s.ControlPlaneURL(), s.AgentURL(), s.RunDir(), filepath.Dir(s.PKI().CA), url, url, manifests)
}
