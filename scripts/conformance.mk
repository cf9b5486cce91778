# CRS conformance (issue 4): the OWASP CRS v4.25.0 regression suite through
# a real Envoy and agent, once over ext_authz and once over ext_proc. `make
# test` runs the same tests (go test ./... includes integration/conformance);
# `make conformance` runs only them, without -race, and rewrites
# docs/reports/conformance.md from the results. Ignored tests and their
# reasons: integration/conformance/ignored.yaml.

CONFORMANCE_REPORT ?= docs/reports/conformance.md
CONFORMANCE_TIMEOUT ?= 30m

.PHONY: conformance

conformance:
	envoy="$$(scripts/install-envoy.sh)"; MESHWAF_ENVOY="$$envoy" \
		$(GO) test -count=1 -timeout $(CONFORMANCE_TIMEOUT) -run '^TestCRS' -v ./integration/conformance \
		-args -report="$(CURDIR)/$(CONFORMANCE_REPORT)"
