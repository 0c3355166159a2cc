package core

// The property tests' formatting: copies of outputs, normalised state,
// readable commands, results and effects for failure messages, and the
// coverage report go test -v prints.

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

// ---- coverage: what the runs reached (go test -v prints it) ----

var propStats map[string]int

func (h *propHarness) count(e Entry, out *Output) {
	if propStats == nil {
		return
	}
	propStats["entries"]++
	for i, r := range out.Results {
		k := e.Commands[i].Op.String() + " "
		switch {
		case r.Duplicate:
			k += "duplicate"
		case r.Err != nil:
			k += r.Err.Code.String()
		default:
			k += r.Outcome.String()
		}
		propStats[k]++
	}
	for _, eff := range out.Effects {
		propStats["effect "+eff.Kind.String()+" "+eff.Reason.String()]++
	}
	if h.shadow != nil {
		propStats["entries on a restored machine"]++
	}
}

func logPropStats(t *testing.T) {
	var keys []string
	for k := range propStats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %-40s %d", k, propStats[k])
	}
	t.Logf("coverage over all runs (shrinking included):%s", b.String())
	propStats = nil
}

// ---- copying and printing ----

func copyOutput(o *Output) Output {
	c := Output{Index: o.Index, Time: o.Time}
	for _, r := range o.Results {
		if r.Err != nil {
			e := *r.Err
			r.Err = &e
		}
		c.Results = append(c.Results, r)
	}
	for _, e := range o.Effects {
		e.Value = normBytes(e.Value)
		c.Effects = append(c.Effects, e)
	}
	return c
}

func normBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

func normStatus(s Status) Status {
	var hs []Holder
	for _, h := range s.Holders {
		h.Value = normBytes(h.Value)
		hs = append(hs, h)
	}
	s.Holders = hs
	return s
}

func fmtKeys(l []Status) string {
	var s []string
	for _, st := range l {
		s = append(s, st.Kind.String()+":"+st.Name)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func fmtStatus(s Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "limit=%d used=%d parties=%d lockDelayUntil=%d holders=[", s.Limit, s.Used, s.Parties, s.LockDelayUntil)
	for _, h := range s.Holders {
		fmt.Fprintf(&b, " {s%d tok%d %s perm%d %s %q acq%d exp%d}", h.Session, h.Token, h.Mode, h.Permits, h.Owner, h.Value,
			h.AcquiredAt, h.ExpiresAt)
	}
	b.WriteString(" ] waiters=[")
	for _, w := range s.Waiters {
		fmt.Fprintf(&b, " {w%d s%d %s perm%d %q %q enq%d dl%d}", w.ID, w.Session, w.Mode, w.Permits, w.Owner, w.Participant,
			w.EnqueuedAt, w.Deadline)
	}
	b.WriteString(" ]")
	return b.String()
}

func fmtCommand(c *Command) string {
	var b strings.Builder
	b.WriteString(c.Op.String())
	add := func(ok bool, format string, v any) {
		if ok {
			fmt.Fprintf(&b, " "+format, v)
		}
	}
	add(c.ClientID != "", "client=%q", c.ClientID)
	add(c.Seq != 0, "seq=%d", c.Seq)
	add(c.Kind != 0, "kind=%s", c.Kind)
	add(c.Name != "", "name=%q", c.Name)
	add(c.Session != 0, "session=%d", c.Session)
	add(c.Token != 0, "token=%d", c.Token)
	add(c.Waiter != 0, "waiter=%d", c.Waiter)
	add(c.TTLMs != 0, "ttl=%d", c.TTLMs)
	add(c.WaitMs != 0, "wait=%d", c.WaitMs)
	add(c.LockDelayMs != 0, "lockDelay=%d", c.LockDelayMs)
	add(c.MaxHoldMs != 0, "maxHold=%d", c.MaxHoldMs)
	add(c.Limit != 0, "limit=%d", c.Limit)
	add(c.Permits != 0, "permits=%d", c.Permits)
	add(c.Mode != 0, "mode=%s", c.Mode)
	add(c.Parties != 0, "parties=%d", c.Parties)
	add(c.Participant != "", "participant=%q", c.Participant)
	add(c.Owner != "", "owner=%q", c.Owner)
	add(len(c.Value) != 0, "value=%q", c.Value)
	return b.String()
}

func fmtResult(r Result) string {
	if r.Err != nil {
		return "error " + r.Err.Code.String() + ": " + r.Err.Msg
	}
	s := fmt.Sprintf("%s session=%d", r.Outcome, r.Session)
	if r.Token != 0 {
		s += fmt.Sprintf(" token=%d", r.Token)
	}
	if r.Waiter != 0 {
		s += fmt.Sprintf(" waiter=%d", r.Waiter)
	}
	if r.Deadline != 0 {
		s += fmt.Sprintf(" deadline=%d", r.Deadline)
	}
	if r.Generation != 0 {
		s += fmt.Sprintf(" generation=%d", r.Generation)
	}
	if r.Reason != 0 {
		s += " reason=" + r.Reason.String()
	}
	if r.Duplicate {
		s += " duplicate"
	}
	return s
}

func fmtEffect(e Effect) string {
	s := fmt.Sprintf("%s %s %q session=%d", e.Kind, e.Object, e.Name, e.Session)
	if e.Reason != 0 {
		s += " reason=" + e.Reason.String()
	}
	if e.Waiter != 0 {
		s += fmt.Sprintf(" waiter=%d", e.Waiter)
	}
	if e.Token != 0 {
		s += fmt.Sprintf(" token=%d", e.Token)
	}
	if e.Generation != 0 {
		s += fmt.Sprintf(" generation=%d", e.Generation)
	}
	return s
}
