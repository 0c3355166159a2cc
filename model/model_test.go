package model

import (
	"testing"

	"github.com/anishathalye/porcupine"
	"github.com/lockstepd/lockstep/core"
)

// The porcupine model, on histories small enough to read.

var m0 = Key{core.KindMutex, "m"}

func acq(client int, s core.SessionID, call, ret int64, out Output) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: Input{Op: Acquire, Key: m0, Session: s, Try: out.Kind == Refused},
		Output: out, Call: call, Return: ret}
}

func rel(client int, s core.SessionID, t core.FencingToken, call, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: Input{Op: Release, Key: m0, Session: s, Token: t},
		Output: Output{Kind: OK}, Call: call, Return: ret}
}

func TestModelMutex(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
		ops  []porcupine.Operation
	}{
		{"one after the other", true, []porcupine.Operation{
			acq(0, 1, 0, 10, Output{Kind: Granted, Token: 5}), rel(0, 1, 5, 20, 30),
			acq(1, 2, 40, 50, Output{Kind: Granted, Token: 7})}},
		{"two holders at once", false, []porcupine.Operation{
			acq(0, 1, 0, 10, Output{Kind: Granted, Token: 5}),
			acq(1, 2, 20, 30, Output{Kind: Granted, Token: 7})}},
		{"a token that does not increase", false, []porcupine.Operation{
			acq(0, 1, 0, 10, Output{Kind: Granted, Token: 5}), rel(0, 1, 5, 20, 30),
			acq(1, 2, 40, 50, Output{Kind: Granted, Token: 4})}},
		{"refused while free", false, []porcupine.Operation{
			acq(0, 1, 0, 10, Output{Kind: Refused})}},
		{"refused while held", true, []porcupine.Operation{
			acq(0, 1, 0, 10, Output{Kind: Granted, Token: 5}),
			acq(1, 2, 20, 30, Output{Kind: Refused})}},
		{"the machine ends a grant (session expiry), then another client takes it", true, []porcupine.Operation{
			acq(0, 1, 0, 10, Output{Kind: Granted, Token: 5}),
			{ClientId: 2, Input: Input{Op: End, Key: m0, Session: 1, Token: 5}, Output: Output{Kind: OK}, Call: 20, Return: 25},
			acq(1, 2, 30, 40, Output{Kind: Granted, Token: 9})}},
		{"refused while free after an end that started a lock-delay", true, []porcupine.Operation{
			acq(0, 1, 0, 10, Output{Kind: Granted, Token: 5}),
			{ClientId: 2, Input: Input{Op: End, Key: m0, Session: 1, Token: 5, Reason: core.ReasonSessionClosed, Delayed: true}, Output: Output{Kind: OK}, Call: 20, Return: 25},
			acq(1, 2, 30, 40, Output{Kind: Refused})}},
		{"refused while free after an end without a lock-delay", false, []porcupine.Operation{
			acq(0, 1, 0, 10, Output{Kind: Granted, Token: 5}),
			{ClientId: 2, Input: Input{Op: End, Key: m0, Session: 1, Token: 5, Reason: core.ReasonSessionClosed}, Output: Output{Kind: OK}, Call: 20, Return: 25},
			acq(1, 2, 30, 40, Output{Kind: Refused})}},
		{"refused while free after the grant that followed a lock-delay ended", false, []porcupine.Operation{
			acq(0, 1, 0, 10, Output{Kind: Granted, Token: 5}),
			{ClientId: 2, Input: Input{Op: End, Key: m0, Session: 1, Token: 5, Reason: core.ReasonSessionExpired, Delayed: true}, Output: Output{Kind: OK}, Call: 20, Return: 25},
			acq(1, 2, 30, 40, Output{Kind: Granted, Token: 9}), rel(1, 2, 9, 50, 60),
			acq(0, 3, 70, 80, Output{Kind: Refused})}},
		{"a status read that misses the holder", false, []porcupine.Operation{
			acq(0, 1, 0, 10, Output{Kind: Granted, Token: 5}),
			{ClientId: 1, Input: Input{Op: Status, Key: m0}, Output: Output{Kind: Holders}, Call: 20, Return: 30}}},
	}
	for _, c := range cases {
		if got := porcupine.CheckOperations(Lock, c.ops); got != c.ok {
			t.Errorf("%s: linearizable=%v, want %v", c.name, got, c.ok)
		}
	}
}

// TestModelCampaignAgain: a leader's campaign again is answered with its
// leadership and proclaims its value (rules 4), so a read after it sees
// the new value, never the old.
func TestModelCampaignAgain(t *testing.T) {
	e := Key{core.KindElection, "e"}
	camp := func(client int, value string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: Input{Op: Acquire, Key: e, Session: 1, Value: value},
			Output: Output{Kind: Granted, Token: 5}, Call: call, Return: ret}
	}
	read := func(value string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: 9, Input: Input{Op: Status, Key: e},
			Output: Output{Kind: Holders, Holders: []Holder{{Session: 1, Token: 5}}, Value: value}, Call: call, Return: ret}
	}
	for _, c := range []struct {
		name string
		ok   bool
		ops  []porcupine.Operation
	}{
		{"a read after a campaign again sees its value", true, []porcupine.Operation{
			camp(0, "old", 0, 10), camp(1, "new", 20, 30), read("new", 40, 50)}},
		{"a read after a campaign again sees the old value", false, []porcupine.Operation{
			camp(0, "old", 0, 10), camp(1, "new", 20, 30), read("old", 40, 50)}},
		{"a campaign again with an equal value keeps it", true, []porcupine.Operation{
			camp(0, "v", 0, 10), camp(1, "v", 20, 30), read("v", 40, 50)}},
		{"a campaign again answered with another token", false, []porcupine.Operation{
			camp(0, "v", 0, 10), {ClientId: 1, Input: Input{Op: Acquire, Key: e, Session: 1, Value: "w"},
				Output: Output{Kind: Granted, Token: 6}, Call: 20, Return: 30}}},
	} {
		if got := porcupine.CheckOperations(Lock, c.ops); got != c.ok {
			t.Errorf("%s: linearizable %v, want %v", c.name, got, c.ok)
		}
	}
}
