package feed

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	protobuf "google.golang.org/protobuf/proto"
)

// Encoded is a message serialized once, to be sent on many streams. gRPC's
// own codec would encode it again for every stream and keep one copy per
// stream queued until that peer reads it: at 1,000 agents and a 3 MiB full
// state that is 3 GiB. Sent through Codec, every stream queues the same
// bytes.
type Encoded struct {
	bytes []byte
}

// Encode serializes m for sending through Codec.
func Encode(m protobuf.Message) (*Encoded, error) {
	b, err := protobuf.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding %T: %w", m, err)
	}
	return &Encoded{bytes: b}, nil
}

// Size is the encoded length in bytes.
func (e *Encoded) Size() int { return len(e.bytes) }

// Codec is gRPC's protobuf codec that also sends *Encoded as is and
// receives into *Raw undecoded. A server running a Feed must use it
// (grpc.ForceServerCodecV2(feed.Codec())); a client may, to read
// responses in place (grpc.ForceCodecV2).
func Codec() encoding.CodecV2 { return codec{protobuf: encoding.GetCodecV2(proto.Name)} }

type codec struct{ protobuf encoding.CodecV2 }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*Encoded); ok {
		// A SliceBuffer is not pooled: freeing it is a no-op, so gRPC never
		// recycles the shared bytes.
		return mem.BufferSlice{mem.SliceBuffer(e.bytes)}, nil
	}
	return c.protobuf.Marshal(v)
}

// Raw is a message received as its encoding: Codec hands it a copy of
// the bytes instead of decoding them, for a reader that scans them in
// place (request.go; the fleet benchmark's simulated agents).
type Raw struct{ Bytes []byte }

// Unmarshal decodes protobuf messages, and fills a *Raw.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if r, ok := v.(*Raw); ok {
		r.Bytes = data.Materialize()
		return nil
	}
	return c.protobuf.Unmarshal(data, v)
}

// Name is the protobuf codec's, so clients see ordinary application/grpc.
func (codec) Name() string { return proto.Name }
