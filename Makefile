# Lockstep's build. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

export CGO_ENABLED := 0
GO ?= go

# The version stamped into bin/lockstep (lockstep version, cluster status,
# the serving log line): `git describe` of a tagged checkout, else
# devel-REVISION, "+dirty" with uncommitted changes; empty where git cannot
# tell, and the binary then says "devel". A binary is relinked when a Go
# file changes, not at every commit, so it names the last commit that
# changed one.
LOCKSTEP_VERSION ?= $(shell git describe --tags --dirty --abbrev=12 2>/dev/null || \
	{ r=$$(git describe --always --dirty=+dirty --abbrev=12 2>/dev/null) && echo "devel-$$r"; } || true)
VERSION_LDFLAGS = $(if $(LOCKSTEP_VERSION),-X github.com/lockstepd/lockstep/rpc.linkedVersion=$(LOCKSTEP_VERSION))

# What `make test` runs (CI's .ci/run calls it), in this order; each step's
# rule is in the file named beside it.
#
#   fmt-check         Makefile         gofmt would change no file
#   vet               Makefile         go vet ./...
#   generate-check    mk/generate.mk   rpc/gen/ is what proto/ generates
#   test-unit         Makefile         go test ./...: unit, table, property and fuzz-seed tests
#   purity            Makefile         core stays pure (TestPurity)
#   test-race         Makefile         the concurrent packages under the race detector
#   sim               mk/sim.mk        the simulator's seed sweeps
#   test-integration  mk/server.mk     real processes on 127.0.0.1
#   test-image        mk/server.mk     the container image, built and run
#   test-chaos-hook   mk/chaos.mk      the chaos build's clock and state-hash hooks (-tags chaos)
#   test-chaos-smoke  mk/chaos.mk      two short chaos seeds against real clusters
TEST_STEPS := fmt-check vet generate-check test-unit purity test-race sim test-integration test-image test-chaos-hook test-chaos-smoke

.PHONY: test
test: $(TEST_STEPS) ## everything CI runs: format, vet, generated code, unit tests, purity, race detector, simulation, integration, image, chaos smoke

# The binaries are file targets (their rules are in mk/server.mk, sim.mk,
# chaos.mk and bench.mk), so that one make run builds each at most once and
# an unchanged one not at all. Each depends on every Go file of the module
# that is not a test, and on go.mod and go.sum: a change anywhere relinks
# it, which Go's build cache keeps cheap. `touch` because go build leaves an
# up-to-date output's time alone.
GO_SOURCES := $(shell find . \( -path ./.git -o -path ./.tools -o -path ./bench/etcd -o -path ./bench/zookeeper \) -prune -o -name '*.go' ! -name '*_test.go' -print) go.mod go.sum

# go test flags for test-unit and test-integration (e.g. GOFLAGS_TEST=-v).
GOFLAGS_TEST ?=

# The packages with goroutines and locks, checked by the race detector. The
# client (client/) has goroutines too: keepalive, watch, observe.
RACE_PKGS ?= ./runtime/ ./runtime/transport/ ./rpc/ ./config/ ./client/ ./batch/

# How long each fuzz target of make fuzz and make sim-fuzz runs.
FUZZTIME ?= 20s

-include $(sort $(wildcard mk/*.mk))

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: build
build: bin/lockstep bin/lockstep-sim bin/lockstep-chaos ## build the binaries into bin/

.PHONY: clean
clean: ## remove bin/
	rm -rf bin

.PHONY: run
# RUN_FLAGS passes more flags to serve, e.g. other ports:
#   make run RUN_FLAGS="--api-address 127.0.0.1:8081 --metrics-address 127.0.0.1:9091 --raft-address 127.0.0.1:7002"
RUN_FLAGS ?=
run: bin/lockstep ## run a single node on local disk (lockstep serve --dev; RUN_FLAGS for more flags, such as other ports)
	bin/lockstep serve --dev $(RUN_FLAGS)

.PHONY: fmt-check
fmt-check: ## fail when gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^rpc/gen/') 2>&1 || true); \
	if [ -n "$$out" ]; then echo "gofmt would change these files (run gofmt -w):"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## go vet every package
	$(GO) vet ./...

# The client's and chaos/cluster's tests start bin/lockstep (LOCKSTEP_BIN)
# instead of building a binary of their own.
.PHONY: test-unit
test-unit: bin/lockstep ## unit and property tests
	LOCKSTEP_BIN=$(CURDIR)/bin/lockstep $(GO) test $(GOFLAGS_TEST) ./...

.PHONY: test-race
test-race: bin/lockstep ## the concurrent packages under the race detector (needs cgo and gcc)
	LOCKSTEP_BIN=$(CURDIR)/bin/lockstep CGO_ENABLED=1 $(GO) test -race -count=1 $(RACE_PKGS)

.PHONY: purity
purity: ## core imports only the standard library and never reads a clock, draws randomness or starts goroutines
	$(GO) test -count=1 -run 'TestPurity' ./core/

.PHONY: bench
bench: ## benchmarks that print figures
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./core/

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./core/
	$(GO) test -run '^$$' -fuzz '^FuzzApplyDecoded$$' -fuzztime $(FUZZTIME) ./core/
	$(GO) test -run '^$$' -fuzz '^FuzzRestore$$' -fuzztime $(FUZZTIME) ./core/
	$(GO) test -run '^$$' -fuzz '^FuzzREST$$' -fuzztime $(FUZZTIME) ./rpc/
