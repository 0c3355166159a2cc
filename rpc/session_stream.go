package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/batch"
	"github.com/lockstepd/lockstep/core"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
	"github.com/lockstepd/lockstep/runtime"
)

// A session stream (SessionService.Stream) carries one session's requests
// and their answers on one bidirectional stream, so that an operation costs
// a message each way instead of a whole HTTP/2 stream (headers, a handler
// goroutine, trailers). Each request is served on a goroutine of its own
// (one kept from an earlier request: workers.go) and answered as it
// completes, by its request_id: a blocked acquire holds up nothing. Each
// goes through serveMessage, the interceptor chain's own metrics, audit
// and checks under its unary twin's procedure, and then the twin's handler
// itself: a request on the stream is the unary call in every way but the
// transport (docs/design.md, "The API's rules").
//
// The stream is bound to the session of its first request; one naming
// another session is refused. The server pushes the waiter id of a request
// that queued (runtime.WithQueued), the session's end, an expiry or a
// close by another caller, the moment this node applies it
// (Backend.SessionEnded), and the end of each of its grants while it
// lives on, a release by any caller or a max hold (Backend.GrantsEnded).
// The grant ends are a best effort: the runtime drops one its watcher has
// no room for rather than wait, and the watcher, which sends on the stream
// the pushes of its session one at a time, falls behind only when the
// stream does (a client that does not read it). A client that misses one
// is where a client was before the push: its release of the grant answers
// that it is not held, and it counts a max hold itself.
//
// A Multiplex stream (SessionService.Multiplex) is the same for any number
// of sessions: each request names its own, and each message carries
// several requests one way and several answers the other. What one client
// process sends for all its sessions then shares one stream, and the
// answers of one log entry leave in one message (batch.Gatherer): a stream
// message costs the HTTP/2 server hand-offs between the handler and the
// connection's serve loop, and the client a wake-up of its reader, once
// per message, not per answer.

// Limits of a session stream.
const (
	// DefaultMaxStreamRequests bounds the requests of one stream served at
	// once (Options.MaxStreamRequests; each a goroutine, most of them
	// blocked acquires): past it a request is answered resource_exhausted
	// at once and the stream goes on, so that keepalives and releases still
	// get through. The Go client sends no more than this on one stream (it
	// sends the rest unary).
	DefaultMaxStreamRequests = 4096
	// streamIdleTimeout is Options.StreamIdleTimeout's default: a stream
	// whose client sent nothing for this long, while none of its requests
	// was being served, is cut (a half-open connection): the Go client
	// keeps its session alive on the stream at least every minute.
	streamIdleTimeout = 3 * time.Minute
)

// Stream serves a session stream until the client ends it (then the
// requests still in flight are answered first) or goes away (then they are
// cancelled, as a unary call's would be).
func (h SessionHandler) Stream(ctx context.Context, st *connect.BidiStream[pb.StreamRequest, pb.StreamResponse]) error {
	ss := newSessionStream(h.service, peerOf(ctx, st.Peer()), false)
	var one [1]*pb.StreamRequest // reused: run starts a message's requests before it asks for the next
	var sendMu sync.Mutex        // BidiStream.Send is not safe for concurrent use
	ss.out = func(m *pb.StreamResponse) {
		// A stream the client has left fails its sends; run's receive
		// ends it.
		sendMu.Lock()
		defer sendMu.Unlock()
		_ = st.Send(m)
	}
	return ss.run(ctx, func() ([]*pb.StreamRequest, error) {
		req, err := st.Receive()
		one[0] = req
		return one[:], err
	})
}

// Multiplex serves a stream of many sessions' requests: Stream's rules, but
// no session is bound, each request's own is watched for its loss, and the
// answers ready together go out in one message (docs/design.md, "Sessions
// and their clients").
func (h SessionHandler) Multiplex(ctx context.Context, st *connect.BidiStream[pb.MultiplexRequest, pb.MultiplexResponse]) error {
	ss := newSessionStream(h.service, peerOf(ctx, st.Peer()), true)
	// The answers of one log entry, which their requests' goroutines
	// finish within microseconds of each other, share a message, and the
	// HTTP/2 server's hand-offs behind it. A stream the client has left
	// fails its sends; run's receive ends it.
	answers := &batch.Gatherer[*pb.StreamResponse]{Max: MaxMultiplexBatch}
	ss.out = func(m *pb.StreamResponse) {
		_ = answers.Add(m, func(b []*pb.StreamResponse) error {
			_ = st.Send(&pb.MultiplexResponse{Responses: b})
			return nil
		})
	}
	return ss.run(ctx, func() ([]*pb.StreamRequest, error) {
		m, err := st.Receive()
		if err != nil {
			return nil, err
		}
		if len(m.Requests) > MaxMultiplexBatch {
			return nil, invalid("a Multiplex message carries %d requests, over the limit of %d: send them in several messages", len(m.Requests), MaxMultiplexBatch)
		}
		return m.Requests, nil
	})
}

