package sim

import (
	"testing"

	"github.com/anishathalye/porcupine"
	"github.com/lockstepd/lockstep/core"
)

// The porcupine model, on histories small enough to read.

var m0 = objKey{core.KindMutex, "m"}

func acq(client int, s core.SessionID, call, ret int64, out opOutput) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: opInput{op: opAcquire, key: m0, session: s, try: out.kind == outRefused},
		Output: out, Call: call, Return: ret}
}

func rel(client int, s core.SessionID, t core.FencingToken, call, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: opInput{op: opRelease, key: m0, session: s, token: t},
		Output: opOutput{kind: outOK}, Call: call, Return: ret}
}

func TestModelMutex(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
		ops  []porcupine.Operation
	}{
		{"one after the other", true, []porcupine.Operation{
			acq(0, 1, 0, 10, opOutput{kind: outGranted, token: 5}), rel(0, 1, 5, 20, 30),
			acq(1, 2, 40, 50, opOutput{kind: outGranted, token: 7})}},
		{"two holders at once", false, []porcupine.Operation{
			acq(0, 1, 0, 10, opOutput{kind: outGranted, token: 5}),
			acq(1, 2, 20, 30, opOutput{kind: outGranted, token: 7})}},
		{"a token that does not increase", false, []porcupine.Operation{
			acq(0, 1, 0, 10, opOutput{kind: outGranted, token: 5}), rel(0, 1, 5, 20, 30),
			acq(1, 2, 40, 50, opOutput{kind: outGranted, token: 4})}},
		{"refused while free", false, []porcupine.Operation{
			acq(0, 1, 0, 10, opOutput{kind: outRefused})}},
		{"refused while held", true, []porcupine.Operation{
			acq(0, 1, 0, 10, opOutput{kind: outGranted, token: 5}),
			acq(1, 2, 20, 30, opOutput{kind: outRefused})}},
		{"the machine ends a grant (session expiry), then another client takes it", true, []porcupine.Operation{
			acq(0, 1, 0, 10, opOutput{kind: outGranted, token: 5}),
			{ClientId: 2, Input: opInput{op: opEnd, key: m0, session: 1, token: 5}, Output: opOutput{kind: outOK}, Call: 20, Return: 25},
			acq(1, 2, 30, 40, opOutput{kind: outGranted, token: 9})}},
		{"a status read that misses the holder", false, []porcupine.Operation{
			acq(0, 1, 0, 10, opOutput{kind: outGranted, token: 5}),
			{ClientId: 1, Input: opInput{op: opStatus, key: m0}, Output: opOutput{kind: outHolders}, Call: 20, Return: 30}}},
	}
	for _, c := range cases {
		if got := porcupine.CheckOperations(lockModel, c.ops); got != c.ok {
			t.Errorf("%s: linearizable=%v, want %v", c.name, got, c.ok)
		}
	}
}
