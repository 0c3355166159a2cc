package rpc

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/lockstepd/lockstep/core/shards"
	"github.com/lockstepd/lockstep/internal/quote"
)

// What a REST request may carry besides its path and JSON body, checked
// before the transcoder sees it. Vanguard would take any field from the
// query string and let it override the path and the body: DELETE
// /sessions/1?session_id=2 closed session 2, and POST
// /locks/a/acquire?name=b acquired b. Anything that authorizes by the URL (a
// proxy's rules, an ACL on name prefixes) would be bypassed that way. So the
// query carries only what a method documents, and nothing else.
//
// The body is read first and then the path is applied, so a body field that
// repeats a path variable lost to the path in silence: POST
// /locks/jobs%2Fok/acquire with {"name":"other/evil"} acquired jobs/ok. That
// is safe for the server, which authorizes and acts on the same message, but
// anything else that reads the body (a proxy, an ACL layer, a log) sees
// another name than the one acted on, and a client that sends the wrong name
// never learns it. So a body may repeat a path variable only with the same
// value (checkRESTBody).

// restQuery lists the query parameters REST accepts, by method: a read may
// ask for a stale answer; DELETE /sessions/{id} has no body, so its dedupe
// identity and whether it applies the lock-delay travel in the query.
var restQuery = map[string][]string{
	http.MethodGet:    {"stale"},
	http.MethodDelete: {"client_id", "request_seq", "lowest_pending_seq", "apply_lock_delay"},
}

// restListQuery is what GET /sessions (SessionService.List) takes besides
// stale: it has no body, so what it asks travels in the query.
var restListQuery = []string{"owner_prefix", "page_size", "page_token"}

// restQueryOf is the query parameters r's method and path accept.
func restQueryOf(r *http.Request) []string {
	method := r.Method
	if method == http.MethodHead {
		// HEAD is a GET without the body (the router serves it so): the
		// same query, or curl -I of a stale read is refused.
		method = http.MethodGet
	}
	allowed := restQuery[method]
	if method == http.MethodGet && strings.Trim(r.URL.EscapedPath(), "/") == "sessions" {
		allowed = append(slices.Clip(allowed), restListQuery...)
	}
	return allowed
}

// inputError is a refusal of a REST request before it is decoded: an HTTP
// status, the JSON error code and a message that says what to fix.
type inputError struct {
	status int
	code   string
	msg    string
}

func (e *inputError) Error() string { return e.msg }

func badInput(format string, args ...any) *inputError {
	return &inputError{http.StatusBadRequest, "invalid_argument", fmt.Sprintf(format, args...)}
}

// checkRESTURL refuses query parameters the method does not document, one
// given twice, and a path that is not valid UTF-8 once unescaped.
func checkRESTURL(r *http.Request) *inputError {
	for _, seg := range strings.Split(r.URL.EscapedPath(), "/") {
		s, err := url.PathUnescape(seg)
		if err != nil {
			return badInput("the path segment %s is not valid percent-encoding: escape %% as %%25", quote.Bounded(seg))
		}
		if !utf8.ValidString(s) {
			return badInput("the path segment %s is not valid UTF-8: names are printable UTF-8, percent-encoded in the path", quote.Bounded(seg))
		}
	}
	// The one numeric path variable: vanguard's own message for it ("invalid
	// character 'a' looking for beginning of value") says neither what nor
	// where.
	if segs := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/"); len(segs) >= 2 && segs[0] == "sessions" {
		if _, err := strconv.ParseUint(segs[1], 10, 64); errors.Is(err, strconv.ErrRange) {
			return badInput("session_id %s in the path is too large (at most %d): use the session_id that POST /sessions answered", quote.Bounded(segs[1]), uint64(math.MaxUint64))
		} else if err != nil {
			return badInput("session_id %s in the path is not a whole number: use the session_id that POST /sessions answered", quote.Bounded(segs[1]))
		}
	}
	if r.URL.RawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return badInput("the query string does not parse: %v", err)
	}
	allowed := restQueryOf(r)
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range q {
			if !yield(k) {
				return
			}
		}
	}) {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return badInput("query parameter %s is not accepted on %s: a %s request takes its fields from the path and the JSON body only",
					quote.Bounded(k), r.Method, r.Method)
			}
			return badInput("query parameter %s is not accepted on %s: the query takes only %s; path variables and body fields cannot be set there",
				quote.Bounded(k), r.Method, strings.Join(allowed, ", "))
		}
		if len(q[k]) > 1 {
			return badInput("query parameter %s is given %d times: give it once", quote.Bounded(k), len(q[k]))
		}
		// The transcoder decodes a bool parameter as JSON: true and false
		// only. strconv.ParseBool's other spellings (1, t, TRUE, False...)
		// passed here and then failed there with a raw JSON error.
		if k == "stale" || k == "apply_lock_delay" {
			if v := q[k][0]; v != "true" && v != "false" {
				return badInput("%s=%s is not true or false: use true or false, in lower case", k, quote.Bounded(v))
			}
		}
		// A number the same way: vanguard's JSON error said neither what
		// nor where ("invalid character 'a' looking for beginning of value").
		if k == "page_size" {
			if _, err := strconv.ParseInt(q[k][0], 10, 32); errors.Is(err, strconv.ErrRange) {
				return badInput("page_size=%s is too large: a page holds at most %d sessions; give %d or less (0: the most)", quote.Bounded(q[k][0]), shards.MaxPage, shards.MaxPage)
			} else if err != nil {
				return badInput("page_size=%s is not a whole number: give the most sessions a page may hold, in decimal digits (0: the server's maximum)", quote.Bounded(q[k][0]))
			}
		}
		if k == "request_seq" || k == "lowest_pending_seq" {
			if _, err := strconv.ParseUint(q[k][0], 10, 64); errors.Is(err, strconv.ErrRange) {
				return badInput("%s=%s is too large: at most %d", k, quote.Bounded(q[k][0]), uint64(math.MaxUint64))
			} else if err != nil {
				return badInput("%s=%s is not a whole number: give a number from 0 up, in decimal digits", k, quote.Bounded(q[k][0]))
			}
		}
	}
	return nil
}

