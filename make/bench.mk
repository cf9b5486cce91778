# Benchmarks (issue 4): `make bench` measures the cost of inspection in four
# modes side by side — Coraza in-process, the agent over gRPC, Envoy + agent,
# Envoy alone — for five requests at CRS paranoia levels 1 and 2, one
# request at a time and with 8 in flight (bench.LoadInFlight), and writes
# docs/reports/bench.md. About 15 minutes on 2 cores. Not part of `make
# test`, which runs the same harness, loaded mode included, with a handful
# of requests (bench.TestBench without -full) so that it cannot rot.
#
# No -race here: the race detector would multiply the in-process numbers.
# Where the CPU goes comes from Go's CPU profiler in both the in-process
# worker and the agent (started with --pprof); perf (Debian linux-perf), when
# present, adds system calls and context switches per request. Coraza's
# performance options are compared in-process in the same run (the report's
# last section). Coraza build tags reach both sides alike through GOFLAGS
# (the in-process worker is this test binary, the agent is built by the
# harness with the same environment), e.g.
# make bench GOFLAGS=-tags=coraza.rule.rx_prefilter

BENCH_REPORT ?= docs/reports/bench.md
BENCH_TIMEOUT ?= 30m

.PHONY: bench

bench:
	envoy="$$(scripts/install-envoy.sh)"; MESHWAF_ENVOY="$$envoy" \
		$(GO) test -count=1 -timeout $(BENCH_TIMEOUT) -run '^TestBench$$' -v ./bench \
		-args -full -report="$(CURDIR)/$(BENCH_REPORT)"
