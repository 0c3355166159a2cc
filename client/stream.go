package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// A session's operations travel on one bidirectional stream to the endpoint
// in use (SessionService.Stream; docs/design.md, "Sessions and their
// clients"): each request is a message with an id, answered by id as it
// completes, so a blocked Lock holds up nothing and an operation costs a
// message each way instead of an HTTP/2 stream. The servers push on it the
// session's loss the moment they apply it (Done closes then, not a
// keepalive later), and keepalives ride on it.
//
// Nothing else changes: every request is built, retried and settled by the
// same code as before (call, attempt, acquire, abandonLater), and the
// stream is only how one attempt reaches its endpoint. A stream that breaks
// fails its unanswered attempts as unavailable, so each is resent, on the
// next endpoint, with the same (client_id, request_seq): the servers'
// dedupe keeps it exactly-once, and a queued acquire rejoins its place.
// WithUnary, a server without the stream (unimplemented), and a stream
// with maxStreamRequests unanswered send the request as a unary call.

// maxStreamRequests bounds the unanswered requests on one stream, at the
// servers' default bound (rpc.DefaultMaxStreamRequests); past it, a request
// is sent as a unary call.
const maxStreamRequests = 4096

// streamRetryAfter is how long an endpoint whose stream failed before its
// first answer (an HTTP/1.1-only proxy on the way, a node that is down) is
// sent unary calls before a stream is tried there again.
const streamRetryAfter = 30 * time.Second

// streamKeepAliveMax is the longest pause between keepalives on a stream:
// the servers cut a stream silent for three minutes.
const streamKeepAliveMax = time.Minute

// errNoStream says the request must go unary.
var errNoStream = errors.New("lockstep: no session stream")

// bidiStream is what a session's own stream and the Client's shared
// stream (multiplex.go) have alike: the HTTP/2 stream, whose messages are
// Req and Res, and how it ends: once, with the reason its waiters read,
// then the HTTP/2 stream itself.
type bidiStream[Req, Res any] struct {
	st     *connect.BidiStreamForClient[Req, Res]
	cancel context.CancelFunc
	done   chan struct{} // closed when the stream broke or was shut
	// answered is set by the first message received: a stream that ends
	// before it may not be a stream at all (see streamRetryAfter).
	answered atomic.Bool

	sendMu sync.Mutex // BidiStreamForClient.Send and CloseRequest are not safe for concurrent use

	mu  sync.Mutex // guards err, and what the stream embedding it keeps by request
	err error      // why it ended, once done is closed
}

// shut ends the stream; its unanswered requests fail with err.
func (b *bidiStream[Req, Res]) shut(err error) {
	b.mu.Lock()
	b.endLocked(err)
	b.mu.Unlock()
	b.release()
}

// endLocked marks the stream ended with err, unless it ended already, and
// says whether it did.
func (b *bidiStream[Req, Res]) endLocked(err error) bool {
	if b.err != nil {
		return false
	}
	b.err = err
	close(b.done)
	return true
}

// release ends the HTTP/2 stream of an ended stream.
func (b *bidiStream[Req, Res]) release() {
	b.sendMu.Lock()
	_ = b.st.CloseRequest()
	b.sendMu.Unlock()
	b.cancel()
}

// failure says why the stream ended, nil while it has not.
func (b *bidiStream[Req, Res]) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// sessionStream is one open stream of a session to one endpoint.
type sessionStream struct {
	bidiStream[pb.StreamRequest, pb.StreamResponse]
	s *Session
	e *endpoint

	// Under mu:
	nextID  uint64
	pending map[uint64]streamPending
}

// streamPending is one unanswered request on a session's stream: where
// its answer goes, and its call's callTrack (nil: none), told when the
// servers queue it.
type streamPending struct {
	ch    chan *pb.StreamResponse // buffered: one answer per id
	track *callTrack
}

// streaming says whether the session's requests go on a stream.
func (s *Session) streaming() bool { return !s.c.opts.unary && !s.noStream.Load() }

// streams says whether e takes session streams now (see streamRetryAfter).
func (e *endpoint) streams() bool { return e.takes(&e.streamOff) }

// failedToStream notes that a stream to e ended before its first answer.
func (e *endpoint) failedToStream() { e.turnOff(&e.streamOff) }

// takes says whether the time off, one of e's (streamOff, muxOff), has
// passed.
func (e *endpoint) takes(off *time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return time.Now().After(*off)
}

// turnOff sets off, one of e's times, streamRetryAfter from now.
func (e *endpoint) turnOff(off *time.Time) {
	e.mu.Lock()
	*off = time.Now().Add(streamRetryAfter)
	e.mu.Unlock()
}

