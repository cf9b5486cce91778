package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"golang.org/x/sync/errgroup"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/meshwaf/meshwaf/agentapi"
)

// wildcard subscribes to every HostPolicy the control plane has for us.
const wildcard = "*"

// policyClient keeps the registry in step with the control plane over a
// delta xDS stream. Its state is touched only by its own goroutine; other
// goroutines read the registry and the ready channel.
type policyClient struct {
	conn    grpc.ClientConnInterface
	node    *corev3.Node
	reg     *Registry
	metrics *metrics
	log     *slog.Logger
	backoff backoff

	entries map[string]*Entry // applied resources by name

	readyOnce sync.Once
	ready     chan struct{} // closed after the first response is applied
}

func newPolicyClient(conn grpc.ClientConnInterface, node *corev3.Node, reg *Registry, m *metrics, log *slog.Logger, b backoff) *policyClient {
	return &policyClient{
		conn: conn, node: node, reg: reg, metrics: m, log: log, backoff: b,
		entries: map[string]*Entry{},
		ready:   make(chan struct{}),
	}
}

// run holds a stream open until ctx ends, reconnecting with jittered
// backoff. While disconnected the registry keeps the last applied policies,
// so Checks go on being answered.
func (c *policyClient) run(ctx context.Context) error {
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(c.conn)
	for {
		// gRPC keeps its own reconnect backoff (growing to two minutes) and
		// fails calls at once while it waits. Without this reset an attempt
		// after a control plane restart could fail on a stale "connection
		// refused" and cost another backoff step; with it, every attempt
		// is a real connection attempt and the agent's backoff alone paces
		// them.
		if r, ok := c.conn.(interface{ ResetConnectBackoff() }); ok {
			r.ResetConnectBackoff()
		}
		received, err := c.session(ctx, ads)
		c.metrics.connected.Set(0)
		if ctx.Err() != nil {
			return nil
		}
		if received {
			c.backoff.reset()
		}
		wait := c.backoff.next()
		c.log.Warn("policy stream ended; reconnecting", "error", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// session runs one stream. received reports whether any response arrived,
// which is what resets the backoff.
func (c *policyClient) session(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) (received bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		return false, fmt.Errorf("open stream: %w", err)
	}
	if err := stream.Send(c.subscribe()); err != nil {
		return false, fmt.Errorf("subscribe: %w", err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return received, err
		}
		if !received {
			received = true
			c.metrics.connected.Set(1)
			c.log.Info("policy stream established")
		}
		if resp.GetTypeUrl() != agentapi.HostPolicyTypeURL {
			c.log.Warn("ignoring response of unexpected type", "type_url", resp.GetTypeUrl())
			continue
		}
		if err := stream.Send(c.apply(resp)); err != nil {
			return received, fmt.Errorf("ack: %w", err)
		}
	}
}

// subscribe is the first request of a stream. Its initial versions let the
// server send only what changed while we were away, and remove what went.
func (c *policyClient) subscribe() *discoveryv3.DeltaDiscoveryRequest {
	versions := make(map[string]string, len(c.entries))
	for name, e := range c.entries {
		versions[name] = e.Version
	}
	return &discoveryv3.DeltaDiscoveryRequest{
		Node:                    c.node,
		TypeUrl:                 agentapi.HostPolicyTypeURL,
		ResourceNamesSubscribe:  []string{wildcard},
		InitialResourceVersions: versions,
	}
}

// apply compiles every resource of resp, publishes the result and returns
// the ACK, or a NACK naming each resource that failed. A failed resource
// keeps its last good version; the others still apply, because the server
// considers everything it sent as delivered and would not send them again.
func (c *policyClient) apply(resp *discoveryv3.DeltaDiscoveryResponse) *discoveryv3.DeltaDiscoveryRequest {
	next := maps.Clone(c.entries)
	for _, name := range resp.GetRemovedResources() {
		delete(next, name)
	}
	var errs []error
	for i, e := range c.prepareAll(resp.GetResources()) {
		res := resp.GetResources()[i]
		if e.err != nil {
			c.metrics.compileFailures.Inc()
			c.log.Error("host policy rejected", "resource", res.GetName(), "version", res.GetVersion(), "error", e.err)
			errs = append(errs, fmt.Errorf("%s: %w", res.GetName(), e.err))
			continue
		}
		next[res.GetName()] = e.entry
	}
	c.reg.Replace(next)
	c.entries = next
	if len(resp.GetResources()) > 0 {
		// Compiling the CRS leaves several times a WAF's size in garbage,
		// which Go would hand back to the node only slowly: collect it and
		// return it now, once per update (tens of milliseconds, next to a
		// compile's hundreds), so that the agent's resident memory is what
		// its policies hold (docs/decisions.md).
		debug.FreeOSMemory()
	}
	c.metrics.setPolicies(next)
	c.metrics.wafs.Set(float64(c.reg.WAFCount()))
	c.readyOnce.Do(func() { close(c.ready) })
	c.log.Info("host policies applied", "added", len(resp.GetResources())-len(errs), "removed", len(resp.GetRemovedResources()),
		"rejected", len(errs), "total", len(next), "system_version", resp.GetSystemVersionInfo())

	ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: agentapi.HostPolicyTypeURL, ResponseNonce: resp.GetNonce()}
	if len(errs) > 0 {
		ack.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: errors.Join(errs...).Error()}
	}
	return ack
}

type prepared struct {
	entry *Entry
	err   error
}

// prepareAll compiles resources in parallel: a fresh agent may receive
// many distinct policies at once, each costing up to a few hundred ms.
func (c *policyClient) prepareAll(resources []*discoveryv3.Resource) []prepared {
	out := make([]prepared, len(resources))
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, res := range resources {
		g.Go(func() error {
			// A parser panic on hostile rules must cost one NACK, not the
			// agent.
			defer func() {
				if p := recover(); p != nil {
					out[i].err = fmt.Errorf("compile panicked: %v", p)
				}
			}()
			out[i].entry, out[i].err = c.prepare(res)
			return nil
		})
	}
	_ = g.Wait()
	return out
}

// prepare decodes one resource, checks that its name and content agree,
// and compiles it.
func (c *policyClient) prepare(res *discoveryv3.Resource) (*Entry, error) {
	gw, host, err := agentapi.SplitResourceName(res.GetName())
	if err != nil {
		return nil, err
	}
	if res.GetResource() == nil {
		return nil, errors.New("resource has no body")
	}
	if t := res.GetResource().GetTypeUrl(); t != agentapi.HostPolicyTypeURL {
		return nil, fmt.Errorf("resource type %q is not %s", t, agentapi.HostPolicyTypeURL)
	}
	p := &agentapi.HostPolicy{}
	if err := proto.Unmarshal(res.GetResource().GetValue(), p); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if p.Gateway == "" {
		p.Gateway = gw
	}
	if p.Host == "" {
		p.Host = host
	}
	if p.Gateway != gw || p.Host != host {
		return nil, fmt.Errorf("policy for %s/%s does not match its resource name", p.Gateway, p.Host)
	}
	return c.reg.Prepare(res.GetName(), res.GetVersion(), p)
}
