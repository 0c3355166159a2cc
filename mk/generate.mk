# Code generation: proto/ → rpc/gen/ (protobuf messages and Connect services).
#
#   make generate             install the pinned tools if missing, regenerate
#                             rpc/gen/ and its checksum manifest
#   make generate-check       (part of make test) fail when rpc/gen/ does not
#                             match proto/; see "How the check works" below
#   make generate-check-full  regenerate into a temporary folder and diff it
#                             against rpc/gen/ (installs the tools if missing)
#   make proto-fmt            format the .proto files with buf format
#
# The tools are built from source with `go install` into .tools/bin (git-
# ignored), never added to go.mod: buf pulls a pre-release protobuf that would
# break the main module's `go list -m all` (measured when the Makefile was written). Building buf takes
# about 3 minutes on 2 cores with a warm Go build cache and 5.5 minutes with
# an empty one (measured); every later run finds it in place and skips it. A pinned version changed below is noticed (each tool reports its
# version) and reinstalled.
#
# The buf Schema Registry is unreachable, so google/api/annotations.proto and
# http.proto (for the google.api.http REST annotations) come from the Go module
# zip of grpc-gateway v1.16.0 (third_party/googleapis/), copied from the module
# cache into .tools/googleapis, which buf.yaml lists as a second module. We do
# not commit someone else's files; their Go package is
# google.golang.org/genproto/googleapis/api, a requirement in go.mod.
#
# How the check works. rpc/gen/generate.sum is a manifest that `make generate`
# writes after a successful generation: the pinned tool versions, then the
# sha256 of every input (buf.yaml, buf.gen.yaml, proto/**) and of every
# output file under rpc/gen/. `make generate-check` recomputes it from the
# working tree (sha256sum over about twenty small files: milliseconds, no
# tools, works on a fresh CI machine) and diffs. That catches:
#   - a .proto file (or the buf configuration) changed without regenerating;
#   - a generated file edited by hand, added or deleted;
#   - a tool version bumped here without regenerating.
# It does not catch a manifest forged by hand to match an edit, since it
# compares hashes, not a regeneration. That needs the tools, so:
#   - when the pinned tools are already installed in .tools/bin (a developer
#     machine, or a CI cache of .tools/), generate-check also regenerates
#     into a temporary folder and diffs (well under a second);
#   - on a fresh machine without them it does the manifest check only and
#     says so, instead of spending 3-5 minutes building buf on every CI run.
#     GENERATE_CHECK=full makes it install the tools and regenerate anyway
#     (or run `make generate-check-full`); GENERATE_CHECK=sums skips the
#     regeneration even when the tools are present.

BUF_VERSION                   := v1.75.0
PROTOC_GEN_GO_VERSION         := v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION := v1.21.1
GOOGLEAPIS_MODULE             := github.com/grpc-ecosystem/grpc-gateway@v1.16.0

GENERATE_CHECK ?= auto

# Where the pinned tools and the google/api protos are installed (git-ignored).
TOOLS                 := $(CURDIR)/.tools
GEN_TOOLS_BIN         := $(TOOLS)/bin
BUF                   := $(GEN_TOOLS_BIN)/buf
PROTOC_GEN_GO         := $(GEN_TOOLS_BIN)/protoc-gen-go
PROTOC_GEN_CONNECT_GO := $(GEN_TOOLS_BIN)/protoc-gen-connect-go
GOOGLEAPIS_DIR        := $(TOOLS)/googleapis
GEN_OUT               := rpc/gen
GEN_SUM               := $(GEN_OUT)/generate.sum

# A shell test: true when all three tools are installed at the pinned versions.
gen_tools_ok = [ "$$($(BUF) --version 2>/dev/null)" = "$(BUF_VERSION:v%=%)" ] && \
	[ "$$($(PROTOC_GEN_GO) --version 2>/dev/null)" = "protoc-gen-go $(PROTOC_GEN_GO_VERSION)" ] && \
	[ "$$($(PROTOC_GEN_CONNECT_GO) --version 2>/dev/null)" = "$(PROTOC_GEN_CONNECT_GO_VERSION:v%=%)" ]

# Shell commands that print the manifest of the working tree to stdout.
gen_manifest = { \
	printf '%s\n' '$(HASH_SIGN) Written by `make generate` (mk/generate.mk), checked by `make generate-check`. Do not edit.' \
		'$(HASH_SIGN) tools: buf $(BUF_VERSION), protoc-gen-go $(PROTOC_GEN_GO_VERSION), protoc-gen-connect-go $(PROTOC_GEN_CONNECT_GO_VERSION), google/api from $(GOOGLEAPIS_MODULE)'; \
	find buf.yaml buf.gen.yaml proto $(GEN_OUT) -type f ! -path '$(GEN_SUM)' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; }
HASH_SIGN := \#

.PHONY: generate-tools
generate-tools: ## install buf, protoc-gen-go and protoc-gen-connect-go into .tools/bin when missing
	@if [ "$$($(BUF) --version 2>/dev/null)" != "$(BUF_VERSION:v%=%)" ]; then \
		echo "installing buf $(BUF_VERSION) into .tools/bin (3-5 minutes on 2 cores)"; \
		GOBIN=$(GEN_TOOLS_BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION); fi
	@if [ "$$($(PROTOC_GEN_GO) --version 2>/dev/null)" != "protoc-gen-go $(PROTOC_GEN_GO_VERSION)" ]; then \
		echo "installing protoc-gen-go $(PROTOC_GEN_GO_VERSION) into .tools/bin"; \
		GOBIN=$(GEN_TOOLS_BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION); fi
	@if [ "$$($(PROTOC_GEN_CONNECT_GO) --version 2>/dev/null)" != "$(PROTOC_GEN_CONNECT_GO_VERSION:v%=%)" ]; then \
		echo "installing protoc-gen-connect-go $(PROTOC_GEN_CONNECT_GO_VERSION) into .tools/bin"; \
		GOBIN=$(GEN_TOOLS_BIN) $(GO) install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(PROTOC_GEN_CONNECT_GO_VERSION); fi

