package core

// The property tests' generators: entries of valid, retried and corrupted
// commands, drawn from what the harness has seen so that they hit live
// sessions, holds and waiters.

import (
	"strings"

	"pgregory.net/rapid"
)

// ---- generation ----

// uniform draws 0..n-1 evenly. rapid's integer generators lean towards
// small values, which would turn every weighted choice below into "mostly
// the first option"; fair coin flips do not, and still shrink towards 0.
func uniform(t *rapid.T, label string, n int) int {
	if n == 1 {
		return 0
	}
	return rapid.Custom(func(t *rapid.T) int {
		for {
			u := 0
			for b := 0; 1<<b < n; b++ {
				if rapid.Bool().Draw(t, "bit") {
					u |= 1 << b
				}
			}
			if u < n {
				return u
			}
		}
	}).Draw(t, label)
}

// pick draws one element evenly.
func pick[E any](t *rapid.T, label string, s []E) E { return s[uniform(t, label, len(s))] }

func pickWeighted(t *rapid.T, label string, weights ...int) int {
	sum := 0
	for _, w := range weights {
		sum += w
	}
	r := uniform(t, label, sum)
	for i, w := range weights {
		if r < w {
			return i
		}
		r -= w
	}
	panic("unreachable")
}

func (h *propHarness) drawEntry() Entry {
	t := h.rt
	h.index++
	if uniform(t, "indexGap", 10) == 0 {
		h.index += 2 // the log carries entries the machine never sees
	}
	var dt int64
	switch pickWeighted(t, "dtClass", 5, 10, 4, 1, 1, 1) {
	case 1:
		dt = rapid.Int64Range(1, 40).Draw(t, "dt")
	case 2:
		dt = rapid.Int64Range(41, 700).Draw(t, "dt")
	case 3:
		dt = rapid.Int64Range(701, 2600).Draw(t, "dt")
	case 4: // a proposer's clock jumps: the step is capped
		dt = rapid.Int64Range(2601, 200_000).Draw(t, "dt")
	case 5: // a proposer whose clock is behind
		dt = -rapid.Int64Range(1, 1000).Draw(t, "dt")
	}
	h.stamp += LogTime(dt)
	var n int
	switch pickWeighted(t, "nCommands", 6, 16, 8, 4, 4, 1) {
	case 1:
		n = 1
	case 2:
		n = 2
	case 3:
		n = 3
	case 4:
		n = h.lim.MaxCommandsPerEntry
	case 5:
		n = h.lim.MaxCommandsPerEntry + 1 // too many: all refused
	}
	e := Entry{Index: h.index, Proposal: Proposal{Time: h.stamp}}
	for i := 0; i < n; i++ {
		e.Commands = append(e.Commands, h.drawCommand())
	}
	return e
}

const (
	genCreate = iota
	genKeepAlive
	genClose
	genAcquire
	genRelease
	genCancel
	genBarrierWait
	genBarrierSet
	genBarrierRemove
	genCampaign
	genProclaim
	genResign
	genLeaderChange
	genInvalid
	genRetry
)

func (h *propHarness) drawCommand() Command {
	t := h.rt
	op := pickWeighted(t, "op", 12, 12, 3, 22, 10, 4, 8, 3, 3, 7, 3, 3, 3, 6, 7)
	if len(h.model.sessions) == 0 && uniform(t, "needSession", 4) > 0 {
		op = genCreate // most commands need a live session
	}
	if op == genRetry {
		if len(h.sent) == 0 {
			op = genCreate
		} else {
			c := pick(t, "retry", h.sent)
			return c
		}
	}
	invalid := op == genInvalid
	if invalid {
		op = pickWeighted(t, "invalidBase", 1, 1, 1, 4, 1, 1, 2, 1, 1, 2, 1, 1, 1)
	}
	c := h.drawValid(op)
	if op != genLeaderChange {
		h.assignClient(&c)
	}
	if invalid {
		h.corrupt(&c)
	}
	if c.ClientID != "" {
		h.sent = append(h.sent, c)
		if len(h.sent) > 40 {
			h.sent = h.sent[1:]
		}
	}
	return c
}