// streamTo answers the session's open stream to e, opening it if needed.
// Opening one closes the session's idle streams to other endpoints (left
// behind by a failover).
func (s *Session) streamTo(e *endpoint) *sessionStream {
	return s.streams.to(e, func() *sessionStream {
		ctx, cancel := context.WithCancel(context.Background())
		ss := &sessionStream{s: s, e: e, pending: map[uint64]streamPending{},
			bidiStream: bidiStream[pb.StreamRequest, pb.StreamResponse]{st: e.stream.Stream(ctx), cancel: cancel, done: make(chan struct{})}}
		go ss.receive()
		return ss
	}, errors.New("lockstep: the session moved to another endpoint"))
}

// shutStreams ends every stream of the session, and its requests on the
// Client's shared streams (Close).
func (s *Session) shutStreams() {
	s.forgotten.Store(true) // a late request of s (a release retrying) does not list it again
	s.leaveStreams(fmt.Errorf("%w: session %d was closed", ErrSessionLost, s.id))
}

// leaveStreams takes s off the Client's shared streams (dropSession) and
// ends its own. With fail set (Close) its unanswered requests fail with
// fail and its own streams shut at once; without (a session lost without
// Close) its requests stay, each ending as its caller sees the loss, or
// answered, and each of its own streams shuts once nothing on it is
// unanswered: a lost session whose user never calls Close keeps no
// stream, and no goroutine, until the server cuts it for silence.
func (s *Session) leaveStreams(fail error) {
	s.c.dropSession(s, fail)
	if fail != nil {
		for _, ss := range s.streams.take() {
			ss.shut(fail)
		}
		return
	}
	for _, ss := range s.streams.list() {
		ss.mu.Lock()
		unlockShutIfUnused(ss, &ss.mu)
	}
}

func (ss *sessionStream) endpoint() *endpoint { return ss.e }

func (ss *sessionStream) idle() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.pending) == 0
}

// shutIfUnusedLocked marks ss ended when its session no longer keeps it
// (Session.unlisted: lost without Close, or forgotten by Close) and
// nothing on it is unanswered (see unlockShutIfUnused), and says whether
// it did. A late request of the lost session (a release on its way, the
// clean-up of an abandoned acquire) that sees ss ended goes unary.
func (ss *sessionStream) shutIfUnusedLocked() bool {
	return len(ss.pending) == 0 && ss.s.unlisted() && ss.endLocked(errUnused)
}

// retire forgets an ended ss and ends its HTTP/2 stream.
func (ss *sessionStream) retire() {
	ss.s.streams.drop(ss)
	ss.release()
}

// forget drops request id's wait.
func (ss *sessionStream) forget(id uint64) {
	ss.mu.Lock()
	delete(ss.pending, id)
	unlockShutIfUnused(ss, &ss.mu)
}

// receive hands each answer to its request and acts on pushes, until the
// stream ends.
func (ss *sessionStream) receive() {
	s := ss.s
	for {
		r, err := ss.st.Receive()
		if err != nil {
			if connect.CodeOf(err) == connect.CodeUnimplemented {
				s.noStream.Store(true) // a server without the stream: unary from now on
			}
			s.streams.drop(ss)
			ss.shut(err)
			return
		}
		ss.e.heard()
		ss.answered.Store(true)
		switch {
		case r.GetSessionLost() != nil:
			s.lose(pushedLoss(r.GetSessionLost(), ss.e.url))
			continue
		case r.GetGrantEnded() != nil:
			s.grantEnded(r.GetGrantEnded(), ss.e.url)
			continue
		case r.GetQueued() != nil:
			// The final answer follows under the same id; meanwhile a
			// member serves the wait (callTrack.served).
			ss.mu.Lock()
			ss.pending[r.RequestId].track.queuedNow()
			ss.mu.Unlock()
			continue
		}
		ss.mu.Lock()
		if p, ok := ss.pending[r.RequestId]; ok {
			delete(ss.pending, r.RequestId)
			// Before the stream may end below: its waiter, woken by
			// done, takes an answer already in its channel.
			p.ch <- r // buffered: one answer per id
		}
		unlockShutIfUnused(ss, &ss.mu)
	}
}

// roundTrip sends req on the session's stream to e and waits for its
// answer, ctx, or the stream's end. errNoStream: send it unary instead.
func (s *Session) roundTrip(ctx context.Context, e *endpoint, req *pb.StreamRequest) (*pb.StreamResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // as a unary call with an ended ctx: nothing is sent
	}
	ss := s.streamTo(e)
	ch := make(chan *pb.StreamResponse, 1)
	ss.mu.Lock()
	if ss.err != nil || len(ss.pending) >= maxStreamRequests {
		ss.mu.Unlock()
		return nil, errNoStream
	}
	ss.nextID++
	id := ss.nextID
	ss.pending[id] = streamPending{ch: ch, track: trackOf(ctx)}
	ss.mu.Unlock()
	req.RequestId = id
	ss.sendMu.Lock()
	err := ss.st.Send(req)
	ss.sendMu.Unlock()
	if err != nil {
		// The stream is broken; its receive loop says why and ends it.
		ss.forget(id)
		if connect.CodeOf(err) == connect.CodeUnimplemented || s.noStream.Load() {
			return nil, errNoStream
		}
		if !ss.answered.Load() {
			e.failedToStream()
			return nil, errNoStream
		}
		return nil, connect.NewError(connect.CodeUnavailable, fmt.Errorf("the session stream to %s broke: %w", e.url, err))
	}
	w := newStreamWait(ctx)
	defer w.done()
	select {
	case r := <-ch:
		return answered(r)
	case <-ctx.Done():
		ss.forget(id)
		return nil, ctx.Err()
	case <-w.fired:
		ss.forget(id)
		return nil, w.err()
	case <-ss.done:
		ss.forget(id)
		select {
		case r := <-ch: // answered before the stream ended
			return answered(r)
		default:
		}
		return nil, streamEnded(ctx, e, ss.failure(), ss.answered.Load(), errNoStream)
	}
}