// MaxMultiplexBatch bounds the requests of one Multiplex message, and the
// answers the server puts in one.
const MaxMultiplexBatch = 1024

// maxMultiplexSessions bounds the sessions one Multiplex stream watches for
// their loss (a goroutine each). A request naming a session past it is
// still served; that session's loss is then not pushed, and its client
// learns of it from its next keepalive, as a unary client does.
const maxMultiplexSessions = 4096

// sessionStream is one open session stream (Stream), or one Multiplex
// stream (multi).
type sessionStream struct {
	*service
	peer  string
	multi bool
	idle  *idleBody      // the stream's body, held while requests are served; nil in tests without one
	slots chan struct{}  // one per request being served
	wg    sync.WaitGroup // the requests being served
	// watchers are the session-loss watchers, which last as long as the
	// stream: a client that ends its side is answered what it sent, then
	// the stream ends.
	watchers sync.WaitGroup
	// out sends one answer or push: at once on Stream, gathered with the
	// others ready on Multiplex.
	out func(*pb.StreamResponse)

	mu      sync.Mutex
	session uint64              // Stream: the session it is bound to; 0 until its first request
	watched map[uint64]chan any // Multiplex: the sessions watched, each closed to stop its watcher
	// releasing are the tokens this stream's own releases (and resigns)
	// name, from when the request came until the push of that grant's end
	// (which it keeps from the client: the release's answer says it) or
	// the request's failure. A push per release doubled the messages of a
	// lock-and-unlock cycle, and one worker's p50 rose a fifth.
	releasing map[uint64]struct{}
}

// maxReleasing bounds releasing: a mark whose push never came (dropped
// by a full subscription) would stay; past the bound the marks are let
// go, and their pushes, if any come, reach the client, which ignores a
// push for a token it no longer holds.
const maxReleasing = 4096

// releaseProcedures are the requests that end a grant of the stream's own.
var releaseProcedures = map[string]bool{
	lockstepv1connect.LockServiceReleaseProcedure:      true,
	lockstepv1connect.SemaphoreServiceReleaseProcedure: true,
	lockstepv1connect.RWLockServiceReleaseProcedure:    true,
	lockstepv1connect.ElectionServiceResignProcedure:   true,
}

// markRelease notes the token a release request names; 0 for another
// request.
func (ss *sessionStream) markRelease(proc string, msg any) uint64 {
	if !releaseProcedures[proc] {
		return 0
	}
	tok := uintField(msg, "fencing_token")
	if tok == 0 {
		return 0
	}
	ss.mu.Lock()
	if ss.releasing == nil || len(ss.releasing) >= maxReleasing {
		ss.releasing = map[uint64]struct{}{}
	}
	ss.releasing[tok] = struct{}{}
	ss.mu.Unlock()
	return tok
}

// unmarkRelease forgets a release that failed: whatever ends that grant
// later is pushed.
func (ss *sessionStream) unmarkRelease(tok uint64) {
	if tok == 0 {
		return
	}
	ss.mu.Lock()
	delete(ss.releasing, tok)
	ss.mu.Unlock()
}

