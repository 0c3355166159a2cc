package shards

import "github.com/lockstepd/lockstep/core"

// Expired is what the member that applied out in shard (among count
// shards) must do about the sessions that expired there: close each in
// every other shard, best effort and in the background, with the cleanup's
// command (Cleanup.Close: as a failure, lock-delay included). It answers
// nothing unless leads (the member's driver leads the shard as it applies
// the entry, replica.Driver.IsLeader), so that one member sends the closes,
// not every member that applies the expiry.
//
// Why: each shard runs its own clock and expiries, and a leader change
// extends every live session of its shard to now+TTL. A session its
// client abandoned sends no keepalive, so no keepalive's fan-out learns
// that it is lost (mergeKeepAlive's Cleanup); without this its copy in a
// shard whose leader changed would hold its locks for up to another TTL
// per leader change there, while every read of the session answers it
// gone (docs/design.md, Several shards: a session lost in one shard is
// lost everywhere, and its copies end as its expiry would).
//
// Duplicates are harmless: every shard's leader that applies the expiry
// sends, and a close of a copy already gone answers not_found and changes
// nothing. The member skips a shard whose copy its own replica no longer
// has (gone in the applied prefix is gone for good: sessions never come
// back), so copies that expire together cost few of them. A leader change between the expiry and the close, or a close
// that fails, leaves that copy to its TTL, as before.
func Expired(shard uint64, count int, leads bool, out *core.Output) []Cleanup {
	if !leads || count <= 1 || out == nil {
		return nil
	}
	var cs []Cleanup
	var others []uint64 // every shard but this one, made once, shared by the entry's cleanups
	for i := range out.Effects {
		ef := &out.Effects[i]
		if ef.Kind != core.EffectSessionExpired {
			continue
		}
		if others == nil {
			others = make([]uint64, 0, count-1)
			for s := range uint64(count) {
				if s != shard {
					others = append(others, s)
				}
			}
		}
		cs = append(cs, Cleanup{Session: ef.Session, Shards: others})
	}
	return cs
}
