# Fleet benchmark (issue 5): `make bench-fleet` builds the real meshwaf-xds,
# generates 10,000 hosts across 100 WAFPolicies, connects 1,000 simulated
# agents to it over loopback and measures one-host change latency and
# bytes, full resyncs (fresh agents, control plane restarts), memory, CPU
# and goroutines, then writes docs/reports/fleet.md (keeping its
# hand-written notes section). It stops by itself; expect 10–30 minutes on
# 2 cores. `make test` runs the same harness at 50 agents and 500 hosts
# (integration/fleet TestFleet without -full) so that it cannot rot.
#
# No -race here: the race detector would slow the simulated agents, which
# share the machine with the control plane. FLEET_ARGS adds flags, e.g.
# FLEET_ARGS='-agents 500 -stuck 20 -cp-log /tmp/xds.log'.

FLEET_REPORT ?= docs/reports/fleet.md
FLEET_TIMEOUT ?= 60m
FLEET_ARGS ?=

.PHONY: bench-fleet

bench-fleet:
	$(GO) test -count=1 -timeout $(FLEET_TIMEOUT) -run '^TestFleet$$' -v ./integration/fleet \
		-args -full -report="$(CURDIR)/$(FLEET_REPORT)" $(FLEET_ARGS)
