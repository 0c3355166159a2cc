package core

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"
)

// tblFull is a command with every field set, which no op accepts but the
// codec must carry anyway: validation is the machine's job.
func tblFull() Command {
	return Command{Op: OpAcquire, ClientID: "client-ü", Seq: math.MaxUint64, Kind: KindRWLock, Name: "a/b/名前",
		Session: math.MaxUint64, Token: 1, Waiter: 1 << 40, TTLMs: math.MinInt64, WaitMs: WaitForever, LockDelayMs: math.MaxInt64,
		MaxHoldMs: 1, Limit: -1, Permits: 3, Mode: ModeWrite, Parties: 2, Participant: "p", Owner: "o", Value: []byte{0, 1, 255}}
}

// tblProposals are proposals worth encoding: one per op with its fields,
// extremes, and packed batches. The fuzz seed corpus uses them too.
func tblProposals() map[string]Proposal {
	s := SessionID(2 << SlotBits)
	tok := FencingToken(5 << SlotBits)
	return map[string]Proposal{
		"tick":            {Time: 1_000},
		"tick_zero":       {},
		"tick_negative":   {Time: -1},
		"tick_max":        {Time: math.MaxInt64},
		"tick_min":        {Time: math.MinInt64},
		"session_create":  {Time: 1_000, Commands: []Command{with(Command{Op: OpSessionCreate, TTLMs: 5_000, Owner: "worker"}, "c1", 1)}},
		"session_adopt":   {Time: 1_000, Commands: []Command{with(Command{Op: OpSessionCreate, Session: s, TTLMs: 5_000, Owner: "worker"}, "c1", 2)}},
		"keepalive":       {Time: 1_000, Commands: []Command{{Op: OpSessionKeepAlive, Session: s, TTLMs: 10_000}}},
		"close":           {Time: 1_000, Commands: []Command{cClose(s)}},
		"mutex":           {Time: 1_000, Commands: []Command{{Op: OpAcquire, Kind: KindMutex, Name: "m", Session: s, WaitMs: 5_000, LockDelayMs: 100, MaxHoldMs: 9_000, Owner: "o", Value: []byte("v")}}},
		"semaphore":       {Time: 1_000, Commands: []Command{cSem("s", s, 5, 2, WaitForever)}},
		"rwlock":          {Time: 1_000, Commands: []Command{cRW("rw", s, ModeRead, 0), cRW("rw", s, ModeWrite, 10)}},
		"release":         {Time: 1_000, Commands: []Command{cRelease(KindMutex, "m", s, tok)}},
		"cancel":          {Time: 1_000, Commands: []Command{cCancel(s, WaiterID(tok))}},
		"barrier":         {Time: 1_000, Commands: []Command{cArrive("b", s, 3, "p1", 1_000), cSet("g", s), cRemove("g")}},
		"election":        {Time: 1_000, Commands: []Command{cCampaign("e", s, "addr", WaitForever), cProclaim("e", s, tok, "x"), cResign("e", s, tok)}},
		"leader_change":   {Time: 1_000, Commands: []Command{cLeader()}},
		"every_field":     {Time: 7, Commands: []Command{tblFull()}},
		"unknown_op":      {Time: 7, Commands: []Command{{Op: 200, Kind: 99, Mode: 77}}},
		"packed":          {Time: 1_500, Commands: []Command{cCreate(1_000), cMutex("x", s, 0), cRelease(KindMutex, "x", s, tok), cMutex("x", s, 0), with(cCreate(1_000), "c", 2)}},
		"long_name":       {Time: 1, Commands: []Command{cMutex(strings.Repeat("n", 300), s, 0)}},
		"big_value":       {Time: 1, Commands: []Command{{Op: OpCampaign, Name: "e", Session: s, Value: bytes.Repeat([]byte{0xab}, 2_000)}}},
		"invalid_utf8":    {Time: 1, Commands: []Command{cMutex("\xff\x00", s, 0)}},
		"empty_commands":  {Time: 1, Commands: []Command{{}, {}}},
		"client_only_seq": {Time: 1, Commands: []Command{{Op: OpSessionCreate, Seq: 9}}},
	}
}

func TestCodecRoundTripTable(t *testing.T) {
	for name, p := range tblProposals() {
		t.Run(name, func(t *testing.T) {
			b := EncodeProposal(p)
			if b[0] != ProposalVersion {
				t.Fatalf("version byte %d", b[0])
			}
			got, err := DecodeProposal(b)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tblNormal(p)) {
				t.Fatalf("decoded\n%+v\nwant\n%+v", got, p)
			}
			if !bytes.Equal(EncodeProposal(got), b) {
				t.Fatal("re-encoding differs")
			}
			if !bytes.Equal(EncodeProposal(p), b) {
				t.Fatal("encoding is not deterministic")
			}
			if !bytes.Equal(AppendProposal([]byte("xy"), p), append([]byte("xy"), b...)) {
				t.Fatal("AppendProposal differs from EncodeProposal")
			}
			// The decoded proposal owns its bytes.
			for i := range b {
				b[i] ^= 0xff
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tblNormal(p)) {
				t.Fatal("the decoded proposal aliases its input")
			}
		})
	}
}

// tblNormal is what a proposal decodes to: an empty value is absent.
func tblNormal(p Proposal) Proposal {
	if len(p.Commands) == 0 {
		p.Commands = nil
	}
	cmds := append([]Command(nil), p.Commands...)
	for i := range cmds {
		if len(cmds[i].Value) == 0 {
			cmds[i].Value = nil
		}
	}
	p.Commands = cmds
	return p
}

