package xds

import (
	"context"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshwaf/meshwaf/xds/feed"
)

// agentService answers agents on the aggregated discovery service. Agents
// speak delta xDS for one type, HostPolicy, which the feed serves; Envoy
// reaches meshwaf over ECDS, a different service, so state-of-the-world
// ADS is not offered.
type agentService struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	s *Server
}

func (agentService) StreamAggregatedResources(discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return status.Error(codes.Unimplemented,
		"meshwaf serves Envoy over ECDS (ExtensionConfigDiscoveryService) and agents over delta ADS")
}

// DeltaAggregatedResources serves one agent: after the first snapshot,
// authenticated, every request checked against the stream's identity.
func (a agentService) DeltaAggregatedResources(stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	if err := a.s.waitFirst(stream.Context()); err != nil {
		return err
	}
	id, err := a.s.identities.authenticate(stream.Context())
	if err != nil {
		a.s.log.Warn("agent stream refused", "peer", peerAddress(stream.Context()), "error", err)
		return err
	}
	return a.s.policies.Serve(stream, func(req *discovery.DeltaDiscoveryRequest) error {
		return id.check(req.GetNode().GetId(), req.GetTypeUrl())
	})
}

func peerAddress(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok {
		return p.Addr.String()
	}
	return ""
}

// fleetOptions are the gRPC server settings that keep a large fleet cheap.
func fleetOptions(keepaliveTime, keepaliveTimeout time.Duration) []grpc.ServerOption {
	return []grpc.ServerOption{
		// Host policy responses are encoded once and shared by every
		// stream (feed.Encoded).
		grpc.ForceServerCodecV2(feed.Codec()),
		// Fixed 64 KiB receive windows turn off gRPC's window growth, so
		// what an agent sends (its resource list on reconnect) waits in
		// the agent until the feed reads it, instead of in this process.
		grpc.InitialWindowSize(64 << 10),
		grpc.InitialConnWindowSize(64 << 10),
		// Idle agents hold no write buffer.
		grpc.SharedWriteBuffer(true),
		// Detect dead peers (see Config); allow clients' own pings.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
}

// AgentStatus is what the control plane knows about one agent stream.
type AgentStatus struct {
	feed.StreamStatus
	// InSync is true when the agent confirmed the newest host policies and
	// rejected none of them.
	InSync bool `json:"inSync"`
}

// Agents lists the connected agents and what they applied.
func (s *Server) Agents() []AgentStatus {
	latest := s.policies.Current().Version()
	streams := s.policies.Streams()
	out := make([]AgentStatus, len(streams))
	for i, st := range streams {
		out[i] = AgentStatus{StreamStatus: st, InSync: st.Acked >= latest && len(st.Rejected) == 0}
	}
	return out
}
