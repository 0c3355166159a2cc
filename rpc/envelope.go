package rpc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// gRPC, gRPC-Web and Connect streaming bodies are frames: a flag byte, a
// 4-byte length, the message. connect-go answers a frame that lies about its
// length with internal (grpc-status 13), as if the server had failed, where
// the client sent bad input.
// The API's requests are small and every stream of ours is a server stream
// (one request message), so a gRPC body is read whole, its framing checked,
// and a malformed one answered invalid_argument (grpc-status 3) before
// connect-go sees it. A client or bidirectional stream sends while it reads,
// and reading its body whole would wait for its end: framesWhole keeps the
// check to the procedures whose request is one message.

// grpcInvalidArgument is gRPC's status code 3.
const grpcInvalidArgument = 3

// framesWhole says whether a procedure's request body is complete when the
// call starts: every lockstep.v1 procedure is unary or a server stream but
// the session streams (Stream, Multiplex). Reflection's stream is
// bidirectional too; none is checked here.
func framesWhole(path string) bool {
	return !sessionStreamPath(path) && isService(serviceOf(path))
}

// sessionStreamPath says whether path is one of the bidirectional session
// streams, whose request body lasts as long as the stream.
func sessionStreamPath(path string) bool {
	return path == lockstepv1connect.SessionServiceStreamProcedure || path == lockstepv1connect.SessionServiceMultiplexProcedure
}

// envelopeProtocol names the enveloped protocol a request speaks: "grpc",
// "grpc-web", "connect" (Connect streaming), or "" (Connect unary, REST:
// their bodies are the message alone).
func envelopeProtocol(r *http.Request) string {
	ct := strings.ToLower(r.Header.Get("Content-Type"))
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		return "grpc-web"
	case ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+") || strings.HasPrefix(ct, "application/grpc;"):
		return "grpc"
	case strings.HasPrefix(ct, "application/connect+"):
		return "connect"
	}
	return ""
}

// compressionHeader is where each protocol names its message compression.
func compressionHeader(protocol string) string {
	if protocol == "connect" {
		return "Connect-Content-Encoding"
	}
	return "Grpc-Encoding"
}

// checkGRPCFrames reads a gRPC request body and replaces it with what was
// read; a nil answer means the framing holds. A body that cannot be read
// (too large, too slow) is left to fail where it is read next.
func checkFrames(r *http.Request, protocol string) (msg string, ok bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return "", true
	}
	raw, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(raw), errReader{err}))
	if err != nil {
		return "", true
	}
	compressed := r.Header.Get(compressionHeader(protocol))
	for rest := raw; len(rest) > 0; {
		if len(rest) < 5 {
			return fmt.Sprintf("the body ends inside a gRPC frame header (%d of 5 bytes): send whole frames", len(rest)), false
		}
		flag, n := rest[0], binary.BigEndian.Uint32(rest[1:5])
		switch {
		case flag > 1:
			return fmt.Sprintf("gRPC frame flag %#x is not a message flag (0 or 1)", flag), false
		case flag == 1 && (compressed == "" || compressed == "identity"):
			return fmt.Sprintf("a frame is marked compressed but the request has no %s", compressionHeader(protocol)), false
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

// writeFrameError answers invalid_argument the way the protocol carries
// errors: gRPC and gRPC-Web in the headers alone (a "trailers-only"
// response), Connect streaming in an end-of-stream frame.
func writeFrameError(w http.ResponseWriter, r *http.Request, protocol, msg string) {
	h := w.Header()
	h.Set("Content-Type", r.Header.Get("Content-Type"))
	if protocol != "connect" {
		h.Set("Grpc-Status", strconv.Itoa(grpcInvalidArgument))
		h.Set("Grpc-Message", url.PathEscape(msg))
		w.WriteHeader(http.StatusOK)
		return
	}
	end, _ := json.Marshal(map[string]any{"error": map[string]string{"code": "invalid_argument", "message": msg}})
	frame := make([]byte, 5, 5+len(end))
	frame[0] = connectEndStream
	binary.BigEndian.PutUint32(frame[1:], uint32(len(end)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(frame, end...))
}

// connectEndStream flags the Connect protocol's last frame.
const connectEndStream = 0x02
