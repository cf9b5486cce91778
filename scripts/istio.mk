# Istio (issue 11): a real istiod and the gateways' pilot-agent for the tests
# of integration/istio. scripts/install-istio.sh builds pilot-discovery and
# pilot-agent from the Go module proxy (~10 min cold on 2 cores, then cached
# under $(MESHWAF_CACHE)) with Istio's bootstrap template and CRDs.

.PHONY: istio istio-test

## istio: install the parts and print their paths (MESHWAF_PILOT_DISCOVERY=...
## lines, which the harness reads from the environment when set).
istio:
	@scripts/install-istio.sh

## istio-test: the Istio tier alone. The installs run first, outside the go
## test timeout, because cold builds take longer than most test budgets.
istio-test:
	envoy="$$(scripts/install-envoy.sh)"; kube_env="$$(scripts/install-kube.sh)"; export $$kube_env; \
	istio_env="$$(scripts/install-istio.sh)"; export $$istio_env; \
	MESHWAF_ENVOY="$$envoy" $(GO) test -race -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) ./integration/istio/...
