package model

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
	"github.com/lockstepd/lockstep/core"
)

// Key names one object: its kind and name.
type Key struct {
	Kind core.Kind
	Name string
}

// Op is what a client asked.
type Op uint8

const (
	Acquire  Op = iota + 1 // acquire or campaign
	Release                // release or resign
	Proclaim               // an elected leader sets its value
	Status                 // a linearizable read of the holders
	End                    // the machine ended a grant (expiry, close, abandon)
)

// Outcome is what it was told.
type Outcome uint8

const (
	Granted Outcome = iota + 1
	Refused         // try-once and not free
	Ended           // a wait ended without a grant
	OK
	Failed  // a definite refusal of a release or proclaim (not "unknown")
	Holders // a Status read's answer
)

// Input is one operation as called.
type Input struct {
	Op      Op
	Key     Key
	Session core.SessionID
	Token   core.FencingToken
	Permits int64
	Limit   int64
	Mode    core.Mode
	Value   string
	Try     bool
	Reason  core.Reason // End
	// Delayed (End): the end started the mutex's lock-delay, which keeps
	// it from everyone for a while (a failure, or a close that asked).
	Delayed bool
	// Rules is the rules in force at the entry that applied the operation
	// (core.Machine's Rules, core/rules.go); 0 means this build's. An
	// election's leader campaigning again sets its value from rules 4 and
	// keeps the old one under rules 3.
	Rules uint64
}

// rulesCampaignValue is the first rules under which a leader's campaign
// sets its value (core/rules.go).
const rulesCampaignValue = 4

// Output is what the operation returned.
type Output struct {
	Kind    Outcome
	Token   core.FencingToken
	Holders []Holder
	Value   string
}

// Holder is one grant of an object.
type Holder struct {
	Session core.SessionID
	Token   core.FencingToken
	Permits int64
	Mode    core.Mode
}

// IllegalNames lists the names whose partition fails, for the message.
func IllegalNames(ops []porcupine.Operation) string {
	var bad []string
	for _, part := range Partition(ops) {
		if !porcupine.CheckOperations(Lock, part) {
			k := part[0].Input.(Input).Key
			bad = append(bad, fmt.Sprintf("%s %q", k.Kind, k.Name))
		}
	}
	return strings.Join(bad, ", ")
}

// Partition splits a history by object, in a fixed order.
func Partition(ops []porcupine.Operation) [][]porcupine.Operation {
	by := map[Key][]porcupine.Operation{}
	for _, op := range ops {
		k := op.Input.(Input).Key
		by[k] = append(by[k], op)
	}
	keys := make([]Key, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Kind != keys[j].Kind {
			return keys[i].Kind < keys[j].Kind
		}
		return keys[i].Name < keys[j].Name
	})
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, by[k])
	}
	return out
}

// State is one object as the model sees it: its holders in token order,
// an election's value, and the highest token ever granted on it (a grant
// must exceed it: tokens strictly increase per name).
type State struct {
	Holders  []Holder
	Value    string
	MaxToken core.FencingToken
	// Delayed: a mutex whose last grant ended with a lock-delay, not yet
	// granted again. The model has no clock, so it lets a try-once
	// acquire be refused while nobody holds it until the next grant; the
	// simulator's ledger checks the delay's length against log time.
	Delayed bool
}

func (s State) find(session core.SessionID) int {
	for i, h := range s.Holders {
		if h.Session == session {
			return i
		}
	}
	return -1
}

func (s State) findToken(t core.FencingToken) int {
	for i, h := range s.Holders {
		if h.Token == t {
			return i
		}
	}
	return -1
}

func (s State) used() int64 {
	n := int64(0)
	for _, h := range s.Holders {
		n += h.Permits
	}
	return n
}

func (s State) writer() bool {
	for _, h := range s.Holders {
		if h.Mode == core.ModeWrite {
			return true
		}
	}
	return false
}

func (s State) canGrant(in Input) bool {
	switch in.Key.Kind {
	case core.KindSemaphore:
		return s.used()+in.Permits <= in.Limit
	case core.KindRWLock:
		if in.Mode == core.ModeWrite {
			return len(s.Holders) == 0
		}
		return !s.writer()
	}
	return len(s.Holders) == 0
}

// refusable says whether a try-once request may be refused: someone else
// holds what it needs (a queue is only ever non-empty behind holders).
func (s State) refusable(in Input) bool {
	if in.Key.Kind == core.KindSemaphore {
		return s.used()+in.Permits > in.Limit
	}
	return len(s.Holders) > 0
}

func (s State) without(i int) State {
	n := s
	n.Holders = slices.Delete(slices.Clone(s.Holders), i, i+1)
	if len(n.Holders) == 0 {
		n.Value = ""
	}
	return n
}