func TestCodecSmall(t *testing.T) {
	// A tick is three bytes; a command costs only the fields it sets.
	if n := len(EncodeProposal(Proposal{Time: 1})); n != 3 {
		t.Fatalf("a tick takes %d bytes", n)
	}
	if n := len(EncodeProposal(Proposal{Commands: []Command{cLeader()}})); n != 7 {
		t.Fatalf("a leader change takes %d bytes", n)
	}
	// An empty value is the same as none.
	a := EncodeProposal(Proposal{Commands: []Command{{Op: OpCampaign, Value: []byte{}}}})
	b := EncodeProposal(Proposal{Commands: []Command{{Op: OpCampaign}}})
	if !bytes.Equal(a, b) {
		t.Fatal("an empty value encodes differently from none")
	}
}

func TestCodecErrorsTable(t *testing.T) {
	raw := func(f func(e *encoder)) []byte {
		e := encoder{}
		f(&e)
		return e.b
	}
	// cmdHead writes a proposal of one command up to its presence mask.
	cmdHead := func(e *encoder, mask field) {
		e.byte(ProposalVersion)
		e.varint(0)
		e.uvarint(1)
		e.byte(byte(OpAcquire))
		e.string("")
		e.uvarint(0)
		e.uvarint(uint64(mask))
	}
	good := EncodeProposal(tblProposals()["packed"])
	tests := []struct {
		name   string
		b      []byte
		phrase string
	}{
		{"nothing", nil, "malformed proposal: input ends early"},
		{"version 0", []byte{0, 0, 0}, "proposal version 0 is not known (this build reads version 1)"},
		{"version 2", append([]byte{2}, good[1:]...), "proposal version 2 is not known"},
		{"a snapshot", tblRich(t).m.Snapshot(), "proposal version 76 is not known"},
		{"no time", []byte{ProposalVersion}, "malformed proposal: malformed or overlong varint"},
		{"no count", []byte{ProposalVersion, 0}, "malformed proposal: malformed or overlong varint"},
		{"a trailing byte", append(bytes.Clone(good), 0), "trailing bytes"},
		{"an overlong varint", []byte{ProposalVersion, 0x80, 0x00, 0}, "malformed or overlong varint"},
		{"an overlong zero count", []byte{ProposalVersion, 0, 0x80, 0x00}, "malformed or overlong varint"},
		{"a varint past 64 bits", []byte{ProposalVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0}, "malformed or overlong varint"},
		{"more commands than bytes", []byte{ProposalVersion, 0, 2, 1, 0, 0, 0}, "length out of range"},
		{"a huge count", raw(func(e *encoder) { e.byte(ProposalVersion); e.varint(0); e.uvarint(math.MaxUint64) }), "length out of range"},
		{"a string longer than the input", raw(func(e *encoder) {
			e.byte(ProposalVersion)
			e.varint(0)
			e.uvarint(1)
			e.byte(1)
			e.uvarint(50)
			e.b = append(e.b, "short"...)
		}), "length out of range"},
		{"a string over MaxFieldBytes", raw(func(e *encoder) {
			cmdHead(e, fName)
			e.string(strings.Repeat("n", MaxFieldBytes+1))
		}), "length out of range"},
		{"an unknown field", raw(func(e *encoder) { cmdHead(e, fLast<<1) }), "unknown field in presence mask"},
		{"an unknown field above 32 bits", raw(func(e *encoder) {
			cmdHead(e, 0)
			e.b = e.b[:len(e.b)-1]
			e.uvarint(3 << 32)
		}), "unknown field in presence mask"},
		{"a present kind that is zero", raw(func(e *encoder) { cmdHead(e, fKind); e.byte(0) }), "a field marked present is zero"},
		{"a present name that is empty", raw(func(e *encoder) { cmdHead(e, fName); e.string("") }), "a field marked present is zero"},
		{"a present session that is zero", raw(func(e *encoder) { cmdHead(e, fSession); e.uvarint(0) }), "a field marked present is zero"},
		{"a present value that is empty", raw(func(e *encoder) { cmdHead(e, fValue); e.bytes(nil) }), "a field marked present is zero"},
		{"a present wait that is zero", raw(func(e *encoder) { cmdHead(e, fWait); e.varint(0) }), "a field marked present is zero"},
		{"a bad varint in a field", raw(func(e *encoder) { cmdHead(e, fTTL); e.b = append(e.b, 0x81, 0x80, 0x00) }), "malformed or overlong varint"},
		{"a field cut short", raw(func(e *encoder) { cmdHead(e, fTTL|fName); e.string("n") }), "malformed proposal: malformed or overlong varint"},
		{"a byte field cut short", raw(func(e *encoder) { cmdHead(e, fName|fMode); e.string("n") }), "malformed proposal: input ends early"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := DecodeProposal(tc.b)
			if err == nil || CodeOf(err) != CodeInvalidArgument || !strings.Contains(err.Error(), tc.phrase) {
				t.Fatalf("DecodeProposal: %+v, %v; want an error saying %q", p, err, tc.phrase)
			}
			if p.Time != 0 || p.Commands != nil {
				t.Fatalf("a failed decode returned a proposal: %+v", p)
			}
		})
	}
	t.Run("every truncation", func(t *testing.T) {
		for name, p := range tblProposals() {
			b := EncodeProposal(p)
			for n := 0; n < len(b); n++ {
				if _, err := DecodeProposal(b[:n]); err == nil {
					t.Fatalf("%s cut to %d of %d bytes decoded", name, n, len(b))
				}
			}
		}
	})
}
