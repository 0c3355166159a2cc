package rpc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// gRPC bodies are frames: a flag byte, a 4-byte length, the message.
// connect-go answers a frame that lies about its length with grpc-status 13
// (internal), as if the server had failed, where the client sent bad input.
// The API's requests are small and every stream of ours is a server stream
// (one request message), so a gRPC body is read whole, its framing checked,
// and a malformed one answered invalid_argument (grpc-status 3) before
// connect-go sees it. (A client or bidirectional stream, which sends while
// it reads, must be exempted: reading its body whole would wait for its end.)

// grpcInvalidArgument is gRPC's status code 3.
const grpcInvalidArgument = 3

// isGRPC says whether a request speaks gRPC (not gRPC-Web, whose errors
// travel in the body).
func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+") || strings.HasPrefix(ct, "application/grpc;")
}

// checkGRPCFrames reads a gRPC request body and replaces it with what was
// read; a nil answer means the framing holds. A body that cannot be read
// (too large, too slow) is left to fail where it is read next.
func checkGRPCFrames(r *http.Request) (msg string, ok bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return "", true
	}
	raw, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(raw), errReader{err}))
	if err != nil {
		return "", true
	}
	compressed := r.Header.Get("Grpc-Encoding")
	for rest := raw; len(rest) > 0; {
		if len(rest) < 5 {
			return fmt.Sprintf("the body ends inside a gRPC frame header (%d of 5 bytes): send whole frames", len(rest)), false
		}
		flag, n := rest[0], binary.BigEndian.Uint32(rest[1:5])
		switch {
		case flag > 1:
			return fmt.Sprintf("gRPC frame flag %#x is not a message flag (0 or 1)", flag), false
		case flag == 1 && (compressed == "" || compressed == "identity"):
			return "a gRPC frame is marked compressed but the request has no grpc-encoding", false
		case uint64(n) > uint64(len(rest)-5):
			return fmt.Sprintf("a gRPC frame promises %d bytes and the body holds %d: send whole frames", n, len(rest)-5), false
		}
		rest = rest[5+n:]
	}
	return "", true
}

// errReader ends a replayed body with the error its first reading met.
type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	return 0, io.EOF
}

// writeGRPCError answers a gRPC call with a status and no message, in the
// headers alone (a "trailers-only" response).
func writeGRPCError(w http.ResponseWriter, code int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(code))
	h.Set("Grpc-Message", url.PathEscape(msg))
	w.WriteHeader(http.StatusOK)
}
