package rpc

import (
	"github.com/lockstepd/lockstep/core"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/runtime"
)

// The proto enums mirror core value for value (common.proto says so), so
// converting is a cast; these helpers keep the casts in one place.

func outcomePB(o core.Outcome) pb.Outcome { return pb.Outcome(o) }
func reasonPB(r core.Reason) pb.Reason    { return pb.Reason(r) }
func kindPB(k core.Kind) pb.Kind          { return pb.Kind(k) }
func eventTypePB(k core.EffectKind) pb.EventType {
	return pb.EventType(k)
}

func kindCore(k pb.Kind, unspecified core.Kind) core.Kind {
	if k == pb.Kind_KIND_UNSPECIFIED {
		return unspecified
	}
	return core.Kind(k)
}

func modeString(m core.Mode) string {
	switch m {
	case core.ModeRead:
		return "read"
	case core.ModeWrite:
		return "write"
	}
	return ""
}

func modeCore(s string) core.Mode {
	switch s {
	case "read":
		return core.ModeRead
	case "write":
		return core.ModeWrite
	}
	return 0
}

func holderPB(h core.Holder) *pb.Holder {
	return &pb.Holder{
		SessionId:      uint64(h.Session),
		Owner:          h.Owner,
		Value:          h.Value,
		FencingToken:   uint64(h.Token),
		AcquiredAtMs:   int64(h.AcquiredAt),
		ExpiresAtMs:    int64(h.ExpiresAt),
		Permits:        permits(h.Permits),
		Mode:           modeString(h.Mode),
		MaxHoldUntilMs: int64(h.MaxHoldUntil),
		LockDelayMs:    h.LockDelayMs,
	}
}

func holdersPB(hs []core.Holder) []*pb.Holder {
	out := make([]*pb.Holder, 0, len(hs))
	for _, h := range hs {
		out = append(out, holderPB(h))
	}
	return out
}

func waitersPB(ws []core.Waiter) []*pb.Waiter {
	out := make([]*pb.Waiter, 0, len(ws))
	for _, w := range ws {
		out = append(out, &pb.Waiter{
			WaiterId:     uint64(w.ID),
			SessionId:    uint64(w.Session),
			Owner:        w.Owner,
			EnqueuedAtMs: int64(w.EnqueuedAt),
			DeadlineMs:   int64(w.Deadline),
			Permits:      permits(w.Permits),
			Mode:         modeString(w.Mode),
			Participant:  w.Participant,
		})
	}
	return out
}

func eventPB(e runtime.Event) *pb.Event {
	f := e.Effect
	return &pb.Event{
		ShardId:      e.Shard,
		Index:        e.Index,
		AtMs:         int64(e.Time),
		Type:         eventTypePB(f.Kind),
		Reason:       reasonPB(f.Reason),
		Kind:         kindPB(f.Object),
		Name:         f.Name,
		SessionId:    uint64(f.Session),
		WaiterId:     uint64(f.Waiter),
		FencingToken: uint64(f.Token),
		Generation:   f.Generation,
		Value:        f.Value,
	}
}

// permits is what status shows: the kinds without permits hold one.
func permits(n int64) int64 {
	if n == 0 {
		return 1
	}
	return n
}
