# The load generator (bench/): a three-node cluster of separate
# `lockstep serve` processes on 127.0.0.1, driven through the Connect API.
#
#   make bench-server    every workload at full length (about 3 minutes)
#   make bench-etcd      the same workloads against 3 etcd members (Debian's
#                        etcd-server: apt-get install -y etcd-server)
#   make bench-compare   Lockstep (through the Go client and raw Connect),
#                        one Lockstep node alone, etcd and ZooKeeper, one
#                        after the other, then issue 12's targets table
#                        (the one-node run before the JVMs: right after
#                        ZooKeeper's it ran in their wake, load 6)
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

# bench-compare drives Lockstep both ways issue 12 compares: through the Go
# client (its targets) and through raw Connect unary calls (what the session
# stream is worth). BENCH_FLAGS comes after, so a -via there wins.
COMPARE_FLAGS ?= -via client,connect
# The one-node point (issue 12: "one node, serve --dev"): the same defaults,
# one member.
ONENODE_FLAGS ?= -nodes 1 -clients 1,64,256 -handoff 64 -failover 0 -partition 0 -mem 0 -idle 0 -via client,connect

.PHONY: bench-compare
bench-compare: ## lockstep, etcd, ZooKeeper and one lockstep node side by side in one run, then the targets table
	@mkdir -p $(BENCH_OUT)
	$(MAKE) --no-print-directory bench-server BENCH_FLAGS="$(COMPARE_FLAGS) $(BENCH_FLAGS)" | tee $(BENCH_OUT)/lockbench.txt
	$(MAKE) --no-print-directory bench-onenode
	$(MAKE) --no-print-directory bench-etcd ETCD_BENCH_FLAGS="$(ETCD_BENCH_FLAGS)" | tee $(BENCH_OUT)/etcd.txt
	$(MAKE) --no-print-directory bench-zookeeper ZK_BENCH_FLAGS="$(ZK_BENCH_FLAGS)"
	$(MAKE) --no-print-directory bench-table

.PHONY: bench-onenode
bench-onenode: bin/lockstep bin/lockbench ## one lockstep node alone (what serve --dev runs): cycles and hand-offs, for the targets table
	@mkdir -p $(BENCH_OUT)
	bin/lockbench -bin bin/lockstep $(ONENODE_FLAGS) | tee $(BENCH_OUT)/lockbench-1node.txt

# The short profile of make test-performance: about 50 s.
PERF_FLAGS ?= -strict -dur 2s -clients 1,16,64 -handoff 16 -failover 1 -partition 1 -mem 10000

.PHONY: test-performance
test-performance: bin/lockstep bin/lockbench ## end-to-end load against a real 3-node cluster, short bounded profile
	bin/lockbench -bin bin/lockstep $(PERF_FLAGS)