// answered turns a stream's answer into the attempt's result: the answer,
// or the error it carries, with its unary twin's code.
func answered(r *pb.StreamResponse) (*pb.StreamResponse, error) {
	se := r.GetError()
	if se == nil {
		return r, nil
	}
	var code connect.Code
	if code.UnmarshalText([]byte(se.Code)) != nil {
		code = connect.CodeUnknown
	}
	return nil, connect.NewError(code, errors.New(se.Message))
}

// streamEnded is the error of an attempt whose stream to e ended (with
// err) before its answer: unimplemented when the server has no such
// stream, so that the attempt goes the next way; errNoStream (unary) when
// the stream never answered, as an HTTP/1.1-only proxy's or a down node's
// does, for this attempt and the next ones to e for a while (a node that
// is down fails the unary attempt too, and the call moves on); otherwise
// unavailable, so that the attempt is resent.
func streamEnded(ctx context.Context, e *endpoint, err error, everAnswered bool, unimplemented error) error {
	if connect.CodeOf(err) == connect.CodeUnimplemented {
		return unimplemented
	}
	if !everAnswered && ctx.Err() == nil {
		e.failedToStream()
		return errNoStream
	}
	return connect.NewError(connect.CodeUnavailable, fmt.Errorf("the session stream to %s ended: %w", e.url, err))
}

// exchange makes one attempt of a session request at e: on the session's
// stream (req, whose answer get picks out), or as the unary call when the
// session does not stream (see the top of this file).
func exchange[Res any](ctx context.Context, s *Session, e *endpoint, req *pb.StreamRequest,
	get func(*pb.StreamResponse) *Res, unary func(ctx context.Context) (*connect.Response[Res], error)) (*Res, error) {
	if s.streaming() && e.streams() {
		var r *pb.StreamResponse
		err := errNoMultiplex
		if !s.c.opts.noMultiplex && e.multiplexes() {
			r, err = s.c.muxRoundTrip(ctx, s, e, req)
		}
		if errors.Is(err, errNoMultiplex) {
			r, err = s.roundTrip(ctx, e, req)
		}
		switch {
		case errors.Is(err, errNoStream):
			countResend(ctx) // the stream may have carried it before it ended
		case err != nil:
			return nil, s.heardOfLoss(err)
		default:
			if res := get(r); res != nil {
				return res, nil
			}
			return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("the session stream answered request %d with %T", r.RequestId, r.Response))
		}
	}
	res, err := unary(ctx)
	if err != nil {
		return nil, s.heardOfLoss(err)
	}
	return res.Msg, nil
}

// heardOfLoss marks s lost at once when err is the servers' not_found,
// which a request naming a session answers only when the servers do not
// have the session (it expired, or was closed by another caller: an
// operator's DELETE /sessions/{id}); a missing name or grant is answered
// otherwise (aborted, a refusal). Without it, a session whose loss was not
// pushed (unary calls) stayed alive on the client until the next
// keepalive, a third of the TTL later, while its calls answered
// ErrSessionLost. It answers err.
func (s *Session) heardOfLoss(err error) error {
	if connect.CodeOf(err) == connect.CodeNotFound {
		s.lose(s.goneErr(err))
	}
	return err
}

// goneErr is the loss of a session the servers answered does not exist
// (err, their not_found). Under authentication they answer so too of a
// session of another principal than the credentials presented now name
// (a certificate renewed with another common name, another API key): the
// session may live on, out of this client's reach.
func (s *Session) goneErr(err error) error {
	if o := s.c.opts; o.apiKey != "" || (o.tls != nil && (o.tls.GetClientCertificate != nil || len(o.tls.Certificates) > 0)) {
		return fmt.Errorf("%w: session %d expired or was closed on the servers, or belongs to another principal than the credentials "+
			"this client presents now name (a certificate renewed with another common name, another API key): %v", ErrSessionLost, s.id, err)
	}
	return fmt.Errorf("%w: session %d expired or was closed on the servers: %v", ErrSessionLost, s.id, err)
}
