# meshwaf developer entry points. The README's two commands are `make demo`
# and `make test`; everything they need is installed on first use and cached
# under $(MESHWAF_CACHE), keyed by version.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

GO ?= go
MESHWAF_CACHE ?= $(HOME)/.cache/meshwaf
export MESHWAF_CACHE

# The e2e tests start several real processes; on a 2-core machine the whole
# suite takes a few minutes, so the timeout leaves generous headroom.
TEST_TIMEOUT ?= 20m
# -count=1: the e2e tests build and run binaries, which Go's test cache
# cannot see, so cached results could be stale.
TEST_FLAGS ?= -count=1

# protoc comes from Debian's protobuf-compiler; its version is written into
# the generated file's header, so a different protoc shows up as drift.
PROTOC ?= protoc
PROTOC_VERSION := 3.21.12
PROTOBUF_GO_VERSION := $(shell $(GO) list -m -f '{{.Version}}' google.golang.org/protobuf)
PROTOC_GEN_GO := $(MESHWAF_CACHE)/protoc-gen-go-$(PROTOBUF_GO_VERSION)/protoc-gen-go
PROTOS := agentapi/hostpolicy.proto

# controller-gen is a go.mod tool, so its version is go.mod's and needs no
# install step. It writes the WAFPolicy deepcopy code and CRD from the
# kubebuilder markers in api/.
CONTROLLER_GEN ?= $(GO) tool controller-gen
API_PKG := api/v1alpha1
DEEPCOPY := $(API_PKG)/zz_generated.deepcopy.go
CRD_DIR := deploy/crds

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# The agent's engine runs Coraza's @rx on RE2 through cgo and Debian's
# libre2 (go-re2's re2_cgo tag). Without the tag go-re2 runs RE2 compiled to
# Go from WebAssembly, which gives the same matches but serializes
# concurrent matches on a spin lock: two inspections at once cost 2.5x the
# CPU of one (docs/decisions.md). Every build, test and benchmark make runs
# uses the tag, so what is tested and measured is what ships.
GO_BUILD_TAGS ?= re2_cgo
export GOFLAGS := $(strip $(filter-out -tags=%,$(shell $(GO) env GOFLAGS)) -tags=$(GO_BUILD_TAGS))

.PHONY: demo meshwaf test envoy fmt-check vet generate generate-proto generate-api generate-deploy check-generated tools re2 help

help:
	@echo "make demo             run control plane, agent and Envoy locally with examples/demo"
	@echo "make meshwaf          build the policy tool bin/meshwaf (meshwaf test: a request against manifests, offline)"
	@echo "make test             gofmt, go vet, generated-code check, go test -race ./... (with e2e)"
	@echo "make bench            meshwaf against nginx + ModSecurity: CPU, latency, overload, shadow cost, hostile requests, memory (docs/reports/bench.md)"
	@echo "make differential     detection against nginx + ModSecurity on the CRS tests and payload lists (docs/reports/differential.md)"
	@echo "make conformance      the CRS regression suite through Envoy + agent (docs/reports/conformance.md)"
	@echo "make generate         regenerate agentapi/*.pb.go, the WAFPolicy deepcopy code and CRD"
	@echo "make check-generated  fail if the committed generated code is stale"
	@echo "make tools            install protoc (Debian protobuf-compiler) if missing"
	@echo "make re2              install what the agent's cgo build needs (Debian libre2-dev, pkg-config, g++) if missing"

## demo: everything the README's first command promises. Built and then
## exec'd rather than `go run`, because go run exits 1 after Ctrl-C even when
## the demo shut down cleanly.
demo: re2
	$(GO) build -o bin/meshwaf-demo ./cmd/demo
	envoy="$$(scripts/install-envoy.sh)"; MESHWAF_ENVOY="$$envoy" exec bin/meshwaf-demo

## meshwaf: the policy tool, with the agent's engine (cgo RE2, as the agent).
meshwaf: re2
	$(GO) build -o bin/meshwaf ./cmd/meshwaf