// ownRelease says whether g is the end of a grant this stream's own
// release asked for, and forgets the mark.
func (ss *sessionStream) ownRelease(g runtime.GrantEnd) bool {
	if g.Reason != core.ReasonReleased {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	_, ok := ss.releasing[uint64(g.Token)]
	delete(ss.releasing, uint64(g.Token))
	return ok
}

func newSessionStream(s *service, peer string, multi bool) *sessionStream {
	ss := &sessionStream{service: s, peer: peer, multi: multi, slots: make(chan struct{}, s.opts.MaxStreamRequests)}
	if multi {
		ss.watched = map[uint64]chan any{}
	}
	return ss
}

// run serves the requests next receives, each on a goroutine of its own,
// until the client ends the stream or goes away.
func (ss *sessionStream) run(ctx context.Context, next func() ([]*pb.StreamRequest, error)) error {
	ss.idle, _ = ctx.Value(idleBodyKey{}).(*idleBody)
	ctx, cancel := context.WithCancel(ctx)
	defer ss.watchers.Wait()
	defer ss.wg.Wait()
	defer cancel()
	for {
		reqs, err := next()
		if errors.Is(err, io.EOF) {
			ss.wg.Wait() // the client is done sending: answer what it sent
			return nil
		}
		if err != nil {
			if d := ss.opts.Draining; d != nil && d.Err() != nil {
				return errDraining
			}
			return err
		}
		for _, req := range reqs {
			ss.start(ctx, req)
		}
	}
}

// errDraining ends the session streams of a member that stops
// (Options.Draining); the Go client takes unavailable as its cue to move
// to another endpoint.
var errDraining = connect.NewError(connect.CodeUnavailable, errors.New("this member is shutting down: reconnect to another member"))

// start serves req on a goroutine, or refuses it at once.
func (ss *sessionStream) start(ctx context.Context, req *pb.StreamRequest) {
	if req.RequestId == 0 {
		ss.fail(0, invalid("request_id is missing: give every request on a session stream an id (from 1) to match its answer by"))
		return
	}
	select {
	case ss.slots <- struct{}{}:
	default:
		ss.fail(req.RequestId, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
			"%d requests are in flight on this session stream (its limit): wait for answers, or send this one as a unary call", cap(ss.slots))))
		return
	}
	ss.wg.Add(1)
	if ss.idle != nil {
		ss.idle.hold() // a blocked acquire is not a silent client
	}
	ss.workers.run(func() {
		defer ss.wg.Done()
		defer func() { <-ss.slots }()
		if ss.idle != nil {
			defer ss.idle.release()
		}
		ss.serve(ctx, req)
	})
}

// streamRoute is how a request of the stream is served: its twin's
// procedure, its message, the twin's handler, and how the answer is wrapped.
type streamRoute struct {
	proc string
	msg  any
	call func(ctx context.Context) (any, error)
	wrap func(reply any) *pb.StreamResponse
}

// twin routes a request to its unary twin's handler h. A nil message (a
// oneof case set without one) routes nowhere.
func twin[Req, Res any](proc string, m *Req, h func(context.Context, *connect.Request[Req]) (*connect.Response[Res], error),
	wrap func(*Res) *pb.StreamResponse) streamRoute {
	if m == nil {
		return streamRoute{}
	}
	return streamRoute{proc: proc, msg: m,
		call: func(ctx context.Context) (any, error) {
			res, err := h(ctx, connect.NewRequest(m))
			if err != nil {
				return nil, err
			}
			return res.Msg, nil
		},
		wrap: func(reply any) *pb.StreamResponse { return wrap(reply.(*Res)) }}
}

