package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/batch"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
)

// The sessions of one Client share one stream per endpoint
// (SessionService.Multiplex; docs/design.md, "Sessions and their
// clients"): each request is a StreamRequest as on a session's own stream,
// with an id unique on the shared stream, and what is sent while the
// previous message is on its way goes out together in the next one. The
// servers answer the same way: the answers of one log entry, for however
// many sessions, arrive in one message. A session stream carries one
// session, which has one operation in flight, so each of its answers was a
// message of its own, with an HTTP/2 frame and the hand-offs around it on
// both sides (docs/performance.md, "One stream for a client's sessions").
//
// Everything else is as on a session's stream (stream.go): a broken stream
// fails its unanswered attempts as unavailable, and each is resent with
// the same (client_id, request_seq). A server without Multiplex
// (unimplemented: an older version) is sent each session's own stream for
// a while (streamRetryAfter), and that one falls back to unary calls in
// turn.

// errNoMultiplex says the request goes on the session's own stream.
var errNoMultiplex = errors.New("lockstep: no multiplexed stream")

// maxMultiplexBatch bounds the requests of one message, at the servers'
// bound (rpc.MaxMultiplexBatch).
const maxMultiplexBatch = 1024

// muxIdleShut is how long a stream to an endpoint must have gone unused
// before opening one to another endpoint shuts it: after a failover the
// old endpoint's stream is left idle, while with several shards a client
// may use several endpoints' streams in turn.
const muxIdleShut = time.Second

// muxStream is a Client's shared stream to one endpoint.
type muxStream struct {
	bidiStream[pb.MultiplexRequest, pb.MultiplexResponse]
	c *Client
	e *endpoint
	// requests gathers what is sent while a message is on its way into
	// the next one.
	requests batch.Gatherer[*pb.StreamRequest]

	// Under mu:
	nextID   uint64
	pending  map[uint64]muxWait
	sessions map[uint64]*Session // the sessions that sent on it, for pushed losses
	lastUse  time.Time
}

// muxWait is one unanswered request: its session, and where its answer
// goes.
type muxWait struct {
	s     *Session
	ch    chan muxAnswer // buffered: one answer per id
	track *callTrack     // its call's, told when the servers queue it (nil: none)
}

// muxAnswer is the server's answer, or why the request will not get one.
type muxAnswer struct {
	r   *pb.StreamResponse
	err error
}

// multiplexes says whether e takes Multiplex streams now.
func (e *endpoint) multiplexes() bool { return e.takes(&e.muxOff) }

// noMultiplex notes that e answered it has no Multiplex.
func (e *endpoint) noMultiplex() { e.turnOff(&e.muxOff) }

// muxTo answers the Client's open stream to e, opening it if needed.
func (c *Client) muxTo(e *endpoint) *muxStream {
	return c.muxes.to(e, func() *muxStream {
		ctx, cancel := context.WithCancel(context.Background())
		m := &muxStream{c: c, e: e, requests: batch.Gatherer[*pb.StreamRequest]{Max: maxMultiplexBatch},
			pending: map[uint64]muxWait{}, sessions: map[uint64]*Session{}, lastUse: time.Now(),
			bidiStream: bidiStream[pb.MultiplexRequest, pb.MultiplexResponse]{st: e.stream.Multiplex(ctx), cancel: cancel, done: make(chan struct{})}}
		go m.receive()
		return m
	}, errMovedEndpoint)
}

var errMovedEndpoint = errors.New("lockstep: the client's sessions moved to another endpoint")

// dropSession stops routing the pushed loss of s on every shared stream
// (the route of s itself, not another Session value's of the same id),
// and with fail set (Session.Close) fails its unanswered requests there
// with fail; without (a session lost without Close) they stay, each ending
// as its caller sees the loss (forget), or answered. A stream s used that
// is left with no session and nothing unanswered is shut, as a session's
// own streams are when it closes or is lost (Session.leaveStreams): a
// Client without sessions holds no streams, rather than one kept until
// the server cut it for silence.
func (c *Client) dropSession(s *Session, fail error) {
	for _, m := range c.muxes.list() {
		m.mu.Lock()
		// Only s's own route: another value of the id (resumed in this
		// Client after s was lost or orphaned) keeps its pushed loss.
		had := m.sessions[s.id] == s
		if had {
			delete(m.sessions, s.id)
		}
		if fail != nil {
			for id, w := range m.pending {
				if w.s == s {
					delete(m.pending, id)
					w.ch <- muxAnswer{err: fail}
					had = true // s used it (unlisted when lost, its requests still here)
				}
			}
		}
		// Only a stream s used is shut: one just opened for another
		// session has no session yet either.
		if had {
			unlockShutIfUnused(m, &m.mu)
		} else {
			m.mu.Unlock()
		}
	}
}

// errUnused ends a stream that no session of the Client uses.
var errUnused = errors.New("lockstep: no session of the client uses the stream")

// shutIfUnusedLocked marks m ended when no session uses it and nothing on
// it is unanswered (see unlockShutIfUnused), and says whether it did. A
// live session stays in m.sessions from its first request on, so this
// never shuts a stream in use; a request registered meanwhile
// (muxRoundTrip) that sees m ended opens another.
func (m *muxStream) shutIfUnusedLocked() bool {
	return len(m.sessions) == 0 && len(m.pending) == 0 && m.endLocked(errUnused)
}

