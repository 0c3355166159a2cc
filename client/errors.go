package client

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/internal/quote"
)

// Sentinel errors. Test for them with errors.Is; the returned errors wrap
// them with what the server said.
var (
	// ErrLocked: a TryLock (or any try-once acquire) found the object held.
	// A Mutex's says who holds it, as the servers' answer does: `lock
	// "jobs/a": lockstep: held by someone else: "worker-3", session 12,
	// token 34` (the holder's owner label, session and fencing token; it
	// may have gone since). The other kinds' answers do not carry the
	// holders: Client.Status lists them.
	ErrLocked = errors.New("lockstep: held by someone else")
	// (A refusal during a lock-delay is ErrLocked too, in its own words:
	// nobody holds the object then; lockDelayed.)
	// ErrNotHeld: Unlock, Release, Proclaim or Resign without a current grant,
	// or with a grant the server no longer has (it expired or was released).
	ErrNotHeld = errors.New("lockstep: not held")
	// ErrReleasedByAnother: a grant ended because another caller released
	// it by its token while the session lived (a REST release by owner
	// label, say), as the servers pushed it (LostErr). Such an error is
	// ErrNotHeld too.
	ErrReleasedByAnother = errors.New("lockstep: released by another caller")
	// ErrSessionLost: the session expired or was closed; everything it held
	// is gone. Start a new session.
	ErrSessionLost = errors.New("lockstep: session lost")
	// ErrUnavailable: no endpoint served the call within the retry
	// timeout: none answered, or those that did could not serve it (no
	// leader or no quorum reachable from them, shutting down). The error
	// says which, in the last endpoint's words.
	ErrUnavailable = errors.New("lockstep: unavailable")
	// ErrStaleToken: Fence refused a token older than one it has seen.
	ErrStaleToken = errors.New("lockstep: stale fencing token")
	// ErrNoLeader: Election.Leader found nobody elected.
	ErrNoLeader = errors.New("lockstep: no leader")
	// ErrTimeout: a bounded wait (Mutex.LockWithin, Semaphore.AcquireWithin)
	// ended without a grant: its wait, or the servers' cap on waits
	// (locks.max_wait_time_seconds, 60 s by default), ran out first.
	ErrTimeout = errors.New("lockstep: wait timed out")
	// ErrClientClosed: the Client was closed (Client.Close); make a new one.
	ErrClientClosed = errors.New("lockstep: client closed")

	// The servers' refusals of a request as given (connect's codes in
	// brackets, which stay reachable with connect.CodeOf). The error
	// keeps the server's message, which says what to change.

	// ErrPrecondition: the request contradicts the state it met on the
	// servers (failed_precondition): a semaphore acquired with another
	// limit than its holders', a barrier waited on with other parties, a
	// request_seq used already for another request, a cluster change the
	// membership does not allow, a CloseSession's lock-delay before the
	// cluster's rules allow it. The message says what the state is.
	ErrPrecondition = errors.New("lockstep: refused by the state the request met")
	// ErrInvalid: the request is malformed (invalid_argument): an empty or
	// over-long name, a value over the size limit, an out-of-range
	// argument. The message says which field. New's refusal of its
	// endpoints or options is ErrInvalid too.
	ErrInvalid = errors.New("lockstep: invalid request")
	// ErrPermissionDenied: the servers' ACL does not allow the caller's
	// principal this operation on this name (permission_denied; see
	// docs/security.md). A caller the servers could not authenticate
	// (unauthenticated: no or a wrong API key or certificate) is not this.
	ErrPermissionDenied = errors.New("lockstep: permission denied")
	// ErrLimit: a limit of the servers was reached (resource_exhausted):
	// too many sessions, live objects, waiters on a name or across the
	// cluster, grants and waits of one session, or pending requests of one
	// client. It may pass later, once something is released or closed.
	ErrLimit = errors.New("lockstep: limit reached")
	// ErrNotMember: RemoveNode named a node id that is no member of the
	// cluster and never was (not_found): nothing changed. (A transfer to a
	// node that is not a member is ErrPrecondition.)
	ErrNotMember = errors.New("lockstep: not a member")
)

// opName names an operation in its errors (`unlock "jobs/a"`). It keeps
// the parts and makes the text only when an error is made: every acquire
// and release carries one, few fail, and a fmt.Sprintf for each was a
// tenth of the allocations of a lock and unlock cycle.
type opName struct{ verb, name string }

func (o opName) String() string { return o.verb + " " + quote.Bounded(o.name) }

// badName refuses a name the client cannot send: Protocol Buffers carry
// only valid UTF-8 strings, and the encoder's own failure said
// "internal: marshal message", as if the client were broken.
func badName(o opName) error {
	if utf8.ValidString(o.name) {
		return nil
	}
	return fmt.Errorf("%s: %w: the name is not valid UTF-8: a name is 1..256 bytes of printable UTF-8", o, ErrInvalid)
}

// apiErr wraps a server error in the sentinel that matches its code, so
// callers can test with errors.Is and still read the server's message.
// The refusals of a request as given wrap the connect error as well, so
// that connect.CodeOf still reads their code (the CLI's hints do).
func apiErr[Op opName | string](op Op, err error) error {
	if err == nil {
		return nil
	}
	var refusal error
	shown := err
	if ce, ok := err.(*connect.Error); ok && ce.Message() != "" {
		shown = &serverMessage{ce}
	}
	switch connect.CodeOf(err) {
	case connect.CodeAborted:
		return fmt.Errorf("%s: %w: %v", op, ErrNotHeld, shown)
	case connect.CodeNotFound:
		return fmt.Errorf("%s: %w: %v", op, ErrSessionLost, shown)
	case connect.CodeFailedPrecondition:
		refusal = ErrPrecondition
	case connect.CodeInvalidArgument:
		refusal = ErrInvalid
	case connect.CodePermissionDenied:
		refusal = ErrPermissionDenied
	case connect.CodeResourceExhausted:
		refusal = ErrLimit
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w: %w", op, refusal, shown)
}

// serverMessage is a server's refusal as the client's errors print it: its
// message alone, since the sentinel before it already names what the code
// says ("permission denied: permission_denied: ..." said it twice). It
// unwraps to the connect error, so connect.CodeOf and errors.As still
// find it.
type serverMessage struct{ err *connect.Error }

func (e *serverMessage) Error() string { return e.err.Message() }
func (e *serverMessage) Unwrap() error { return e.err }

// lockDelayed is ErrLocked for a refusal during a mutex's lock-delay: it
// matches ErrLocked (errors.Is), and says what keeps the mutex instead of
// ErrLocked's "held by someone else", which a user read as "nobody holds
// it" contradicted in one line.
type lockDelayed string

func (e lockDelayed) Error() string        { return string(e) }
func (e lockDelayed) Is(target error) bool { return target == ErrLocked }
