package xds

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extensionservice "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	server "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/snapshot"
)

// Config configures the server.
type Config struct {
	// Listen is the gRPC address, e.g. ":18000".
	Listen   string
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// TLS, when set, serves gRPC over TLS; with ClientAuth set to
	// RequireAndVerifyClientCert it is mutual TLS.
	TLS *tls.Config
	// Authenticator, when set, must accept every stream's caller.
	Authenticator Authenticator
}

// Server serves ECDS to Envoy and host policies to agents.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	ecds       cache.SnapshotCache
	policies   *cache.LinearCache
	agents     *agentTracker
	identities *identities

	// first is closed when the first snapshot arrives; streams wait for it.
	first     chan struct{}
	firstOnce sync.Once
	current   atomic.Pointer[snapshot.Snapshot]

	// mu guards nodes, changedAt and cacheVersion, and serialises Update.
	mu sync.Mutex
	// nodes are the Envoy gateway identities seen, by node key.
	nodes map[string]snapshot.Node
	// cacheVersion mirrors the host policy cache's version: Update is its
	// only writer and each UpdateResources call advances it by one.
	cacheVersion uint64
	// changedAt maps each host policy served to the cache version at which
	// its content last changed; lastChange is the version of the last
	// change of any kind (removals included).
	changedAt  map[string]uint64
	lastChange uint64
	// served maps each host policy to its delta version (content hash), to
	// recognise an agent that resumes already holding everything.
	served map[string]string
}

// cacheVersionPrefix starts the host policy cache's versions, so responses
// from it can be told apart.
const cacheVersionPrefix = "hp-"

// New returns a server; it listens on Start.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s := &Server{
		cfg:  cfg,
		log:  cfg.Logger,
		ecds: cache.NewSnapshotCache(false, nodeHasher{}, logAdapter{cfg.Logger}),
		policies: cache.NewLinearCache(agentapi.HostPolicyTypeURL,
			cache.WithLogger(logAdapter{cfg.Logger}), cache.WithVersionPrefix(cacheVersionPrefix)),
		first:      make(chan struct{}),
		identities: newIdentities(cfg.Authenticator),
		nodes:      map[string]snapshot.Node{},
		changedAt:  map[string]uint64{},
		served:     map[string]string{},
	}
	m, err := newMetrics(cfg.Registry, s)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.agents = newAgentTracker(func(node, detail string) {
		m.nacks.Inc()
		s.log.Warn("agent rejected host policies", "agent", node, "error", detail)
	})
	return s, nil
}

// Ready reports whether the first snapshot has been applied.
func (s *Server) Ready() bool {
	select {
	case <-s.first:
		return true
	default:
		return false
	}
}

// Current is the snapshot being served, or nil before the first.
func (s *Server) Current() *snapshot.Snapshot { return s.current.Load() }

// Agents lists the connected agents and what they applied.
func (s *Server) Agents() []AgentStatus {
	s.mu.Lock()
	latest := s.lastChange
	s.mu.Unlock()
	return s.agents.statuses(latest)
}

// Update makes snap the served configuration. Only host policies that
// changed travel to agents.
func (s *Server) Update(ctx context.Context, snap *snapshot.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for key, node := range s.nodes {
		errs = append(errs, s.setNodeConfig(ctx, key, node, snap))
	}
	errs = append(errs, s.updatePolicies(snap))
	s.current.Store(snap)
	s.metrics.snapshots.Inc()
	s.firstOnce.Do(func() { close(s.first) })
	return errors.Join(errs...)
}

func (s *Server) updatePolicies(snap *snapshot.Snapshot) error {
	prev := s.Current()
	toUpdate := map[string]types.Resource{}
	for name, hp := range snap.HostPolicies {
		if prev != nil && proto.Equal(prev.HostPolicies[name], hp) {
			continue
		}
		toUpdate[name] = hp
	}
	var toDelete []string
	if prev != nil {
		for name := range prev.HostPolicies {
			if _, ok := snap.HostPolicies[name]; !ok {
				toDelete = append(toDelete, name)
			}
		}
	}
	if len(toUpdate) == 0 && len(toDelete) == 0 && prev != nil {
		return nil
	}
	if err := s.policies.UpdateResources(toUpdate, toDelete); err != nil {
		return err
	}
	s.cacheVersion++
	for name, hp := range toUpdate {
		version, err := resourceVersion(hp)
		if err != nil {
			return err
		}
		s.changedAt[name], s.served[name] = s.cacheVersion, version
	}
	for _, name := range toDelete {
		delete(s.changedAt, name)
		delete(s.served, name)
	}
	s.lastChange = s.cacheVersion
	return nil
}