# The google/api protos, copied from the module cache (downloaded through the
# Go module proxy if absent). VERSION records where they came from, so that a
# change of GOOGLEAPIS_MODULE copies them again.
.PHONY: generate-googleapis
generate-googleapis:
	@if [ "$$(cat $(GOOGLEAPIS_DIR)/VERSION 2>/dev/null)" != "$(GOOGLEAPIS_MODULE)" ]; then \
		dir=$$($(GO) mod download -json $(GOOGLEAPIS_MODULE) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$$/\1/p'); \
		src="$$dir/third_party/googleapis"; \
		if [ ! -f "$$src/google/api/annotations.proto" ]; then \
			echo "generate: no google/api/annotations.proto in the module $(GOOGLEAPIS_MODULE) (looked in '$$src')" >&2; exit 1; fi; \
		rm -rf $(GOOGLEAPIS_DIR); mkdir -p $(GOOGLEAPIS_DIR)/google/api; \
		install -m 0644 "$$src/google/api/annotations.proto" "$$src/google/api/http.proto" $(GOOGLEAPIS_DIR)/google/api/; \
		install -m 0644 "$$src/LICENSE" $(GOOGLEAPIS_DIR)/; \
		echo "$(GOOGLEAPIS_MODULE)" > $(GOOGLEAPIS_DIR)/VERSION; \
		echo "copied google/api/{annotations,http}.proto from $(GOOGLEAPIS_MODULE) into .tools/googleapis"; fi

# Lint (buf.yaml: STANDARD + COMMENTS) and format check of proto/, shared by
# generate and generate-check-full.
.PHONY: generate-lint
generate-lint: generate-tools generate-googleapis
	@$(BUF) lint proto
	@if ! $(BUF) format --diff --exit-code proto; then \
		echo "generate: the .proto files above are not in buf format; run make proto-fmt" >&2; exit 1; fi

.PHONY: generate
generate: generate-lint ## regenerate rpc/gen/ from proto/ (installs the pinned tools into .tools/ when missing)
	@mkdir -p $(TOOLS); tmp=$$(mktemp -d $(TOOLS)/generate.XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	$(BUF) generate -o "$$tmp"; \
	rm -rf $(GEN_OUT); mkdir -p $(dir $(GEN_OUT)); mv "$$tmp/$(GEN_OUT)" $(GEN_OUT); \
	$(gen_manifest) > $(GEN_SUM); \
	echo "generated $(GEN_OUT)/ and $(GEN_SUM): commit them with the .proto change"

.PHONY: proto-fmt
proto-fmt: generate-tools ## format proto/ with buf format
	$(BUF) format -w proto

.PHONY: generate-check
generate-check: ## fail when rpc/gen/ is stale or was edited by hand (manifest always; regeneration when the tools are installed)
	@if [ ! -f $(GEN_SUM) ]; then \
		echo "generate-check: $(GEN_SUM) is missing; run make generate and commit rpc/gen/" >&2; exit 1; fi; \
	if ! out=$$(diff -u --label '$(GEN_SUM) (committed)' --label 'working tree' $(GEN_SUM) <($(gen_manifest))); then \
		echo "$$out" >&2; \
		echo "generate-check: FAILED: rpc/gen/ does not match proto/ (lines above: '-' recorded by the last make generate," \
			"'+' now). A .proto or buf file changed without regenerating, a generated file was edited by hand, or a tool" \
			"version changed. Run make generate and commit proto/ and rpc/gen/ together." >&2; exit 1; fi
	@case "$(GENERATE_CHECK)" in \
	full) $(MAKE) --no-print-directory generate-check-full ;; \
	sums) echo "generate-check: rpc/gen/ matches its manifest (GENERATE_CHECK=sums: regeneration skipped)" ;; \
	auto) if $(gen_tools_ok); then $(MAKE) --no-print-directory generate-check-full; \
		else echo "generate-check: rpc/gen/ matches its manifest; the full regeneration is skipped because the pinned tools" \
			"are not in .tools/bin (make generate-check-full, or GENERATE_CHECK=full, installs them: 3-5 minutes)"; fi ;; \
	*) echo "generate-check: GENERATE_CHECK must be auto, full or sums, not '$(GENERATE_CHECK)'" >&2; exit 1 ;; \
	esac

.PHONY: generate-check-full
generate-check-full: generate-lint ## regenerate into a temporary folder and fail if rpc/gen/ differs
	@mkdir -p $(TOOLS); tmp=$$(mktemp -d $(TOOLS)/generate-check.XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	$(BUF) generate -o "$$tmp"; \
	if ! diff -ru --exclude=$(notdir $(GEN_SUM)) "$$tmp/$(GEN_OUT)" $(GEN_OUT); then \
		echo "generate-check-full: FAILED: rpc/gen/ differs from what proto/ generates (diff above: '-' generated," \
			"'+' committed). Run make generate and commit proto/ and rpc/gen/ together; do not edit rpc/gen/ by hand." >&2; \
		exit 1; fi; \
	echo "generate-check-full: rpc/gen/ is exactly what proto/ generates"
