# The load generator (bench/): a three-node cluster of separate
# `lockstep serve` processes on 127.0.0.1, driven through the Connect API.
#
#   make bench-server    every workload at full length (about 3 minutes)
#   make bench-etcd      the same workloads against 3 etcd members (Debian's
#                        etcd-server: apt-get install -y etcd-server)
#   make bench-compare   both, one after the other, in one run
#   make bench-pairs     two builds of Lockstep, interleaved (BASE, PAIRS)
#   make test-performance  a short bounded profile (PERF_FLAGS)
#
# BENCH_FLAGS passes more flags to lockbench (go run ./bench/cmd/lockbench -h).
# bench/etcd is a module of its own: the etcd client's grpc and protobuf
# versions stay out of the main go.mod.

BENCH_FLAGS ?=
ETCD_BENCH_FLAGS ?=
ETCD ?= etcd

bin/lockbench: $(GO_SOURCES)
	@mkdir -p $(@D)
	$(GO) build -o $@ ./bench/cmd/lockbench
	@touch $@

bin/etcdbench: $(wildcard bench/etcd/*.go) bench/etcd/go.mod bench/etcd/go.sum
	@mkdir -p $(@D)
	cd bench/etcd && $(GO) build -o $(CURDIR)/$@ .
	@touch $@

.PHONY: bench-server
bench-server: bin/lockstep bin/lockbench ## load generator: cycles/s and latency at 1..256 clients, hand-offs, failover, RSS at 100k locks
	bin/lockbench -bin bin/lockstep $(BENCH_FLAGS)

# make bench-pairs compares the working tree with BASE (a git revision) in
# PAIRS interleaved lockbench runs, each build with its own server and
# client, and prints every figure's medians (bench/cmd/benchpairs).
BASE ?= HEAD
PAIRS ?= 3
PAIRS_FLAGS ?= -clients 1,64 -handoff 64 -failover 0 -partition 0 -mem 0 -idle 0 -via client

.PHONY: bench-pairs
bench-pairs: ## the working tree against BASE=rev in PAIRS interleaved lockbench runs, medians of every figure
	$(GO) run ./bench/cmd/benchpairs -base $(BASE) -pairs $(PAIRS) -flags "$(PAIRS_FLAGS)"

.PHONY: bench-etcd
bench-etcd: bin/etcdbench ## the same workloads against a 3-member etcd (concurrency.Mutex)
	@command -v $(ETCD) >/dev/null || { echo "bench-etcd: no $(ETCD) binary (apt-get install -y etcd-server)" >&2; exit 1; }
	bin/etcdbench -bin $(ETCD) $(ETCD_BENCH_FLAGS)

.PHONY: bench-compare
bench-compare: ## lockstep, etcd and ZooKeeper side by side in one run, then the targets table
	@mkdir -p $(BENCH_OUT)
	$(MAKE) --no-print-directory bench-server BENCH_FLAGS="$(BENCH_FLAGS)" | tee $(BENCH_OUT)/lockbench.txt
	$(MAKE) --no-print-directory bench-etcd ETCD_BENCH_FLAGS="$(ETCD_BENCH_FLAGS)" | tee $(BENCH_OUT)/etcd.txt
	$(MAKE) --no-print-directory bench-zookeeper ZK_BENCH_FLAGS="$(ZK_BENCH_FLAGS)"
	$(MAKE) --no-print-directory bench-table

# The short profile of make test-performance: about 50 s.
PERF_FLAGS ?= -strict -dur 2s -clients 1,16,64 -handoff 16 -failover 1 -partition 1 -mem 10000

.PHONY: test-performance
test-performance: bin/lockstep bin/lockbench ## end-to-end load against a real 3-node cluster, short bounded profile
	bin/lockbench -bin bin/lockstep $(PERF_FLAGS)
