module github.com/lockstepd/lockstep/bench/zookeeper

go 1.26

require github.com/go-zookeeper/zk v1.0.4
