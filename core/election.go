package core

import "bytes"

// An election is a lock whose holder is the leader: candidates queue FIFO
// behind it, and the holder's value is what observers see. It follows etcd's
// concurrency.Election: Campaign blocks until elected, Proclaim changes the
// value without an election, Resign hands over to the next candidate.
//
// A session campaigns once per name. From rules 4 (rulesCampaignValue) a
// campaign of a session that already leads or waits proclaims its value,
// as etcd's Campaign does for a session that campaigns again: the leader's
// value changes (EffectValueChanged, as Proclaim's) and the campaign is
// answered with the leadership it had; a waiting candidacy leads with the
// new value when granted, and the campaign is answered with its wait. An
// equal value changes nothing and emits nothing. Under rules 3 such a
// campaign is answered the same and keeps the old value.

func (m *Machine) campaign(c *Command) Result {
	s, err := m.liveSession(c.Session)
	if err != nil {
		return Result{Err: err}
	}
	req := request{owner: c.Owner, value: bytes.Clone(c.Value)}
	o := m.object(KindElection, c.Name)
	if o != nil {
		if h := findHold(o, s); h != nil {
			if m.rules >= rulesCampaignValue && !bytes.Equal(h.value, req.value) {
				h.value = req.value
				m.emit(Effect{Kind: EffectValueChanged, Object: KindElection, Name: c.Name, Session: s.id, Token: h.token, Value: h.value})
			}
			h.shared = true
			return Result{Outcome: OutcomeGranted, Token: h.token, Session: s.id}
		}
		if w := findWait(o, s, ""); w != nil {
			if m.rules >= rulesCampaignValue {
				w.value = req.value // it leads with this value when granted
			}
			m.join(w, c)
			return Result{Outcome: OutcomeQueued, Waiter: w.id, Session: s.id, Deadline: w.deadline}
		}
	}
	return m.grantOrQueue(o, KindElection, s, c, req)
}

// leaderHold returns the leader's hold when session and token name it.
func (m *Machine) leaderHold(c *Command) (*hold, *Error) {
	h := m.holds[c.Token]
	if h == nil || h.obj.key != (objectKey{KindElection, c.Name}) || h.session.id != c.Session {
		return nil, m.notHolder(KindElection, c.Name, c.Session, c.Token)
	}
	return h, nil
}

func (m *Machine) proclaim(c *Command) Result {
	h, err := m.leaderHold(c)
	if err != nil {
		return Result{Err: err}
	}
	h.value = bytes.Clone(c.Value)
	m.emit(Effect{Kind: EffectValueChanged, Object: KindElection, Name: c.Name, Session: h.session.id, Token: h.token, Value: h.value})
	return Result{Outcome: OutcomeDone, Token: h.token, Session: h.session.id}
}

func (m *Machine) resign(c *Command) Result {
	h, err := m.leaderHold(c)
	if err != nil {
		return Result{Err: err}
	}
	if err := m.checkUnheard(c, h); err != nil {
		return Result{Err: err}
	}
	m.endHold(h, ReasonReleased)
	return Result{Outcome: OutcomeDone, Token: h.token, Session: h.session.id}
}
