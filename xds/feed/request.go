package feed

import (
	"errors"
	"fmt"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// A reconnecting agent's first request lists every resource it holds: ten
// thousand names and versions for a large cluster. After a control plane
// restart the whole fleet sends one at once, and decoding each into a Go
// map (some 60,000 allocations) was most of the restart's cost, although
// nearly every agent is in sync and needs nothing. So the first request is
// received as bytes: the list is compared with the generation in place,
// and decoded into a map only when something differs.

// heldField is initial_resource_versions' field number, read from the
// generated descriptor rather than written down.
var heldField = (&discovery.DeltaDiscoveryRequest{}).ProtoReflect().Descriptor().
	Fields().ByName("initial_resource_versions").Number()

// firstRequest is a stream's first request: everything but the held list
// decoded, the held list kept as bytes.
type firstRequest struct {
	*discovery.DeltaDiscoveryRequest
	raw []byte
	// holds is the number of resources listed.
	holds int
}

var errMalformed = errors.New("malformed request")

// parseFirstRequest decodes every field of raw except the held list, and
// counts that list's entries.
func parseFirstRequest(raw []byte) (*firstRequest, error) {
	first := &firstRequest{DeltaDiscoveryRequest: &discovery.DeltaDiscoveryRequest{}, raw: raw}
	var rest []byte
	for b := raw; len(b) > 0; {
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			return nil, errMalformed
		}
		if num == heldField && typ == protowire.BytesType {
			first.holds++
		} else {
			rest = append(rest, b[:n]...)
		}
		b = b[n:]
	}
	if err := proto.Unmarshal(rest, first.DeltaDiscoveryRequest); err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	return first, nil
}

// eachHeld calls fn with every (name, version) of the held list, without
// copying them.
func (r *firstRequest) eachHeld(fn func(name, version []byte)) error {
	for b := r.raw; len(b) > 0; {
		num, typ, n := protowire.ConsumeField(b)
		if n < 0 {
			return errMalformed
		}
		if num == heldField && typ == protowire.BytesType {
			entry, m := protowire.ConsumeBytes(b[protowire.SizeTag(num):n])
			if m < 0 {
				return errMalformed
			}
			name, version, err := mapEntry(entry)
			if err != nil {
				return err
			}
			fn(name, version)
		}
		b = b[n:]
	}
	return nil
}

// mapEntry reads a map<string, string> entry: key is field 1, value 2.
func mapEntry(entry []byte) (key, value []byte, err error) {
	for len(entry) > 0 {
		num, typ, n := protowire.ConsumeTag(entry)
		if n < 0 {
			return nil, nil, errMalformed
		}
		entry = entry[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, entry); n < 0 {
				return nil, nil, errMalformed
			}
			entry = entry[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(entry)
		if n < 0 {
			return nil, nil, errMalformed
		}
		switch num {
		case 1:
			key = v
		case 2:
			value = v
		}
		entry = entry[n:]
	}
	return key, value, nil
}

// inSyncWith reports whether the held list is exactly g: every resource
// of g at its version, and nothing else.
func (r *firstRequest) inSyncWith(g *Generation) (bool, error) {
	if r.holds != len(g.entries) {
		return false, nil
	}
	matched := 0
	err := r.eachHeld(func(name, version []byte) {
		// Indexing with string(name) does not allocate.
		if e := g.entries[string(name)]; e != nil && e.resource.GetVersion() == string(version) {
			matched++
		}
	})
	// Equal counts and every entry matched means the same set, as an
	// encoded map holds each name once.
	return err == nil && matched == len(g.entries), err
}

// held decodes the held list into a map; only for a subscriber that is not
// in sync.
func (r *firstRequest) held() (map[string]string, error) {
	out := make(map[string]string, r.holds)
	err := r.eachHeld(func(name, version []byte) { out[string(name)] = string(version) })
	return out, err
}
