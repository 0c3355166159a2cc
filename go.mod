module github.com/lockstepd/lockstep

go 1.26

require (
	github.com/anishathalye/porcupine v1.3.1 // indirect
	go.etcd.io/raft/v3 v3.7.0 // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)