func (ss *sessionStream) route(req *pb.StreamRequest) streamRoute {
	sh, lh, mh, rh, bh, eh := SessionHandler{ss.service}, LockHandler{ss.service}, SemaphoreHandler{ss.service},
		RWLockHandler{ss.service}, BarrierHandler{ss.service}, ElectionHandler{ss.service}
	type resp = pb.StreamResponse
	switch r := req.Request.(type) {
	case *pb.StreamRequest_KeepAlive:
		return twin(lockstepv1connect.SessionServiceKeepAliveProcedure, r.KeepAlive, sh.KeepAlive,
			func(x *pb.KeepAliveResponse) *resp {
				return &resp{Response: &pb.StreamResponse_KeepAlive{KeepAlive: x}}
			})
	case *pb.StreamRequest_CloseSession:
		return twin(lockstepv1connect.SessionServiceCloseProcedure, r.CloseSession, sh.Close,
			func(x *pb.CloseSessionResponse) *resp {
				return &resp{Response: &pb.StreamResponse_CloseSession{CloseSession: x}}
			})
	case *pb.StreamRequest_Abandon:
		return twin(lockstepv1connect.SessionServiceAbandonProcedure, r.Abandon, sh.Abandon,
			func(x *pb.AbandonResponse) *resp { return &resp{Response: &pb.StreamResponse_Abandon{Abandon: x}} })
	case *pb.StreamRequest_GetSession:
		return twin(lockstepv1connect.SessionServiceGetProcedure, r.GetSession, sh.Get,
			func(x *pb.GetSessionResponse) *resp {
				return &resp{Response: &pb.StreamResponse_GetSession{GetSession: x}}
			})
	case *pb.StreamRequest_AcquireLock:
		return twin(lockstepv1connect.LockServiceAcquireProcedure, r.AcquireLock, lh.Acquire,
			func(x *pb.AcquireLockResponse) *resp {
				return &resp{Response: &pb.StreamResponse_AcquireLock{AcquireLock: x}}
			})
	case *pb.StreamRequest_ReleaseLock:
		return twin(lockstepv1connect.LockServiceReleaseProcedure, r.ReleaseLock, lh.Release,
			func(x *pb.ReleaseLockResponse) *resp {
				return &resp{Response: &pb.StreamResponse_ReleaseLock{ReleaseLock: x}}
			})
	case *pb.StreamRequest_AcquireSemaphore:
		return twin(lockstepv1connect.SemaphoreServiceAcquireProcedure, r.AcquireSemaphore, mh.Acquire,
			func(x *pb.AcquireSemaphoreResponse) *resp {
				return &resp{Response: &pb.StreamResponse_AcquireSemaphore{AcquireSemaphore: x}}
			})
	case *pb.StreamRequest_ReleaseSemaphore:
		return twin(lockstepv1connect.SemaphoreServiceReleaseProcedure, r.ReleaseSemaphore, mh.Release,
			func(x *pb.ReleaseSemaphoreResponse) *resp {
				return &resp{Response: &pb.StreamResponse_ReleaseSemaphore{ReleaseSemaphore: x}}
			})
	case *pb.StreamRequest_AcquireRwlock:
		return twin(lockstepv1connect.RWLockServiceAcquireProcedure, r.AcquireRwlock, rh.Acquire,
			func(x *pb.AcquireRWLockResponse) *resp {
				return &resp{Response: &pb.StreamResponse_AcquireRwlock{AcquireRwlock: x}}
			})
	case *pb.StreamRequest_ReleaseRwlock:
		return twin(lockstepv1connect.RWLockServiceReleaseProcedure, r.ReleaseRwlock, rh.Release,
			func(x *pb.ReleaseRWLockResponse) *resp {
				return &resp{Response: &pb.StreamResponse_ReleaseRwlock{ReleaseRwlock: x}}
			})
	case *pb.StreamRequest_WaitBarrier:
		return twin(lockstepv1connect.BarrierServiceWaitProcedure, r.WaitBarrier, bh.Wait,
			func(x *pb.WaitBarrierResponse) *resp {
				return &resp{Response: &pb.StreamResponse_WaitBarrier{WaitBarrier: x}}
			})
	case *pb.StreamRequest_Campaign:
		return twin(lockstepv1connect.ElectionServiceCampaignProcedure, r.Campaign, eh.Campaign,
			func(x *pb.CampaignResponse) *resp { return &resp{Response: &pb.StreamResponse_Campaign{Campaign: x}} })
	case *pb.StreamRequest_Proclaim:
		return twin(lockstepv1connect.ElectionServiceProclaimProcedure, r.Proclaim, eh.Proclaim,
			func(x *pb.ProclaimResponse) *resp { return &resp{Response: &pb.StreamResponse_Proclaim{Proclaim: x}} })
	case *pb.StreamRequest_Resign:
		return twin(lockstepv1connect.ElectionServiceResignProcedure, r.Resign, eh.Resign,
			func(x *pb.ResignResponse) *resp { return &resp{Response: &pb.StreamResponse_Resign{Resign: x}} })
	}
	return streamRoute{}
}

// serve answers one request.
func (ss *sessionStream) serve(ctx context.Context, req *pb.StreamRequest) {
	id := req.RequestId
	rt := ss.route(req)
	if rt.proc == "" {
		ss.fail(id, invalid("request %d carries no request: set one of keep_alive, acquire_lock, release_lock, ... (docs/api.md, the session stream)", id))
		return
	}
	ctx = runtime.WithQueued(ctx, func(w core.WaiterID) {
		ss.out(&pb.StreamResponse{RequestId: id, Response: &pb.StreamResponse_Queued{Queued: &pb.StreamQueued{WaiterId: uint64(w)}}})
	})
	releasing := ss.markRelease(rt.proc, rt.msg)
	reply, err := ss.serveMessage(ctx, rt.proc, ss.peer, rt.msg, func(ctx context.Context) (any, error) {
		if err := ss.bind(ctx, rt.msg); err != nil {
			return nil, err
		}
		return rt.call(ctx)
	})
	if err != nil {
		ss.unmarkRelease(releasing)
		if ss.multi && connect.CodeOf(err) == connect.CodeNotFound {
			// No such session (any more): nothing to watch. So a stream
			// naming made-up session ids holds no watch for them.
			ss.unwatch(SessionIDOf(rt.msg))
		}
		ss.fail(id, err)
		return
	}
	if c := req.GetCloseSession(); c != nil && ss.multi {
		ss.unwatch(c.SessionId)
	}
	out := rt.wrap(reply)
	out.RequestId = id
	ss.out(out)
}

