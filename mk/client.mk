# The Go client (client/) and the client commands of cmd/lockstep.
#
#   go test ./client/        starts one dev node from a freshly built binary
#                            (LOCKSTEP_BIN to reuse one); -short skips those
#   make test-integration    includes integration/cli_test.go: the client
#                            commands run as real processes
#
# The client has goroutines (keepalive, watch, observe): race-check it.
RACE_PKGS += ./client/
