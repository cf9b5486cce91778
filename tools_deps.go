//go:build tools

package tools

import (
	_ "github.com/corazawaf/coraza-coreruleset/v4"
	_ "github.com/corazawaf/coraza/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	_ "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	_ "github.com/hashicorp/go-memdb"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "go.uber.org/goleak"
	_ "golang.org/x/sync/errgroup"
	_ "google.golang.org/grpc"
	_ "sigs.k8s.io/yaml"
)
import _ "google.golang.org/protobuf/cmd/protoc-gen-go"
