package core

import (
	"encoding/binary"
	"errors"
)

// The wire format of proposals and snapshots: varints and length-prefixed
// bytes, written in one fixed order so equal values give equal bytes. The
// decoder bounds every length by what is left, so no input makes it allocate
// more than its own size or panic.

// ProposalVersion is the first byte of every encoded proposal. A decoder
// refuses versions it does not know instead of guessing.
const ProposalVersion = 1

// MaxFieldBytes bounds one decoded string or byte field; the machine's own
// limits are far smaller and are checked when the command is applied.
const MaxFieldBytes = 1 << 16

type encoder struct{ b []byte }

func (e *encoder) byte(v byte)      { e.b = append(e.b, v) }
func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) bytes(v []byte) {
	e.uvarint(uint64(len(v)))
	e.b = append(e.b, v...)
}
func (e *encoder) string(v string) {
	e.uvarint(uint64(len(v)))
	e.b = append(e.b, v...)
}
func (e *encoder) bool(v bool) {
	if v {
		e.byte(1)
	} else {
		e.byte(0)
	}
}

var errShort = errors.New("input ends early")

type decoder struct {
	b       []byte
	err     error
	scratch [binary.MaxVarintLen64]byte
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail(errShort)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != len(binary.AppendUvarint(d.scratch[:0], v)) {
		d.fail(errors.New("malformed or overlong varint"))
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || n != len(binary.AppendVarint(d.scratch[:0], v)) {
		d.fail(errors.New("malformed or overlong varint"))
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length or element count, refusing one larger than max or
// than the bytes left could hold (each element takes at least minSize bytes).
func (d *decoder) count(max uint64, minSize int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > max || (minSize > 0 && n > uint64(len(d.b)/minSize)) {
		d.fail(errors.New("length out of range"))
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.count(MaxFieldBytes, 1)
	if d.err != nil || n == 0 {
		return nil
	}
	v := make([]byte, n)
	copy(v, d.b[:n])
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.count(MaxFieldBytes, 1)
	if d.err != nil || n == 0 {
		return ""
	}
	v := string(d.b[:n])
	d.b = d.b[n:]
	return v
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail(errors.New("malformed bool"))
	return false
}

// EncodeProposal returns the log entry payload for p. Equal proposals give
// equal bytes.
func EncodeProposal(p Proposal) []byte {
	e := encoder{b: make([]byte, 0, 16+len(p.Commands)*48)}
	return AppendProposal(e.b, p)
}

// AppendProposal appends p's encoding to b.
func AppendProposal(b []byte, p Proposal) []byte {
	e := encoder{b: b}
	e.byte(ProposalVersion)
	e.varint(int64(p.Time))
	e.uvarint(uint64(len(p.Commands)))
	for i := range p.Commands {
		e.command(&p.Commands[i])
	}
	return e.b
}

// command writes a presence mask and then only the fields that are set, so a
// small command stays small and zero fields cost nothing.
func (e *encoder) command(c *Command) {
	e.byte(byte(c.Op))
	e.string(c.ClientID)
	e.uvarint(c.Seq)
	f := c.setFields()
	e.uvarint(uint64(f))
	if f&fKind != 0 {
		e.byte(byte(c.Kind))
	}
	if f&fName != 0 {
		e.string(c.Name)
	}
	if f&fSession != 0 {
		e.uvarint(uint64(c.Session))
	}
	if f&fToken != 0 {
		e.uvarint(uint64(c.Token))
	}
	if f&fWaiter != 0 {
		e.uvarint(uint64(c.Waiter))
	}
	if f&fTTL != 0 {
		e.varint(c.TTLMs)
	}
	if f&fWait != 0 {
		e.varint(c.WaitMs)
	}
	if f&fLockDelay != 0 {
		e.varint(c.LockDelayMs)
	}
	if f&fMaxHold != 0 {
		e.varint(c.MaxHoldMs)
	}
	if f&fLimit != 0 {
		e.varint(c.Limit)
	}
	if f&fPermits != 0 {
		e.varint(c.Permits)
	}
	if f&fMode != 0 {
		e.byte(byte(c.Mode))
	}
	if f&fParties != 0 {
		e.varint(c.Parties)
	}
	if f&fParticipant != 0 {
		e.string(c.Participant)
	}
	if f&fOwner != 0 {
		e.string(c.Owner)
	}
	if f&fValue != 0 {
		e.bytes(c.Value)
	}
	if f&fLowestPending != 0 {
		e.uvarint(c.LowestPending)
	}
	if f&fTargetSeq != 0 {
		e.uvarint(c.TargetSeq)
	}
	if f&fRules != 0 {
		e.uvarint(c.Rules)
	}
	// fApplyLockDelay and fUnheard are flags: a bit in the mask is its value.
}

// maxDecodedCommands bounds a decoded proposal before the machine's own
// MaxCommandsPerEntry is applied; each command takes at least 4 bytes.
const maxDecodedCommands = 1 << 18

// DecodeProposal reads an encoded proposal. Any input gives a proposal or an
// error, never a panic. It accepts only the canonical encoding, so
// EncodeProposal(DecodeProposal(b)) == b whenever decoding succeeds.
func DecodeProposal(b []byte) (Proposal, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != ProposalVersion {
		return Proposal{}, errorf(CodeInvalidArgument, "proposal version %d is not known (this build reads version %d)", v, ProposalVersion)
	}
	p := Proposal{Time: LogTime(d.varint())}
	n := d.count(maxDecodedCommands, 4)
	if n > 0 {
		p.Commands = make([]Command, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		d.command(&p.Commands[i])
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail(errors.New("trailing bytes"))
	}
	if d.err != nil {
		return Proposal{}, errorf(CodeInvalidArgument, "malformed proposal: %v", d.err)
	}
	return p, nil
}

func (d *decoder) command(c *Command) {
	c.Op = Op(d.byte())
	c.ClientID = d.string()
	c.Seq = d.uvarint()
	mask := d.uvarint()
	if d.err != nil {
		return
	}
	if mask > uint64(fLast<<1-1) { // before narrowing: high bits must not vanish
		d.fail(errors.New("unknown field in presence mask"))
		return
	}
	f := field(mask)
	if f&fKind != 0 {
		c.Kind = Kind(d.byte())
	}
	if f&fName != 0 {
		c.Name = d.string()
	}
	if f&fSession != 0 {
		c.Session = SessionID(d.uvarint())
	}
	if f&fToken != 0 {
		c.Token = FencingToken(d.uvarint())
	}
	if f&fWaiter != 0 {
		c.Waiter = WaiterID(d.uvarint())
	}
	if f&fTTL != 0 {
		c.TTLMs = d.varint()
	}
	if f&fWait != 0 {
		c.WaitMs = d.varint()
	}
	if f&fLockDelay != 0 {
		c.LockDelayMs = d.varint()
	}
	if f&fMaxHold != 0 {
		c.MaxHoldMs = d.varint()
	}
	if f&fLimit != 0 {
		c.Limit = d.varint()
	}
	if f&fPermits != 0 {
		c.Permits = d.varint()
	}
	if f&fMode != 0 {
		c.Mode = Mode(d.byte())
	}
	if f&fParties != 0 {
		c.Parties = d.varint()
	}
	if f&fParticipant != 0 {
		c.Participant = d.string()
	}
	if f&fOwner != 0 {
		c.Owner = d.string()
	}
	if f&fValue != 0 {
		c.Value = d.bytes()
	}
	if f&fLowestPending != 0 {
		c.LowestPending = d.uvarint()
	}
	if f&fTargetSeq != 0 {
		c.TargetSeq = d.uvarint()
	}
	if f&fRules != 0 {
		c.Rules = d.uvarint()
	}
	c.ApplyLockDelay = f&fApplyLockDelay != 0 // a flag: its bit says it all
	c.Unheard = f&fUnheard != 0
	if d.err == nil && c.setFields() != f {
		d.fail(errors.New("a field marked present is zero"))
	}
}