## test: everything CI checks. The install runs as its own statement so that
## a failed install stops make here (an assignment prefix would hide it).
test: re2 fmt-check vet check-generated
	envoy="$$(scripts/install-envoy.sh)"; kube_env="$$(scripts/install-kube.sh)"; export $$kube_env; \
	istio_env="$$(scripts/install-istio.sh)"; export $$istio_env; \
	MESHWAF_ENVOY="$$envoy" $(GO) test -race -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) ./...

envoy:
	@scripts/install-envoy.sh

fmt-check:
	@unformatted="$$(gofmt -l .)"; \
	if [[ -n "$$unformatted" ]]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi

vet: re2
	$(GO) vet ./...

$(PROTOC_GEN_GO):
	$(GO) build -o $@ google.golang.org/protobuf/cmd/protoc-gen-go

# GEN_OUT (default: the repository) is where generated files are written;
# check-generated points it at a scratch directory.
generate: generate-proto generate-api generate-deploy

# Generation is pinned twice over: protoc-gen-go is built from the version in
# go.mod, and protoc must be the version the committed files were made with.
generate-proto: $(PROTOC_GEN_GO)
	@command -v $(PROTOC) >/dev/null || { echo "protoc not found: run 'make tools'"; exit 1; }
	@[[ "$$($(PROTOC) --version)" == "libprotoc $(PROTOC_VERSION)" ]] || \
		{ echo "need protoc $(PROTOC_VERSION) (Debian protobuf-compiler), have: $$($(PROTOC) --version)"; exit 1; }
	$(PROTOC) -I . --plugin=protoc-gen-go=$(PROTOC_GEN_GO) \
		--go_out=$(or $(GEN_OUT),.) --go_opt=module=github.com/meshwaf/meshwaf $(PROTOS)

# The CRD directory is emptied first so a renamed or removed type cannot leave
# a stale CRD behind (check-generated compares whole directories).
generate-api:
	$(CONTROLLER_GEN) object paths=./$(API_PKG) output:object:dir=$(or $(GEN_OUT),.)/$(API_PKG)
	rm -f $(or $(GEN_OUT),.)/$(CRD_DIR)/*.yaml
	$(CONTROLLER_GEN) crd:crdVersions=v1 paths=./api/... output:crd:dir=$(or $(GEN_OUT),.)/$(CRD_DIR)

# The plain manifests under deploy/ are rendered from the Helm chart
# (deploy/helm/meshwaf) with its defaults; Helm is built and cached by
# scripts/install-helm.sh.
generate-deploy:
	scripts/render-deploy.sh $(or $(GEN_OUT),.)

# Regenerates into a scratch directory and compares, so the check works the
# same on a dirty or uncommitted tree and never rewrites the working copy.
check-generated: tools
	@scratch="$$(mktemp -d)"; trap 'rm -rf "$$scratch"' EXIT; \
	$(MAKE) --no-print-directory generate GEN_OUT="$$scratch"; \
	for proto in $(PROTOS); do \
		gen="$${proto%.proto}.pb.go"; \
		diff -u "$$gen" "$$scratch/$$gen" || { echo "$$gen is stale: run 'make generate' and commit it"; exit 1; }; \
	done; \
	diff -u $(DEEPCOPY) "$$scratch/$(DEEPCOPY)" || { echo "$(DEEPCOPY) is stale: run 'make generate' and commit it"; exit 1; }; \
	diff -ru $(CRD_DIR) "$$scratch/$(CRD_DIR)" || { echo "$(CRD_DIR) is stale: run 'make generate' and commit it"; exit 1; }; \
	for dir in deploy/kubernetes deploy/istio; do \
		diff -ru "$$dir" "$$scratch/$$dir" || { echo "$$dir differs from the chart: run 'make generate' and commit it"; exit 1; }; \
	done

tools:
	@command -v $(PROTOC) >/dev/null || { \
		echo "installing protobuf-compiler"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler; }

re2:
	@pkg-config --exists re2 && command -v g++ >/dev/null || { \
		echo "installing libre2-dev pkg-config g++"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libre2-dev pkg-config g++; }

# Larger areas (benchmarks, conformance, Kubernetes) keep their targets in
# scripts/*.mk, one file each.
-include scripts/*.mk
