package rpc

import "net/http"

// Every HTTP/2 request runs on a goroutine of its own, which starts with the
// smallest stack (2 KiB). On its way down the handler chain (Connect, the
// interceptors, the runtime's Do) that stack used to grow three times, 2 → 4
// → 8 → 16 KiB, each time copying a deeper stack: runtime.newstack and
// copystack were 10% of the leader's CPU under load (docs/performance.md).
// Growing it once, at the top of the chain where the stack is still
// shallow, costs one cheap copy instead. A session stream's requests go
// down the same chain on goroutines kept for reuse (workers.go), each
// grown the same way once, when it starts.

// growStackBytes is the frame growStack puts on the stack: with the few
// frames above it, the runtime grows a fresh 2 KiB stack straight to
// 16 KiB, what a unary call needs (a deeper call grows it once more).
const growStackBytes = 10 << 10

// stackIndex is read by growStack so that the compiler keeps its frame.
var stackIndex = 0

// growStack makes the calling goroutine's stack at least growStackBytes
// deep, in one step.
//
//go:noinline
func growStack() byte {
	var buf [growStackBytes]byte
	return buf[stackIndex]
}

// preGrow grows each request's stack before next runs.
func preGrow(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		growStack()
		next.ServeHTTP(w, r)
	})
}