// readRESTBody reads a REST request's whole body, inflating gzip, and
// replaces it with what was read. The bound applies to the inflated bytes:
// the transcoder would inflate a body without one, and a 1 MB gzip body
// holding 1 GB took a node to gigabytes of memory. REST bodies are small
// JSON objects, so reading them whole costs nothing worth streaming for.
//
// A body that fails to arrive is the client's fault and says so: too large
// (429, as Connect answers), too slow (408), malformed (400). No message
// repeats a network error, which would show the server's addresses.
//
// It returns the bytes it read (inflated), which stay the request's body.
func readRESTBody(r *http.Request, max int64, timeout time.Duration) ([]byte, *inputError) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, bodyReadError(err, max, timeout)
	}
	if int64(len(raw)) > max {
		return nil, tooLarge("the body is more than %d bytes: at most %d", max, max)
	}
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, badInput("the gzip body is corrupt: %v", err)
		}
		inflated, err := io.ReadAll(io.LimitReader(zr, max+1))
		if err != nil {
			return nil, badInput("the gzip body is corrupt: %v", err)
		}
		if int64(len(inflated)) > max {
			return nil, tooLarge("the gzip body inflates to more than %d bytes: at most %d", max, max)
		}
		raw = inflated
		r.Header.Del("Content-Encoding")
	default:
		return nil, &inputError{http.StatusUnsupportedMediaType, "invalid_argument",
			fmt.Sprintf("Content-Encoding %s is not supported: send the body as it is, or gzip", quote.Bounded(enc))}
	}
	// A UTF-8 byte order mark, which .NET's default writer puts first, is
	// not JSON, but RFC 8259 lets a parser ignore it; the transcoder
	// answered "invalid value" with the mark printed invisibly.
	raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
	r.Body = io.NopCloser(bytes.NewReader(raw))
	r.ContentLength = int64(len(raw))
	r.Header.Del("Content-Length")
	return raw, nil
}

// checkRESTBody refuses a JSON body whose top-level object gives a path
// variable of the request's route (by its proto or its JSON name, as
// protojson takes both) another value than the path does. body is what
// readRESTBody read; it is only read here, never consumed.
//
// A body that repeats the path's value exactly is taken: it says nothing
// the path does not, so no reader of either can be misled, and a client
// that marshals its whole request message (name included) and also puts
// the name in the path keeps working. Null and the field's zero value ("",
// 0) are taken too: proto3 JSON reads them as the field not set, the same
// message as a body without the key, and clients that emit unpopulated
// fields send them. The value is compared as protojson decodes it, so
// "7", 7 and 7.0 are the same session id.
//
// A body that is not a JSON object, or whose value for such a field does
// not decode, is left to the transcoder, which refuses it with its own
// message.
func checkRESTBody(routes []restRoute, r *http.Request, body []byte) *inputError {
	if len(body) == 0 {
		return nil
	}
	rt, segs := matchRESTRoute(routes, r.Method, r.URL.EscapedPath())
	if rt == nil || !json.Valid(body) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	// Every key in order, so that a key given twice is seen both times.
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil
		}
		for i, fd := range rt.vars {
			if key != fd.JSONName() && key != string(fd.Name()) {
				continue
			}
			s, err := url.PathUnescape(segs[i])
			if err != nil {
				return nil
			}
			inPath, ok := pathValue(fd, s)
			if !ok {
				return nil
			}
			m := rt.input.New()
			one := append(append([]byte(`{"`+string(fd.Name())+`":`), raw...), '}')
			if protojson.Unmarshal(one, m.Interface()) != nil {
				return nil
			}
			if !m.Has(fd) {
				continue // null, or the zero value: not set
			}
			if inBody := m.Get(fd); !inBody.Equal(inPath) {
				return badInput("field %s is given in the path (%s) and differs in the body (%s): give it in the path only (or the same value)",
					fd.Name(), quote.Bounded(inPath.String()), quote.Bounded(inBody.String()))
			}
		}
	}
	return nil
}

// tooLarge is a body over the bound: 413, not the 429 of the servers' other
// limits, because HTTP clients retry a 429 on their own (urllib3's Retry,
// for one) and the same body can only be refused again.
func tooLarge(format string, args ...any) *inputError {
	return &inputError{http.StatusRequestEntityTooLarge, "resource_exhausted", fmt.Sprintf(format, args...)}
}

func bodyReadError(err error, max int64, timeout time.Duration) *inputError {
	var tooBig *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooBig):
		return tooLarge("the body is more than %d bytes: at most %d", tooBig.Limit, max)
	case errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return &inputError{http.StatusRequestTimeout, "deadline_exceeded",
			fmt.Sprintf("the body did not arrive within %v: send it whole, at once", timeout)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badInput("the body ended before its declared length: send Content-Length bytes, or use chunked encoding")
	}
	return badInput("the body could not be read: it is not valid HTTP framing (a malformed chunked encoding, say)")
}