// bind checks that a request names a session, and watches that session
// for its expiry to push it: on Stream the session of its first request,
// to which the stream is then bound; on Multiplex every session named.
func (ss *sessionStream) bind(ctx context.Context, msg any) error {
	id := SessionIDOf(msg)
	if id == 0 {
		return invalid("session_id is missing: every request on a session stream names the stream's session (a request that makes its own session is for unary calls and REST)")
	}
	ss.mu.Lock()
	var stop chan any
	switch {
	case ss.multi:
		if _, ok := ss.watched[id]; !ok && len(ss.watched) < maxMultiplexSessions {
			stop = make(chan any)
			ss.watched[id] = stop
		}
	case ss.session == 0:
		ss.session = id
		stop = make(chan any) // never closed: the watch lasts as long as the stream
	case ss.session != id:
		bound := ss.session
		ss.mu.Unlock()
		return invalid("this stream is bound to session %d, and the request names session %d: open another stream for it, or use Multiplex", bound, id)
	}
	ss.mu.Unlock()
	if stop != nil {
		ss.watch(ctx, id, stop)
	}
	return nil
}

// watch pushes the end of each grant of session id while it lives on,
// and its loss when this node applies it, with why (it expired, or some
// caller closed it), unless stop closes or the stream ends first. One
// goroutine per session watched (at most maxMultiplexSessions a stream).
func (ss *sessionStream) watch(ctx context.Context, id uint64, stop <-chan any) {
	ended, unsubscribe := ss.b.SessionEnded(core.SessionID(id))
	grants, unsubscribeGrants := ss.b.GrantsEnded(core.SessionID(id))
	ss.watchers.Add(1) // from a request, so never while run waits for watchers
	go func() {
		defer ss.watchers.Done()
		defer unsubscribe()
		defer unsubscribeGrants()
		for {
			select {
			case g := <-grants:
				ss.pushGrantEnd(g)
				continue
			case why := <-ended:
				// The ends of its grants applied before its own first:
				// the runtime sends them before it ends the session.
				for drained := false; !drained; {
					select {
					case g := <-grants:
						ss.pushGrantEnd(g)
					default:
						drained = true
					}
				}
				ss.mu.Lock()
				if ss.watched[id] == stop {
					delete(ss.watched, id) // lost: no longer counts toward the bound
				}
				ss.mu.Unlock()
				ss.out(&pb.StreamResponse{Response: &pb.StreamResponse_SessionLost{SessionLost: &pb.StreamSessionLost{
					SessionId: id, Reason: reasonPB(why)}}})
			case <-stop:
			case <-ctx.Done():
			}
			return
		}
	}()
}

// pushGrantEnd pushes g, unless this stream's own release ended it (its
// answer says it).
func (ss *sessionStream) pushGrantEnd(g runtime.GrantEnd) {
	if !ss.ownRelease(g) {
		ss.out(grantEnded(g))
	}
}

// grantEnded is the push of a grant's end.
func grantEnded(g runtime.GrantEnd) *pb.StreamResponse {
	return &pb.StreamResponse{Response: &pb.StreamResponse_GrantEnded{GrantEnded: &pb.StreamGrantEnded{
		SessionId: uint64(g.Session), FencingToken: uint64(g.Token), Kind: kindPB(g.Kind), Name: g.Name, Reason: reasonPB(g.Reason)}}}
}

// unwatch stops watching session id (Multiplex, once its close is
// answered or a request finds it not_found), so that a long-lived stream
// does not keep a watcher for every session it ever carried.
func (ss *sessionStream) unwatch(id uint64) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if stop, ok := ss.watched[id]; ok {
		close(stop)
		delete(ss.watched, id)
	}
}

// fail answers request id with err's code and message.
func (ss *sessionStream) fail(id uint64, err error) {
	ss.out(&pb.StreamResponse{RequestId: id, Response: &pb.StreamResponse_Error{Error: &pb.StreamError{
		Code: connect.CodeOf(err).String(), Message: errorMessage(err)}}})
}