func (h *propHarness) assignClient(c *Command) {
	t := h.rt
	id := pick(t, "client", propClients)
	if id == "" {
		return
	}
	cur := h.seqs[id]
	seq := cur + 1
	switch pickWeighted(t, "seqKind", 14, 2, 3) {
	case 1: // skip one: a later command arrives first
		seq = cur + 2
	case 2: // an earlier seq: fills a gap, repeats a stored one, or is too old
		if cur > 0 {
			seq = rapid.Uint64Range(1, cur).Draw(t, "oldSeq")
		}
	}
	if seq > cur {
		h.seqs[id] = seq
	}
	c.ClientID, c.Seq = id, seq
}

func (h *propHarness) drawSession(label string) SessionID {
	t := h.rt
	var live []SessionID
	for _, s := range h.model.sessions {
		live = append(live, s.id)
	}
	switch r := uniform(t, label+"From", 20); {
	case r < 16 && len(live) > 0:
		return pick(t, label, live)
	case r < 19 && len(h.sessionsSeen) > 0:
		return pick(t, label, h.sessionsSeen)
	}
	return SessionID(77) // never allocated: entry indexes start at 1
}

func (h *propHarness) drawWait() int64 {
	return pick(h.rt, "wait", []int64{0, 0, WaitForever, 30, 300, 1500, 4000})
}

func (h *propHarness) drawOwnerValue(c *Command) {
	c.Owner = pick(h.rt, "owner", []string{"", "", "own"})
	c.Value = pick(h.rt, "value", [][]byte{nil, nil, []byte("v1"), []byte("v22")})
}

// drawHold picks a current grant of one of the kinds (most of the time), a
// grant that ended, or a token never given.
func (h *propHarness) drawHold(kinds ...Kind) (objectKey, FencingToken, SessionID) {
	t := h.rt
	var cur []*refHold
	for _, hd := range h.model.holds {
		for _, k := range kinds {
			if hd.key.kind == k {
				cur = append(cur, hd)
			}
		}
	}
	switch r := uniform(t, "holdFrom", 20); {
	case r < 15 && len(cur) > 0:
		hd := pick(t, "hold", cur)
		return hd.key, hd.token, hd.session
	case r < 18 && len(h.tokenList) > 0:
		tok := pick(t, "staleToken", h.tokenList)
		k := h.tokensSeen[tok]
		return objectKey{kinds[0], k.name}, tok, h.drawSession("staleHolder")
	}
	return objectKey{kinds[0], pick(t, "name", propNames)}, FencingToken(99), h.drawSession("holder")
}

