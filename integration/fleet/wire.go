package fleet

import (
	"bytes"
	"errors"
	"fmt"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshwaf/meshwaf/agentapi"
)

// A thousand simulated agents share the machine with the control plane
// they measure. Decoding every full resync into Go structs (ten thousand
// Resource, Any and HostPolicy objects per agent) made them, not the
// control plane, the bottleneck of the benchmark. So responses arrive as
// raw bytes and are scanned in place: every resource's name, version, type
// and the gateway and host inside its body are still checked on every
// agent, as the real agent does before compiling; only the resources a
// harness tracks are decoded in full.

// Field numbers, read from the generated descriptors rather than written
// down, so a scan cannot drift from the protos.
var (
	responseFields = (&discovery.DeltaDiscoveryResponse{}).ProtoReflect().Descriptor().Fields()
	resourceFields = (&discovery.Resource{}).ProtoReflect().Descriptor().Fields()
	anyFields      = (&anypb.Any{}).ProtoReflect().Descriptor().Fields()
	policyFields   = (&agentapi.HostPolicy{}).ProtoReflect().Descriptor().Fields()

	fieldSystemVersion = number(responseFields, "system_version_info")
	fieldResources     = number(responseFields, "resources")
	fieldTypeURL       = number(responseFields, "type_url")
	fieldRemoved       = number(responseFields, "removed_resources")
	fieldNonce         = number(responseFields, "nonce")
	fieldName          = number(resourceFields, "name")
	fieldVersion       = number(resourceFields, "version")
	fieldResource      = number(resourceFields, "resource")
	fieldAnyType       = number(anyFields, "type_url")
	fieldAnyValue      = number(anyFields, "value")
	fieldGateway       = number(policyFields, "gateway")
	fieldHost          = number(policyFields, "host")
)

func number(fields protoreflect.FieldDescriptors, name protoreflect.Name) protowire.Number {
	return fields.ByName(name).Number()
}

// wireResponse is a scanned DeltaDiscoveryResponse; its byte slices point
// into the received message.
type wireResponse struct {
	size                          int
	systemVersion, typeURL, nonce string
	resources                     []wireResource
	removed                       []string
}

type wireResource struct {
	name, version, typeURL, body []byte
}

var errMalformed = errors.New("malformed protobuf")

// scanFields calls each for every field of msg with its number, wire type
// and (for length-delimited fields) contents.
func scanFields(msg []byte, each func(num protowire.Number, typ protowire.Type, value []byte) error) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return errMalformed
		}
		msg = msg[n:]
		var value []byte
		if typ == protowire.BytesType {
			value, n = protowire.ConsumeBytes(msg)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, msg)
		}
		if n < 0 {
			return errMalformed
		}
		msg = msg[n:]
		if err := each(num, typ, value); err != nil {
			return err
		}
	}
	return nil
}

func scanResponse(msg []byte) (*wireResponse, error) {
	resp := &wireResponse{size: len(msg)}
	err := scanFields(msg, func(num protowire.Number, typ protowire.Type, value []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case fieldSystemVersion:
			resp.systemVersion = string(value)
		case fieldTypeURL:
			resp.typeURL = string(value)
		case fieldNonce:
			resp.nonce = string(value)
		case fieldRemoved:
			resp.removed = append(resp.removed, string(value))
		case fieldResources:
			r, err := scanResource(value)
			if err != nil {
				return fmt.Errorf("resource %d: %w", len(resp.resources), err)
			}
			resp.resources = append(resp.resources, r)
		}
		return nil
	})
	return resp, err
}

func scanResource(msg []byte) (wireResource, error) {
	var r wireResource
	err := scanFields(msg, func(num protowire.Number, typ protowire.Type, value []byte) error {
		switch {
		case typ != protowire.BytesType:
		case num == fieldName:
			r.name = value
		case num == fieldVersion:
			r.version = value
		case num == fieldResource:
			return scanFields(value, func(num protowire.Number, typ protowire.Type, value []byte) error {
				switch {
				case typ != protowire.BytesType:
				case num == fieldAnyType:
					r.typeURL = value
				case num == fieldAnyValue:
					r.body = value
				}
				return nil
			})
		}
		return nil
	})
	return r, err
}

// checkPolicy makes sure a resource is a HostPolicy for the gateway and
// host its name says ("<namespace>/<gateway>/<host>", as
// agentapi.SplitResourceName reads it), reading only those two fields of
// its body and allocating nothing.
func checkPolicy(r wireResource) error {
	if string(r.typeURL) != agentapi.HostPolicyTypeURL {
		return fmt.Errorf("resource type %q", r.typeURL)
	}
	var gateway, host []byte
	err := scanFields(r.body, func(num protowire.Number, typ protowire.Type, value []byte) error {
		switch {
		case typ != protowire.BytesType:
		case num == fieldGateway:
			gateway = value
		case num == fieldHost:
			host = value
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	ns, name, ok := bytes.Cut(gateway, []byte("/"))
	matches := ok && len(ns) > 0 && len(name) > 0 && bytes.IndexByte(name, '/') < 0 && len(host) > 0 &&
		len(r.name) == len(gateway)+1+len(host) && bytes.HasPrefix(r.name, gateway) &&
		r.name[len(gateway)] == '/' && bytes.HasSuffix(r.name, host)
	if !matches {
		return fmt.Errorf("body is for %s %s", gateway, host)
	}
	return nil
}