func step(state, input, output any) (bool, any) {
	s := state.(State)
	in := input.(Input)
	out := output.(Output)
	switch in.Op {
	case Acquire:
		i := s.find(in.Session)
		switch out.Kind {
		case Granted:
			if i >= 0 {
				// A holder's acquire again answers its grant; an election's
				// leader campaigning again proclaims its value from rules
				// 4, and keeps it under rules 3.
				if s.Holders[i].Token != out.Token {
					return false, s
				}
				if in.Key.Kind == core.KindElection && (in.Rules == 0 || in.Rules >= rulesCampaignValue) {
					n := s
					n.Value = in.Value
					return true, n
				}
				return true, s
			}
			if out.Token <= s.MaxToken || !s.canGrant(in) {
				return false, s
			}
			n := s
			n.Holders = append(slices.Clone(s.Holders), Holder{Session: in.Session, Token: out.Token, Permits: in.Permits, Mode: in.Mode})
			n.MaxToken = out.Token
			n.Delayed = false
			if in.Key.Kind == core.KindElection {
				n.Value = in.Value
			}
			return true, n
		case Refused:
			return i < 0 && (s.refusable(in) || (s.Delayed && len(s.Holders) == 0)), s
		default:
			return true, s
		}
	case Release:
		i := s.findToken(in.Token)
		held := i >= 0 && s.Holders[i].Session == in.Session
		if out.Kind == OK {
			if !held {
				return false, s
			}
			return true, s.without(i)
		}
		return !held, s
	case Proclaim:
		leader := len(s.Holders) > 0 && s.Holders[0].Session == in.Session && s.Holders[0].Token == in.Token
		if out.Kind == OK {
			if !leader {
				return false, s
			}
			n := s
			n.Value = in.Value
			return true, n
		}
		return !leader, s
	case Status:
		if out.Kind == Failed {
			return true, s
		}
		if len(out.Holders) != len(s.Holders) {
			return false, s
		}
		for i := range out.Holders {
			if out.Holders[i].Session != s.Holders[i].Session || out.Holders[i].Token != s.Holders[i].Token {
				return false, s
			}
		}
		return in.Key.Kind != core.KindElection || out.Value == s.Value, s
	case End:
		i := s.findToken(in.Token)
		if i < 0 {
			return false, s
		}
		n := s.without(i)
		n.Delayed = in.Delayed && in.Key.Kind == core.KindMutex
		return true, n
	}
	return false, s
}

func equal(a, b any) bool {
	x, y := a.(State), b.(State)
	return x.MaxToken == y.MaxToken && x.Value == y.Value && x.Delayed == y.Delayed && slices.Equal(x.Holders, y.Holders)
}

// Lock is the porcupine model of every modeled kind, partitioned by object.
var Lock = porcupine.Model{
	Partition: Partition,
	Init:      func() any { return State{} },
	Step:      step,
	Equal:     equal,
	DescribeOperation: func(input, output any) string {
		in, out := input.(Input), output.(Output)
		return DescribeInput(in) + " → " + DescribeOutput(out)
	},
	DescribeState: func(state any) string {
		s := state.(State)
		var parts []string
		for _, h := range s.Holders {
			parts = append(parts, fmt.Sprintf("s%d:t%d", h.Session, h.Token))
		}
		d := "{" + strings.Join(parts, " ") + "}"
		if s.Value != "" {
			d += " value=" + s.Value
		}
		if s.Delayed {
			d += " lock-delay"
		}
		return d
	},
}

func DescribeInput(in Input) string {
	switch in.Op {
	case Acquire:
		d := fmt.Sprintf("acquire(%s %s, s%d", in.Key.Kind, in.Key.Name, in.Session)
		if in.Mode != 0 {
			d += " " + in.Mode.String()
		}
		if in.Try {
			d += " try"
		}
		return d + ")"
	case Release:
		return fmt.Sprintf("release(s%d, t%d)", in.Session, in.Token)
	case Proclaim:
		return fmt.Sprintf("proclaim(s%d, t%d, %s)", in.Session, in.Token, in.Value)
	case Status:
		return fmt.Sprintf("status(%s %s)", in.Key.Kind, in.Key.Name)
	case End:
		d := fmt.Sprintf("machine ends t%d of s%d (%s", in.Token, in.Session, in.Reason)
		if in.Delayed {
			d += ", lock-delay"
		}
		return d + ")"
	}
	return "?"
}

func DescribeOutput(out Output) string {
	switch out.Kind {
	case Granted:
		return fmt.Sprintf("granted t%d", out.Token)
	case Refused:
		return "refused"
	case Ended:
		return "wait ended"
	case OK:
		return "ok"
	case Failed:
		return "error"
	case Holders:
		var parts []string
		for _, h := range out.Holders {
			parts = append(parts, fmt.Sprintf("s%d:t%d", h.Session, h.Token))
		}
		d := "[" + strings.Join(parts, " ") + "]"
		if out.Value != "" {
			d += " value=" + out.Value
		}
		return d
	}
	return "?"
}
