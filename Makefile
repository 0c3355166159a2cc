# Lockstep's build. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

export CGO_ENABLED := 0
GO ?= go
GOFLAGS_TEST ?=
TOOLS := $(CURDIR)/.tools
FUZZTIME ?= 20s

# Each part adds its own rules in mk/NAME.mk, and appends to TEST_EXTRA the
# targets that `make test` must run for it.
TEST_EXTRA :=
# The packages with goroutines and locks, checked by the race detector.
RACE_PKGS ?= ./runtime/ ./rpc/ ./config/
-include $(sort $(wildcard mk/*.mk))

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: build
build: ## build the binaries into bin/
	@mkdir -p bin
	$(GO) build -o bin/ ./cmd/...

.PHONY: run
run: ## run a single node on local disk (lockstep serve --dev)
	$(GO) run ./cmd/lockstep serve --dev

.PHONY: test
test: fmt-check vet test-unit purity test-race $(TEST_EXTRA) ## everything CI runs: format, vet, unit tests, purity, race detector, generated code, simulation, integration

.PHONY: fmt-check
fmt-check: ## fail when gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^rpc/gen/') 2>&1 || true); \
	if [ -n "$$out" ]; then echo "gofmt would change these files (run gofmt -w):"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## go vet every package
	$(GO) vet ./...

.PHONY: test-unit
test-unit: ## unit and property tests
	$(GO) test $(GOFLAGS_TEST) ./...

.PHONY: test-race
test-race: ## the concurrent packages under the race detector (needs cgo and gcc)
	CGO_ENABLED=1 $(GO) test -race -count=1 $(RACE_PKGS)

.PHONY: purity
purity: ## core imports only the standard library and never reads a clock, draws randomness or starts goroutines
	$(GO) test -count=1 -run 'TestPurity' ./core/

.PHONY: test-integration
test-integration: ## real processes on 127.0.0.1
	@mkdir -p bin
	$(GO) build -o bin/lockstep ./cmd/lockstep
	$(GO) vet -tags integration ./integration/
	LOCKSTEP_BIN=$(CURDIR)/bin/lockstep $(GO) test -tags integration -count=1 -timeout $(INTEGRATION_TIMEOUT) $(GOFLAGS_TEST) ./integration/

.PHONY: test-chaos
test-chaos: ## fault tests against real processes
	@echo "make test-chaos: no chaos tests yet" >&2; exit 1

.PHONY: test-performance
test-performance: ## end-to-end load against a real 3-node cluster, short bounded profile (mk/bench.mk)
	@mkdir -p bin
	$(GO) build -o bin/lockstep ./cmd/lockstep
	$(GO) build -o bin/lockbench ./bench/cmd/lockbench
	bin/lockbench -bin bin/lockstep $(PERF_FLAGS)

.PHONY: bench
bench: ## benchmarks that print figures
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./core/

.PHONY: fuzz
fuzz: ## run each fuzz target for FUZZTIME
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./core/
	$(GO) test -run '^$$' -fuzz '^FuzzApplyDecoded$$' -fuzztime $(FUZZTIME) ./core/
	$(GO) test -run '^$$' -fuzz '^FuzzRestore$$' -fuzztime $(FUZZTIME) ./core/
	$(GO) test -run '^$$' -fuzz '^FuzzREST$$' -fuzztime $(FUZZTIME) ./rpc/
