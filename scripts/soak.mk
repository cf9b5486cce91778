# Soak (issue 14): `make soak` runs integration TestSoak for 30 minutes:
# mixed traffic (benign and SQLi GETs to a Prevent and a Detect host) at
# 400 requests per second, about half of capacity, through Envoy + agent, a policy edit every 10 s,
# the control plane killed and restarted once and the agent restarted once,
# and writes docs/reports/soak.md (verdicts, audit lines against answers,
# memory and goroutine slopes). `make test` runs the same test for two
# minutes. No -race here: the race detector would change the memory it
# measures.

SOAK_REPORT ?= docs/reports/soak.md
SOAK_DURATION ?= 30m

.PHONY: soak

soak:
	envoy="$$(scripts/install-envoy.sh)"; MESHWAF_ENVOY="$$envoy" \
		$(GO) test -count=1 -timeout 60m -run '^TestSoak$$' -v ./integration \
		-args -soak=$(SOAK_DURATION) -soak-rate=400 -soak-report="$(CURDIR)/$(SOAK_REPORT)"
