package xds

import (
	"context"
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

	"github.com/meshwaf/meshwaf/agentapi"
	"github.com/meshwaf/meshwaf/snapshot"
	"github.com/meshwaf/meshwaf/xds/feed"
)

// Config configures the server.
type Config struct {
	// Listen is the gRPC address, e.g. ":18000"; Listener, when set, is
	// served instead (a test's listener on port 0).
	Listen   string
	Listener net.Listener
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Credentials, when set, are the gRPC server's transport security:
	// TLS, mutual TLS when they ask for client certificates (tlsfiles).
	Credentials credentials.TransportCredentials
	// Authenticator, when set, must accept every stream's caller.
	Authenticator Authenticator
	// KeepaliveTime is how long a connection may be idle before the
	// server pings it, and KeepaliveTimeout how long it waits for the
	// answer before closing it (defaults 30 s and 10 s): a peer that
	// vanished without closing its connection is noticed in about 40 s.
	KeepaliveTime, KeepaliveTimeout time.Duration
}

// Server serves ECDS to Envoy and host policies to agents.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	ecds       cache.SnapshotCache
	policies   *feed.Feed
	identities *identities

	// first is closed when the first snapshot arrives; streams wait for it.
	first     chan struct{}
	firstOnce sync.Once
	current   atomic.Pointer[snapshot.Snapshot]

	// mu guards nodes and serialises Update.
	mu sync.Mutex
	// nodes are the Envoy gateway identities seen, by node key.
	nodes map[string]snapshot.Node
}

// New returns a server; it listens on Start.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.KeepaliveTime == 0 {
		cfg.KeepaliveTime = 30 * time.Second
	}
	if cfg.KeepaliveTimeout == 0 {
		cfg.KeepaliveTimeout = 10 * time.Second
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		ecds:       cache.NewSnapshotCache(false, nodeHasher{}, logAdapter{cfg.Logger}),
		first:      make(chan struct{}),
		identities: newIdentities(cfg.Authenticator),
		nodes:      map[string]snapshot.Node{},
	}
	s.policies = feed.New(feed.Config{TypeURL: agentapi.HostPolicyTypeURL, Logger: cfg.Logger.With("feed", "host-policies")})
	m, err := newMetrics(cfg.Registry, s)
	if err != nil {
		return nil, err
	}
	s.metrics = m
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

// Update makes snap the served configuration. Only host policies that
// changed travel to agents.
func (s *Server) Update(ctx context.Context, snap *snapshot.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for key, node := range s.nodes {
		errs = append(errs, s.setNodeConfig(ctx, key, node, snap))
	}
	s.policies.Publish(snap.EncodedHostPolicies)
	s.current.Store(snap)
	s.metrics.snapshots.Inc()
	s.firstOnce.Do(func() { close(s.first) })
	return errors.Join(errs...)
}

// resourceVersion is a resource's delta xDS version: a hash of its
// deterministic encoding.
func resourceVersion(r types.Resource) (string, error) {
	b, err := cache.MarshalResource(r)
	if err != nil {
		return "", fmt.Errorf("encoding %T: %w", r, err)
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
	closed := func(id int64, _ *corev3.Node) { s.identities.close(id) }
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
			return s.registerNode(ctx, req.GetNode())
		},
		StreamClosedFunc:      closed,
		DeltaStreamClosedFunc: closed,
	}
}

// Start serves gRPC until ctx is done.
func (s *Server) Start(ctx context.Context) error {
	lis := s.cfg.Listener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", s.cfg.Listen); err != nil {
			return fmt.Errorf("xds listen: %w", err)
		}
	}
	ecds := server.NewServer(ctx, s.ecds, s.callbacks(ctx))
	opts := fleetOptions(s.cfg.KeepaliveTime, s.cfg.KeepaliveTimeout)
	if s.cfg.Credentials != nil {
		opts = append(opts, grpc.Creds(s.cfg.Credentials))
	}
	grpcServer := grpc.NewServer(opts...)
	extensionservice.RegisterExtensionConfigDiscoveryServiceServer(grpcServer, ecds)
	discovery.RegisterAggregatedDiscoveryServiceServer(grpcServer, agentService{s: s})

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
