package core

// The reference model's statement of the stateless rules of a command,
// written from docs/design.md apart from core.CheckCommand.

import (
	"unicode"
	"unicode/utf8"
)

// ---- validation: the stateless rules ----

// refFields names the fields each op takes; every other must be zero.
var refFields = map[Op][]string{
	OpSessionCreate:    {"ttl", "owner", "session"},
	OpSessionKeepAlive: {"session", "ttl"},
	OpSessionClose:     {"session"},
	OpAcquire:          {"kind", "name", "session", "wait", "lockdelay", "maxhold", "limit", "permits", "mode", "owner", "value"},
	OpRelease:          {"kind", "name", "session", "token"},
	OpCancel:           {"session", "waiter"},
	OpBarrierWait:      {"name", "session", "wait", "parties", "participant"},
	OpBarrierSet:       {"name", "session"},
	OpBarrierRemove:    {"name"},
	OpCampaign:         {"name", "session", "wait", "owner", "value"},
	OpProclaim:         {"name", "session", "token", "value"},
	OpResign:           {"name", "session", "token"},
	OpLeaderChange:     {},
}

func refValid(l *Limits, c *Command) bool {
	allowed, known := refFields[c.Op]
	if !known {
		return false
	}
	set := map[string]bool{
		"kind": c.Kind != 0, "name": c.Name != "", "session": c.Session != 0, "token": c.Token != 0,
		"waiter": c.Waiter != 0, "ttl": c.TTLMs != 0, "wait": c.WaitMs != 0, "lockdelay": c.LockDelayMs != 0,
		"maxhold": c.MaxHoldMs != 0, "limit": c.Limit != 0, "permits": c.Permits != 0, "mode": c.Mode != 0,
		"parties": c.Parties != 0, "participant": c.Participant != "", "owner": c.Owner != "", "value": len(c.Value) > 0,
	}
	for _, f := range allowed {
		delete(set, f)
	}
	for _, on := range set {
		if on {
			return false
		}
	}
	if (c.ClientID == "") != (c.Seq == 0) || len(c.ClientID) > MaxClientIDBytes || (c.ClientID != "" && c.Op == OpLeaderChange) {
		return false
	}
	nameOK := func(n string) bool {
		if len(n) < 1 || len(n) > l.MaxNameBytes || !utf8.ValidString(n) {
			return false
		}
		for _, r := range n {
			if !unicode.IsPrint(r) {
				return false
			}
		}
		return true
	}
	ttlOK := func(t int64) bool { return t >= l.MinTTLMs && t <= l.MaxTTLMs }
	waitOK := func(w int64) bool { return w == WaitForever || (w >= 0 && w <= l.MaxWaitMs) }
	ownerOK := func(o string) bool { return len(o) <= l.MaxOwnerBytes && utf8.ValidString(o) }
	valueOK := func(v []byte) bool { return len(v) <= l.MaxValueBytes }
	lockKind := c.Kind == KindMutex || c.Kind == KindSemaphore || c.Kind == KindRWLock

	switch c.Op {
	case OpSessionCreate:
		return ttlOK(c.TTLMs) && ownerOK(c.Owner)
	case OpSessionKeepAlive:
		return c.Session != 0 && (c.TTLMs == 0 || ttlOK(c.TTLMs))
	case OpSessionClose:
		return c.Session != 0
	case OpAcquire:
		if !lockKind || !nameOK(c.Name) || c.Session == 0 || !waitOK(c.WaitMs) || !ownerOK(c.Owner) || !valueOK(c.Value) {
			return false
		}
		if c.MaxHoldMs < 0 || c.MaxHoldMs > l.MaxHoldMs || c.LockDelayMs < 0 || c.LockDelayMs > l.MaxLockDelayMs {
			return false
		}
		switch c.Kind {
		case KindMutex:
			return c.Limit == 0 && c.Permits == 0 && c.Mode == 0
		case KindSemaphore:
			return c.Limit >= 1 && c.Limit <= l.MaxSemaphoreLimit && c.Permits >= 0 && c.Permits <= c.Limit &&
				c.Mode == 0 && c.LockDelayMs == 0
		default:
			return (c.Mode == ModeRead || c.Mode == ModeWrite) && c.Limit == 0 && c.Permits == 0 && c.LockDelayMs == 0
		}
	case OpRelease:
		return lockKind && nameOK(c.Name) && c.Token != 0
	case OpCancel:
		return c.Waiter != 0
	case OpBarrierWait:
		return nameOK(c.Name) && c.Session != 0 && waitOK(c.WaitMs) &&
			(c.Parties == 0 || (c.Parties >= 2 && c.Parties <= int64(l.MaxParties))) && len(c.Participant) <= l.MaxOwnerBytes
	case OpBarrierSet:
		return nameOK(c.Name) && c.Session != 0
	case OpBarrierRemove:
		return nameOK(c.Name)
	case OpCampaign:
		return nameOK(c.Name) && c.Session != 0 && waitOK(c.WaitMs) && ownerOK(c.Owner) && valueOK(c.Value)
	case OpProclaim:
		return nameOK(c.Name) && c.Session != 0 && c.Token != 0 && valueOK(c.Value)
	case OpResign:
		return nameOK(c.Name) && c.Session != 0 && c.Token != 0
	case OpLeaderChange:
		return true
	}
	return false
}
