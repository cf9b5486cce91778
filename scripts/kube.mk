# Kubernetes: a real kube-apiserver + etcd for the tests of integration/kube
# and of the Kubernetes source (issue 3). scripts/install-kube.sh builds
# kube-apiserver and kubectl from the Go module proxy (~15 min cold on 2
# cores, then cached under $(MESHWAF_CACHE)) and installs Debian's etcd.

.PHONY: kube kube-test

## kube: install the binaries and print their paths (MESHWAF_KUBE_APISERVER=...
## lines, which the harness reads from the environment when set).
kube:
	@scripts/install-kube.sh

## kube-test: the harness's own tests. The install runs first, outside the go
## test timeout, because a cold build takes longer than most test budgets.
kube-test:
	kube_env="$$(scripts/install-kube.sh)"; export $$kube_env; \
	$(GO) test -race -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) ./integration/kube/...
