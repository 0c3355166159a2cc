package sim

import (
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/shards"
)

// fenceWrite is a write a lock holder sends to the fenced resource.
type fenceWrite struct {
	key    objKey
	token  core.FencingToken
	client int
}

// resource is the storage service the locks protect, done right: it
// refuses a token older than the newest it has seen for the name, and
// before accepting one it asks the cluster, with a linearizable CheckFence
// read, whether the token still holds. The checker then verifies it never
// accepted a token whose grant had ended (in the log) before that read
// began: a paused client waking up after its lease must be turned away.
type resource struct {
	w        *world
	addr     int
	maxSeen  map[objKey]core.FencingToken
	jobs     map[uint64]*fenceJob // by read attempt
	open     int
	guesses  []int // by shard
	attempts uint64
	accepted int
	rejected int
}

type fenceJob struct {
	from    int
	attempt uint64 // the client's
	write   fenceWrite
	sentAt  map[uint64]time.Duration // read attempt → when it was sent
	last    uint64
	started time.Duration
	done    bool
}

func newResource(w *world) *resource {
	r := &resource{w: w, addr: w.addrResource(), maxSeen: map[objKey]core.FencingToken{}, jobs: map[uint64]*fenceJob{}}
	for range w.opts.Shards {
		r.guesses = append(r.guesses, 1)
	}
	return r
}

func (r *resource) busy() string {
	if r.open > 0 {
		return "fence reads in flight"
	}
	return ""
}

func (r *resource) receive(m *message) {
	switch m.kind {
	case msgWrite:
		if m.write.token < r.maxSeen[m.write.key] {
			r.rejected++
			r.reply(m.from, m.attempt, false)
			return
		}
		j := &fenceJob{from: m.from, attempt: m.attempt, write: m.write, sentAt: map[uint64]time.Duration{}, started: r.w.now}
		r.open++
		r.ask(j)
	case msgReadReply:
		j := r.jobs[m.attempt]
		if j == nil || j.done {
			return
		}
		if m.readRes.notServed {
			r.retry(j)
			return
		}
		r.decide(j, m.attempt, m.readRes)
	}
}

func (r *resource) ask(j *fenceJob) {
	r.attempts++
	a := r.attempts
	j.sentAt[a] = r.w.now
	j.last = a
	r.jobs[a] = j
	q := readRequest{fence: true, kind: j.write.key.kind, name: j.write.key.name, token: j.write.token}
	shard := shards.Of(q.name, r.w.opts.Shards) // a token is checked in its name's shard
	r.w.send(&message{kind: msgRead, from: r.addr, to: r.guesses[shard], attempt: a, shard: shard, payload: &payload{read: q}})
	r.w.schedule(&event{at: r.w.now + 400*time.Millisecond + 4*r.w.opts.MaxDelay, kind: evResource, gen: a})
}

func (r *resource) timer(a uint64) {
	if j := r.jobs[a]; j != nil && !j.done && j.last == a {
		r.retry(j)
	}
}

func (r *resource) retry(j *fenceJob) {
	shard := shards.Of(j.write.key.name, r.w.opts.Shards)
	r.guesses[shard] = r.guesses[shard]%r.w.opts.Replicas + 1
	r.ask(j)
}

func (r *resource) decide(j *fenceJob, a uint64, res readResult) {
	j.done = true
	r.open--
	for x := range j.sentAt {
		delete(r.jobs, x)
	}
	k := j.write.key
	ok := res.err == nil && res.fenceOK && j.write.token >= r.maxSeen[k]
	if ok {
		r.maxSeen[k] = j.write.token
		r.accepted++
		r.w.chk.fenceAccepted(k, j.write.token, j.sentAt[a], j.write.client)
	} else {
		r.rejected++
	}
	r.reply(j.from, j.attempt, ok)
}

func (r *resource) reply(to int, attempt uint64, ok bool) {
	r.w.send(&message{kind: msgWriteReply, from: r.addr, to: to, attempt: attempt, payload: &payload{writeOK: ok}})
}
