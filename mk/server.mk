# The server: the lockstep binary, its integration tests and its image.
#
#   make build              bin/lockstep (top Makefile)
#   make run                one dev node: go run ./cmd/lockstep serve --dev
#   make test-integration   single-node and three-node clusters of the built
#                           binary on 127.0.0.1 (integration/, build tag
#                           "integration"); part of make test
#   make image              the container image (Dockerfile): docker where a
#                           daemon answers, else buildah
#   make test-image         build the Dockerfile with buildah and the local
#                           binary, run it, check it from outside; part of
#                           make test (mk/test-image.sh)
#
# The integration tests take about 15 s on two cores once the binary is
# built; INTEGRATION_TIMEOUT bounds them.

TEST_EXTRA += test-integration
INTEGRATION_TIMEOUT ?= 5m
IMAGE ?= lockstep:dev

.PHONY: image
image: ## build the container image $(IMAGE) from the Dockerfile (docker, else buildah)
	@if command -v docker >/dev/null && docker info >/dev/null 2>&1; then \
		docker build -t $(IMAGE) . ; \
	elif command -v buildah >/dev/null; then \
		buildah build --isolation chroot -t $(IMAGE) . ; \
	else echo "make image: neither a docker daemon nor buildah here (apt-get install -y buildah)" >&2; exit 1; fi

.PHONY: test-image
test-image: ## build the image with buildah from the local binary, run it, check health, a lock, metrics, uid and size
	mk/test-image.sh

TEST_EXTRA += test-image
