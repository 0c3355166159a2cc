# The server: the lockstep binary, its integration tests and its image.
#
#   make build              bin/lockstep (top Makefile)
#   make run                one dev node: go run ./cmd/lockstep serve --dev
#   make test-integration   single-node and three-node clusters of the built
#                           binary on 127.0.0.1 (integration/, build tag
#                           "integration"); part of make test
#   make image              the container image (Dockerfile), where docker runs
#
# The integration tests take about 15 s on two cores once the binary is
# built; INTEGRATION_TIMEOUT bounds them.

TEST_EXTRA += test-integration
INTEGRATION_TIMEOUT ?= 5m
IMAGE ?= lockstep:dev

.PHONY: image
image: ## build the container image $(IMAGE) from the Dockerfile
	docker build -t $(IMAGE) .
