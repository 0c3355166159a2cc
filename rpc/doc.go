// Package rpc is Lockstep's API: the Connect services of proto/lockstep/v1
// (served to Connect, gRPC and gRPC-Web clients), the REST paths of
// docs/design.md transcoded onto the same handlers by vanguard, gRPC health and
// reflection, the interceptor chain (metrics, and the slots for
// authentication, audit and authorization, which package security fills),
// request validation, and session ownership (ownership.go: with
// authentication on, a session belongs to the principal that created it).
//
// Read in this order: server.go (what is mounted where, the HTTP server's
// timeouts), backend.go (the one interface to the runtime), service.go and
// grants.go (the steps the handlers share: sessions made for one request,
// finding the holder a release names), then one file per service. rest.go
// holds what the REST side needs beyond vanguard (names with %2F, the
// {"code","message"} error body); codec.go the snake_case JSON; errors.go
// how core's and the runtime's errors become status codes; validate.go
// the checks made before a command is proposed (the API's own, then
// core.CheckCommand on the commands a request becomes); interceptors.go and
// ownership.go the chain and the actions each procedure needs.
//
// Handlers know nothing of Raft: they build core.Commands, call
// Backend.Do and Backend.Read, and turn results into messages. The runtime's
// *Node is the production Backend.
package rpc
