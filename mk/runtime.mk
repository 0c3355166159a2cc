# The runtime's rules. Its tests (real Dragonboat clusters on 127.0.0.1,
# about 15 s) already run in `make test` through `go test ./...`.

.PHONY: test-runtime
test-runtime: ## the runtime and config tests alone, verbose
	$(GO) test -count=1 -v ./runtime/ ./config/

.PHONY: test-runtime-race
test-runtime-race: ## the runtime tests under the race detector (needs cgo; the first build takes several minutes)
	CGO_ENABLED=1 $(GO) test -race -count=1 ./runtime/ ./config/

.PHONY: bench-runtime
bench-runtime: ## acquire+release cycles/s and latency through a 3-node in-process cluster, 1..256 clients
	$(GO) test -count=1 -run '^$$' -bench AcquireRelease -benchtime 4000x ./runtime/
