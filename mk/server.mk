# The server: the lockstep binary, its integration tests and its image.
#
#   make build              bin/lockstep, bin/lockstep-sim, bin/lockstep-chaos
#   make run                one dev node: bin/lockstep serve --dev
#   make test-integration   single-node and three-node clusters of
#                           bin/lockstep on 127.0.0.1 (integration/, build
#                           tag "integration", the CLI's client commands
#                           included); part of make test
#   make image              the container image (Dockerfile): docker where a
#                           daemon answers, else buildah
#   make test-image         build the Dockerfile with buildah and the local
#                           binary, run it, check it from outside; part of
#                           make test (mk/test-image.sh)
#
# The integration tests take about 15 s on two cores once the binary is
# built; INTEGRATION_TIMEOUT bounds them.

bin/lockstep: $(GO_SOURCES)
	@mkdir -p $(@D)
	$(GO) build -ldflags='$(VERSION_LDFLAGS)' -o $@ ./cmd/lockstep
	@touch $@

# The image's binary, built as the Dockerfile's build stage builds it
# (static, -trimpath, stripped): test-image puts it where that stage's
# output would be.
bin/image/lockstep: $(GO_SOURCES)
	@mkdir -p $(@D)
	$(GO) build -trimpath -ldflags='-s -w $(VERSION_LDFLAGS)' -o $@ ./cmd/lockstep
	@touch $@

INTEGRATION_TIMEOUT ?= 5m

.PHONY: test-integration
test-integration: bin/lockstep ## real processes on 127.0.0.1
	$(GO) vet -tags integration ./integration/
	LOCKSTEP_BIN=$(CURDIR)/bin/lockstep $(GO) test -tags integration -count=1 -timeout $(INTEGRATION_TIMEOUT) $(GOFLAGS_TEST) ./integration/

IMAGE ?= lockstep:dev

.PHONY: image
image: ## build the container image $(IMAGE) from the Dockerfile (docker, else buildah)
	@if command -v docker >/dev/null && docker info >/dev/null 2>&1; then \
		docker build --build-arg LOCKSTEP_VERSION=$(LOCKSTEP_VERSION) -t $(IMAGE) . ; \
	elif command -v buildah >/dev/null; then \
		buildah build --isolation chroot --build-arg LOCKSTEP_VERSION=$(LOCKSTEP_VERSION) -t $(IMAGE) . ; \
	else echo "make image: neither a docker daemon nor buildah here (apt-get install -y buildah)" >&2; exit 1; fi

.PHONY: test-image
test-image: bin/image/lockstep ## build the image with buildah from the local binary, run it, check health, a lock, metrics, uid and size
	IMAGE_BIN=$(CURDIR)/bin/image/lockstep mk/test-image.sh