func (h *propHarness) drawValid(op int) Command {
	t := h.rt
	name := func() string { return pick(t, "name", []string{"a", "a", "a", "b"}) }
	ttl := func() int64 { return pick(t, "ttl", []int64{50, 400, 1000, 3000, 3000, 8000, 8000}) }
	switch op {
	case genCreate:
		c := Command{Op: OpSessionCreate, TTLMs: ttl()}
		c.Owner = pick(t, "owner", []string{"", "own"})
		// Now and then adopt an id, as a shard mirroring a session does: a
		// live one (same or other TTL and owner), an ended one, or a fresh one.
		if uniform(t, "adopt", 8) == 0 {
			c.Session = pick(t, "adoptID", []SessionID{h.drawSession("adoptSession"), SessionID(5<<SlotBits | 9)})
		}
		return c
	case genKeepAlive:
		c := Command{Op: OpSessionKeepAlive, Session: h.drawSession("session")}
		if rapid.Bool().Draw(t, "newTTL") {
			c.TTLMs = ttl()
		}
		return c
	case genClose:
		return Command{Op: OpSessionClose, Session: h.drawSession("session")}
	case genAcquire:
		c := Command{Op: OpAcquire, Name: name(), Session: h.drawSession("session"), WaitMs: h.drawWait()}
		c.Kind = pick(t, "kind", []Kind{KindMutex, KindMutex, KindSemaphore, KindRWLock})
		switch c.Kind {
		case KindMutex:
			c.LockDelayMs = pick(t, "lockDelay", []int64{0, 0, 100, 900})
		case KindSemaphore:
			c.Limit = pick(t, "limit", []int64{2, 2, 2, 3, 1})
			c.Permits = rapid.Int64Range(0, c.Limit).Draw(t, "permits")
		case KindRWLock:
			c.Mode = pick(t, "mode", []Mode{ModeRead, ModeRead, ModeWrite})
		}
		c.MaxHoldMs = pick(t, "maxHold", []int64{0, 0, 0, 120, 1500})
		h.drawOwnerValue(&c)
		return c
	case genRelease:
		k, tok, s := h.drawHold(KindMutex, KindSemaphore, KindRWLock)
		c := Command{Op: OpRelease, Kind: k.kind, Name: k.name, Token: tok}
		switch uniform(t, "releaseBy", 6) {
		case 0, 1, 2:
			c.Session = s
		case 3:
			c.Session = h.drawSession("otherSession")
		}
		return c
	case genCancel:
		c := Command{Op: OpCancel}
		var cur []*refWait
		cur = append(cur, h.model.waits...)
		switch r := uniform(t, "waiterFrom", 10); {
		case r < 7 && len(cur) > 0:
			w := pick(t, "waiter", cur)
			c.Waiter = w.id
			if uniform(t, "cancelBy", 4) < 3 {
				c.Session = w.session
			} else {
				c.Session = h.drawSession("otherSession")
			}
		case r < 9 && len(h.waitersSeen) > 0:
			c.Waiter = pick(t, "staleWaiter", h.waitersSeen)
		default:
			c.Waiter = 88
		}
		return c
	case genBarrierWait:
		return Command{Op: OpBarrierWait, Name: name(), Session: h.drawSession("session"), WaitMs: h.drawWait(),
			Parties:     pick(t, "parties", []int64{0, 2, 3, 3}),
			Participant: pick(t, "participant", []string{"", "", "p"})}
	case genBarrierSet:
		return Command{Op: OpBarrierSet, Name: name(), Session: h.drawSession("session")}
	case genBarrierRemove:
		return Command{Op: OpBarrierRemove, Name: name()}
	case genCampaign:
		c := Command{Op: OpCampaign, Name: name(), Session: h.drawSession("session"), WaitMs: h.drawWait()}
		h.drawOwnerValue(&c)
		return c
	case genProclaim, genResign:
		k, tok, s := h.drawHold(KindElection)
		if uniform(t, "wrongSession", 6) == 0 {
			s = h.drawSession("otherSession")
		}
		c := Command{Op: OpResign, Name: k.name, Session: s, Token: tok}
		if op == genProclaim {
			c.Op = OpProclaim
			c.Value = pick(t, "value", [][]byte{nil, []byte("p1"), []byte("p22")})
		}
		return c
	case genLeaderChange:
		return Command{Op: OpLeaderChange}
	}
	panic("unreachable")
}

// corrupt breaks one stateless rule (most of the time: the model decides).
func (h *propHarness) corrupt(c *Command) {
	t := h.rt
	switch uniform(t, "corruption", 17) {
	case 0:
		c.Op = pick(t, "badOp", []Op{0, opCount, 200})
	case 1: // a field the op does not take
		switch uniform(t, "extraField", 6) {
		case 0:
			c.Token = 5
		case 1:
			c.Waiter = 5
		case 2:
			c.Participant = "x"
		case 3:
			c.TTLMs = 100
		case 4:
			c.Kind = KindMutex
		case 5:
			c.Value = []byte("x")
		}
	case 2:
		c.Name = pick(t, "badName", []string{"", "\x01a", "nine-byte", "\xffa", "a\u200bb", " "})
	case 3:
		c.TTLMs = pick(t, "badTTL", []int64{-1, 1, 9, 10_001})
	case 4:
		c.WaitMs = pick(t, "badWait", []int64{-2, 5_001, -1 << 40})
	case 5:
		if c.ClientID != "" {
			c.Seq = 0
		} else {
			c.Seq = 3
		}
	case 6:
		c.Owner = pick(t, "badOwner", []string{"seven77", "\xff"})
	case 7:
		c.Value = []byte("seven77")
	case 8:
		c.Parties = pick(t, "badParties", []int64{1, 5, -2})
	case 9:
		c.Permits = c.Limit + 1
	case 10:
		c.Limit = pick(t, "badLimit", []int64{0, 5, -1})
	case 11:
		c.Mode = 3
	case 12:
		c.LockDelayMs = pick(t, "badLockDelay", []int64{-1, 1_001, 50})
	case 13:
		c.MaxHoldMs = pick(t, "badMaxHold", []int64{-1, 5_001})
	case 14:
		c.Kind = pick(t, "badKind", []Kind{KindBarrier, KindElection, 0, 9})
	case 15:
		c.ClientID, c.Seq = strings.Repeat("c", MaxClientIDBytes+1), 1
	case 16: // the zero value of a required field
		c.Session, c.Token, c.Waiter = 0, 0, 0
	}
}
