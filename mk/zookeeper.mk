# ZooKeeper beside Lockstep and etcd (issue 12): bench/zookeeper is a module
# of its own (the ZooKeeper client stays out of the main go.mod) whose zkbench
# starts three ZooKeeper members from Debian's zookeeper package on 127.0.0.1
# and runs lockbench's cycle and hand-off workloads with the Go client's lock
# recipe (zk.NewLock), after a 10 s warm-up of the JVMs.
#
#   make bench-zookeeper  the workloads against ZooKeeper (about 1 minute);
#                         its output is also saved as $(BENCH_OUT)/zookeeper.txt
#   make bench-table      issue 12's targets with ratios, from the outputs
#                         saved in $(BENCH_OUT) (lockbench.txt, zookeeper.txt,
#                         etcd.txt if there is one)
#   make bench-zkpairs    the working tree's lockbench and zkbench in PAIRS
#                         interleaved pairs: Lockstep over ZooKeeper pair by
#                         pair, medians, and how often the targets held
#
# ZK_BENCH_FLAGS passes more flags to zkbench (cd bench/zookeeper && go run . -h).

ZK_BENCH_FLAGS ?=
JAVA ?= java
ZK_JAR ?= /usr/share/java/zookeeper.jar
# Where the side-by-side run keeps each generator's output for bench-table.
BENCH_OUT ?= bin/bench-out
# The Lockstep outputs bench-table compares, each FILE or LABEL=FILE (one
# column each, e.g. Connect=bin/bench-out/lockbench.txt client=...).
BENCH_TABLE_LOCKSTEP ?= $(BENCH_OUT)/lockbench.txt

# zkbench's flags in bench-zkpairs: the points issue 12's ratios are on.
ZK_PAIRS_FLAGS ?= -clients 1,64 -handoff 64

.PHONY: bench-zookeeper
bench-zookeeper: ## the same workloads against a 3-member ZooKeeper (the Go lock recipe)
	@command -v $(JAVA) >/dev/null || { echo "bench-zookeeper: no $(JAVA) binary (apt-get install -y zookeeper brings a Java runtime)" >&2; exit 1; }
	@test -f $(ZK_JAR) || { echo "bench-zookeeper: no ZooKeeper server jar at $(ZK_JAR) (apt-get install -y zookeeper)" >&2; exit 1; }
	@mkdir -p bin $(BENCH_OUT)
	cd bench/zookeeper && $(GO) build -o $(CURDIR)/bin/zkbench .
	bin/zkbench -java $(JAVA) -jar $(ZK_JAR) $(ZK_BENCH_FLAGS) | tee $(BENCH_OUT)/zookeeper.txt

.PHONY: bench-table
bench-table: ## issue 12's targets with ratios from the outputs saved in BENCH_OUT
	@mkdir -p bin
	cd bench/zookeeper && $(GO) build -o $(CURDIR)/bin/zkbench .
	bin/zkbench -table $(addprefix -lockstep ,$(BENCH_TABLE_LOCKSTEP)) -zookeeper $(BENCH_OUT)/zookeeper.txt \
		$$(test -f $(BENCH_OUT)/etcd.txt && echo -etcd $(BENCH_OUT)/etcd.txt) \
		$$(test -f $(BENCH_OUT)/lockbench-1node.txt && echo -onenode $(BENCH_OUT)/lockbench-1node.txt)

.PHONY: bench-zkpairs
bench-zkpairs: ## the working tree against ZooKeeper in PAIRS interleaved pairs: ratios pair by pair, how often the targets held
	@command -v $(JAVA) >/dev/null || { echo "bench-zkpairs: no $(JAVA) binary (apt-get install -y zookeeper brings a Java runtime)" >&2; exit 1; }
	@test -f $(ZK_JAR) || { echo "bench-zkpairs: no ZooKeeper server jar at $(ZK_JAR) (apt-get install -y zookeeper)" >&2; exit 1; }
	@mkdir -p bin
	cd bench/zookeeper && $(GO) build -o $(CURDIR)/bin/zkbench .
	$(GO) run ./bench/cmd/benchpairs -zookeeper bin/zkbench -pairs $(PAIRS) -flags "$(PAIRS_FLAGS)" \
		-zk-flags "-java $(JAVA) -jar $(ZK_JAR) $(ZK_PAIRS_FLAGS)"
