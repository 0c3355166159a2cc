package client

import (
	"maps"
	"slices"
	"sync"
)

// A session's own streams (stream.go) and the Client's shared streams
// (multiplex.go) are kept the same way: at most one open stream per
// endpoint, opened on first use, forgotten when it ends; opening one
// shuts the idle streams to other endpoints, left behind when requests
// moved (a failover). What counts as idle is each kind's own.

// endpointStream is one open stream to one endpoint.
type endpointStream interface {
	comparable
	endpoint() *endpoint
	idle() bool     // unused, so shutting it fails nothing
	shut(err error) // ends it; its unanswered requests fail with err
}

// streamSet holds the open streams, one per endpoint at most.
type streamSet[S endpointStream] struct {
	mu sync.Mutex
	by map[*endpoint]S
}

// to answers the open stream to e, or one open makes; before it opens one,
// the idle streams to other endpoints are shut with moved.
func (set *streamSet[S]) to(e *endpoint, open func() S, moved error) S {
	set.mu.Lock()
	defer set.mu.Unlock()
	if s, ok := set.by[e]; ok {
		return s
	}
	for other, s := range set.by {
		if s.idle() {
			s.shut(moved)
			delete(set.by, other)
		}
	}
	s := open()
	if set.by == nil {
		set.by = map[*endpoint]S{}
	}
	set.by[e] = s
	return s
}

// drop forgets s if it is still the stream to its endpoint.
func (set *streamSet[S]) drop(s S) {
	set.mu.Lock()
	defer set.mu.Unlock()
	if cur, ok := set.by[s.endpoint()]; ok && cur == s {
		delete(set.by, s.endpoint())
	}
}

// list answers the open streams.
func (set *streamSet[S]) list() []S {
	set.mu.Lock()
	defer set.mu.Unlock()
	return slices.Collect(maps.Values(set.by))
}

// take answers the open streams and forgets them all, at once.
func (set *streamSet[S]) take() []S {
	set.mu.Lock()
	defer set.mu.Unlock()
	out := slices.Collect(maps.Values(set.by))
	set.by = nil
	return out
}

// A stream nothing uses any more is shut: the shared stream once no
// session is listed on it, a session's own stream once the session was
// lost without Close or forgotten by Close (Session.unlisted). Either way
// only once nothing on it is unanswered, so that no request waiting for
// its answer fails for it: the last one to end shuts it.
type shutWhenUnused interface {
	// shutIfUnusedLocked, under the stream's lock, marks the stream ended
	// if nothing uses it, and says whether it did.
	shutIfUnusedLocked() bool
	// retire forgets the ended stream in its set and ends its HTTP/2
	// stream.
	retire()
}

// unlockShutIfUnused lets go of mu, the lock of s that the caller holds
// having changed what uses s (an answer handed over, a wait forgotten, a
// session gone), and shuts s if that left it unused. Deciding and marking
// s ended under one hold of mu means a request registered meanwhile is
// either counted there or sees s ended and goes another way. s is retired
// only once mu is let go: a set's lock is taken before its streams' (to
// asks idle), and retire takes the set's.
func unlockShutIfUnused(s shutWhenUnused, mu *sync.Mutex) {
	unused := s.shutIfUnusedLocked()
	mu.Unlock()
	if unused {
		s.retire()
	}
}