// retire forgets an ended m and ends its HTTP/2 stream.
func (m *muxStream) retire() {
	m.c.muxes.drop(m)
	m.release()
}

func (m *muxStream) endpoint() *endpoint { return m.e }

// idle says m has nothing unanswered and went unused for muxIdleShut.
func (m *muxStream) idle() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.pending) == 0 && time.Since(m.lastUse) >= muxIdleShut
}

// receive hands each answer to its request and each pushed loss to its
// session, until the stream ends.
func (m *muxStream) receive() {
	for {
		msg, err := m.st.Receive()
		if err != nil {
			if connect.CodeOf(err) == connect.CodeUnimplemented {
				m.e.noMultiplex()
			}
			m.c.muxes.drop(m)
			m.shut(err)
			return
		}
		m.e.heard()
		m.answered.Store(true)
		for _, r := range msg.Responses {
			if lost := r.GetSessionLost(); lost != nil {
				m.mu.Lock()
				s := m.sessions[lost.SessionId]
				m.mu.Unlock()
				if s != nil {
					s.lose(pushedLoss(lost, m.e.url)) // and unlists s from every stream
				}
				continue
			}
			if g := r.GetGrantEnded(); g != nil {
				m.mu.Lock()
				s := m.sessions[g.SessionId]
				m.mu.Unlock()
				if s != nil {
					s.grantEnded(g, m.e.url)
				}
				continue
			}
			if r.GetQueued() != nil {
				// The final answer follows under the same id; meanwhile
				// a member serves the wait (callTrack.served).
				m.mu.Lock()
				m.pending[r.RequestId].track.queuedNow()
				m.mu.Unlock()
				continue
			}
			m.mu.Lock()
			if w, ok := m.pending[r.RequestId]; ok {
				delete(m.pending, r.RequestId)
				// Before the stream may end below: its waiter, woken by
				// done, takes an answer already in its channel.
				w.ch <- muxAnswer{r: r} // buffered: one answer per id
			}
			unlockShutIfUnused(m, &m.mu)
		}
	}
}

// pushedLoss is the error of a session whose loss a server pushed: it
// expired, or a caller other than this Client closed it (an operator, or
// another process that knew its id).
func pushedLoss(lost *pb.StreamSessionLost, url string) error {
	how := "expired on the servers"
	if lost.GetReason() == pb.Reason_REASON_SESSION_CLOSED {
		how = "was closed on the servers by another caller"
	}
	return fmt.Errorf("%w: session %d %s (pushed by %s)", ErrSessionLost, lost.GetSessionId(), how, url)
}

// send puts req in the next message: sent at once unless a message is on
// its way, then with the others gathered meanwhile. A failed send shuts
// the stream, which fails every request on it.
func (m *muxStream) send(req *pb.StreamRequest) {
	err := m.requests.Add(req, func(b []*pb.StreamRequest) error {
		m.sendMu.Lock()
		defer m.sendMu.Unlock()
		return m.st.Send(&pb.MultiplexRequest{Requests: b})
	})
	if err != nil {
		// The receive loop says why (connect-go's Send answers io.EOF
		// for a stream the server ended) and ends it; until then the
		// requests wait on done.
		m.shut(fmt.Errorf("sending on the stream: %w", err))
	}
}

// muxRoundTrip sends req for s on the Client's stream to e and waits for
// its answer, ctx, or the stream's end. errNoMultiplex: send it on the
// session's own stream; errNoStream: send it unary.
func (c *Client) muxRoundTrip(ctx context.Context, s *Session, e *endpoint, req *pb.StreamRequest) (*pb.StreamResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err // as a unary call with an ended ctx: nothing is sent
	}
	ch := make(chan muxAnswer, 1)
	var m *muxStream
	for try := 0; ; try++ {
		m = c.muxTo(e)
		m.mu.Lock()
		ended := m.err != nil
		if !ended && len(m.pending) < maxStreamRequests {
			break
		}
		m.mu.Unlock()
		if !ended || try == 1 {
			return nil, errNoStream
		}
		c.muxes.drop(m) // it ended just now: open another once
	}
	m.nextID++
	id := m.nextID
	m.pending[id] = muxWait{s: s, ch: ch, track: trackOf(ctx)}
	if !s.unlisted() {
		// A session lost without Close (unlisted) is not listed again by
		// a late request of its own (a release on its way, the clean-up
		// of an abandoned acquire): its stream then shuts once those end.
		m.sessions[s.id] = s
	}
	m.lastUse = time.Now()
	m.mu.Unlock()
	req.RequestId = id
	m.send(req)
	answer := func(a muxAnswer) (*pb.StreamResponse, error) {
		if a.err != nil {
			return nil, a.err
		}
		return answered(a.r)
	}
	w := newStreamWait(ctx)
	defer w.done()
	select {
	case a := <-ch:
		return answer(a)
	case <-ctx.Done():
		m.forget(id)
		return nil, ctx.Err()
	case <-w.fired:
		m.forget(id)
		return nil, w.err()
	case <-m.done:
		m.forget(id)
		select {
		case a := <-ch: // answered before the stream ended
			return answer(a)
		default:
		}
		return nil, streamEnded(ctx, e, m.failure(), m.answered.Load(), errNoMultiplex)
	}
}

// forget drops request id's wait.
func (m *muxStream) forget(id uint64) {
	m.mu.Lock()
	delete(m.pending, id)
	unlockShutIfUnused(m, &m.mu)
}