// resumedInSync reports whether an agent reconnecting with these resource
// versions already holds exactly what is served, and as of which cache
// version. Such an agent gets no response to ACK, so it is credited here.
func (s *Server) resumedInSync(initial map[string]string) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(initial) != len(s.served) {
		return 0, false
	}
	for name, version := range s.served {
		if initial[name] != version {
			return 0, false
		}
	}
	return s.lastChange, true
}

// resourceVersion is the version go-control-plane's delta protocol gives a
// resource (a hash of its encoding), so ACKs can be compared with it.
func resourceVersion(r types.Resource) (string, error) {
	b, err := cache.MarshalResource(r)
	if err != nil {
		return "", fmt.Errorf("encoding host policy: %w", err)
	}
	return cache.HashResource(b), nil
}

func (s *Server) setNodeConfig(ctx context.Context, key string, node snapshot.Node, snap *snapshot.Snapshot) error {
	filter, err := snap.FilterConfig(node)
	if err != nil {
		return err
	}
	version, err := resourceVersion(filter)
	if err != nil {
		return err
	}
	res, err := cache.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ExtensionConfigType: {filter},
	})
	if err != nil {
		return err
	}
	return s.ecds.SetSnapshot(ctx, key, res)
}

// registerNode makes sure an Envoy node's gateway identity has a
// configuration before its watch is created.
func (s *Server) registerNode(ctx context.Context, n *corev3.Node) error {
	if n == nil {
		return nil // later requests on a stream may omit the node
	}
	key := nodeKey(n)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, known := s.nodes[key]; known {
		return nil
	}
	node := nodeOf(n)
	s.nodes[key] = node
	s.log.Info("gateway proxy connected", "node", n.GetId(), "namespace", node.Namespace, "labels", node.Labels)
	if snap := s.Current(); snap != nil {
		return s.setNodeConfig(ctx, key, node, snap)
	}
	return nil
}

// waitFirst holds a new stream until the first snapshot, so nobody is ever
// answered from an empty cache.
func (s *Server) waitFirst(ctx context.Context) error {
	select {
	case <-s.first:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) callbacks(ctx context.Context) server.Callbacks {
	open := func(streamCtx context.Context, id int64, _ string) error {
		if err := s.waitFirst(streamCtx); err != nil {
			return err
		}
		return s.identities.open(streamCtx, id)
	}
	return server.CallbackFuncs{
		StreamOpenFunc:      open,
		DeltaStreamOpenFunc: open,
		StreamRequestFunc: func(id int64, req *discovery.DiscoveryRequest) error {
			if err := s.identities.check(id, req.GetNode().GetId(), req.GetTypeUrl()); err != nil {
				return err
			}
			return s.registerNode(ctx, req.GetNode())
		},
		StreamDeltaRequestFunc: func(id int64, req *discovery.DeltaDiscoveryRequest) error {
			if err := s.identities.check(id, req.GetNode().GetId(), req.GetTypeUrl()); err != nil {
				return err
			}
			if req.GetTypeUrl() == agentapi.HostPolicyTypeURL {
				s.agents.request(id, req, time.Now())
				if initial := req.GetInitialResourceVersions(); len(initial) > 0 {
					if version, ok := s.resumedInSync(initial); ok {
						s.agents.credit(id, version)
					}
				}
				return nil
			}
			return s.registerNode(ctx, req.GetNode())
		},
		StreamDeltaResponseFunc: func(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
			if resp.GetTypeUrl() == agentapi.HostPolicyTypeURL {
				s.agents.response(id, resp)
			}
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) {
			s.identities.close(id)
		},
		DeltaStreamClosedFunc: func(id int64, _ *corev3.Node) {
			s.identities.close(id)
			s.agents.closed(id)
		},
	}
}

// Start serves gRPC until ctx is done.
func (s *Server) Start(ctx context.Context) error {
	lis, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("xds listen: %w", err)
	}
	mux := &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return r.GetTypeUrl() },
		Caches: map[string]cache.Cache{
			resource.ExtensionConfigType: s.ecds,
			agentapi.HostPolicyTypeURL:   s.policies,
		},
	}
	xds := server.NewServer(ctx, mux, s.callbacks(ctx))
	opts := []grpc.ServerOption{
		// Detect dead peers in about 40 s; allow clients' own pings.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
	if s.cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.cfg.TLS)))
	}
	grpcServer := grpc.NewServer(opts...)
	extensionservice.RegisterExtensionConfigDiscoveryServiceServer(grpcServer, xds)
	discovery.RegisterAggregatedDiscoveryServiceServer(grpcServer, xds)

	s.log.Info("xds serving", "address", lis.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- grpcServer.Serve(lis) }()
	select {
	case <-ctx.Done():
		grpcServer.Stop()
		<-errc
		return nil
	case err := <-errc:
		return fmt.Errorf("xds serve: %w", err)
	}
}
