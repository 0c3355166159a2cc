package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/internal/quote"
)

// The REST side of the API is vanguard's transcoding of the google.api.http
// annotations onto the Connect handlers. Three things are done around it:
//
//  1. Names with "/" travel in a REST path as %2F. Vanguard v0.4.0 splits
//     URL.Path, which Go has already decoded, so /locks/jobs%2Fnightly/status
//     would look like four segments and 404. Vanguard unescapes each captured
//     path variable itself, so handing it the path still escaped
//     (URL.EscapedPath) routes on the raw segments and decodes the name once.
//  2. Vanguard writes errors as google.rpc.Status JSON ({"code": 3, ...}).
//     docs/design.md wants {"code": "invalid_argument", "message": "..."}, so error
//     bodies are rewritten, keeping vanguard's HTTP status.
//  3. The request is marked as REST in its context, because REST waits are
//     capped by locks.max_wait_time_seconds.

// isRPCPath says whether a path is a Connect, gRPC or gRPC-Web procedure
// (/package.Service/Method): the first segment of a REST path never has a dot.
func isRPCPath(path string) bool {
	first, _, _ := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return strings.Contains(first, ".")
}

// restFront prepares a REST request for the transcoder and rewrites its
// error bodies.
func restFront(transcoder http.Handler, routes []restRoute, maxBody int64, bodyTimeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBody {
			writeJSONError(w, http.StatusRequestEntityTooLarge, "resource_exhausted",
				fmt.Sprintf("the body is %d bytes: at most %d", r.ContentLength, maxBody))
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), restKey{}, true))
		if err := checkRESTURL(r); err != nil {
			writeJSONError(w, err.status, err.code, err.msg)
			return
		}
		body, err := readRESTBody(r, maxBody, bodyTimeout)
		if err != nil {
			writeJSONError(w, err.status, err.code, err.msg)
			return
		}
		if r.ContentLength > 0 && r.Method != http.MethodPost {
			writeJSONError(w, http.StatusBadRequest, "invalid_argument",
				fmt.Sprintf("a %s request takes no body (%d bytes came): its fields go in the path and the query", r.Method, r.ContentLength))
			return
		}
		if r.Method == http.MethodHead {
			// A health check by HEAD: answer as GET; net/http drops the body.
			r.Method = http.MethodGet
		}
		// The REST API speaks JSON only. curl -d sends its own default
		// content type (form-urlencoded) or none: read those bodies as the
		// JSON they are rather than refusing the most common first request.
		if ct := r.Header.Get("Content-Type"); r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			switch mt, _, _ := strings.Cut(strings.ToLower(ct), ";"); strings.TrimSpace(mt) {
			case "", "application/x-www-form-urlencoded":
				r.Header.Set("Content-Type", "application/json")
			case "application/json":
				// The transcoder takes "application/json" and one spelling
				// of its charset only: "application/json;charset=UTF-8"
				// (Spring's, Java's) and other spellings of the same were
				// answered 415 "sub-format not supported".
				if _, params, err := mime.ParseMediaType(ct); err != nil || !utf8Charset(params["charset"]) {
					writeJSONError(w, http.StatusUnsupportedMediaType, "invalid_argument",
						fmt.Sprintf("Content-Type %s is not accepted: the REST API takes JSON in UTF-8 (application/json, with no charset or charset=utf-8)", quote.Bounded(ct)))
					return
				}
				r.Header.Set("Content-Type", "application/json")
			default:
				writeJSONError(w, http.StatusUnsupportedMediaType, "invalid_argument",
					fmt.Sprintf("Content-Type %s is not accepted: the REST API takes a JSON body (application/json)", quote.Bounded(ct)))
				return
			}
		} else if r.Method != http.MethodPost && ct != "" {
			// A GET or DELETE has no body for the type to describe; a
			// client that sends one anyway (curl -H on every call) was
			// answered "\"application/x-www-form-urlencoded?\" sub-format
			// not supported" by the transcoder.
			r.Header.Del("Content-Type")
		}
		if err := checkRESTBody(routes, r, body); err != nil {
			writeJSONError(w, err.status, err.code, err.msg)
			return
		}
		u := *r.URL
		u.Path, u.RawPath = r.URL.EscapedPath(), ""
		r.URL = &u
		rw := &restWriter{ResponseWriter: w}
		transcoder.ServeHTTP(rw, r)
		rw.finish()
	})
}

// restWriter holds back an error response's body to rewrite it.
type restWriter struct {
	http.ResponseWriter
	status int
	body   *bytes.Buffer // non-nil once an error status was written
}

func (w *restWriter) WriteHeader(code int) {
	if code >= 400 && w.body == nil && w.status == 0 {
		w.status, w.body = code, new(bytes.Buffer)
		return
	}
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *restWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.body != nil {
		return w.body.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

func (w *restWriter) Flush() {
	if w.body != nil {
		return
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *restWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish writes the rewritten error body, if one was held back.
func (w *restWriter) finish() {
	if w.body == nil {
		return
	}
	code, msg := parseErrorBody(w.body.Bytes(), w.status)
	writeJSONError(w.ResponseWriter, w.status, code, msg)
}

// parseErrorBody reads a google.rpc.Status (numeric code), a Connect error
// (string code) or plain text.
func parseErrorBody(body []byte, status int) (code, msg string) {
	var e struct {
		Code    json.RawMessage `json:"code"`
		Message string          `json:"message"`
	}
	if err := json.Unmarshal(body, &e); err == nil && len(e.Code) > 0 {
		var n int
		var s string
		switch {
		case json.Unmarshal(e.Code, &n) == nil:
			code = restCodeName(connect.Code(n))
		case json.Unmarshal(e.Code, &s) == nil:
			code = s
		}
		if code != "" && code != "code_0" {
			if e.Message == "" {
				e.Message = http.StatusText(status)
			}
			return code, e.Message
		}
	}
	msg = strings.TrimSpace(string(body))
	if msg == "" {
		msg = http.StatusText(status)
	}
	return statusCodeName(status), msg
}

// statusCodeName names an HTTP status that did not come from a handler.
func statusCodeName(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_argument"
	case http.StatusUnauthorized:
		return "unauthenticated"
	case http.StatusForbidden:
		return "permission_denied"
	case http.StatusNotFound:
		return "not_found"
	case http.StatusMethodNotAllowed:
		return "method_not_allowed"
	case http.StatusConflict:
		return "conflict"
	case http.StatusRequestEntityTooLarge:
		return "resource_exhausted"
	case http.StatusUnsupportedMediaType:
		return "invalid_argument"
	case http.StatusTooManyRequests:
		return "resource_exhausted"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	return "http_" + strconv.Itoa(status)
}

func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, msg})
	h := w.Header()
	h.Del("Content-Encoding")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// restNotFound answers a path that is neither a REST path nor a procedure.
func restNotFound(w http.ResponseWriter, r *http.Request) {
	writeJSONError(w, http.StatusNotFound, "not_found",
		fmt.Sprintf("no such path: %s %s (see docs/api.md for the REST paths; a name with / goes in the path as %%2F)", r.Method, r.URL.Path))
}

// utf8Charset says whether a Content-Type's charset parameter (""
// when none) names UTF-8, the one JSON is sent in (RFC 8259).
func utf8Charset(cs string) bool {
	return cs == "" || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "utf8")
}
