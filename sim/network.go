package sim

import (
	mrand "math/rand/v2"
	"time"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/core/replica"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Addresses: replicas are 1..n (their raft IDs), clients follow, and the
// fenced resource comes last.

type msgKind uint8

const (
	msgRaft       msgKind = iota + 1
	msgRequest            // client → replica: a command
	msgReply              // replica → client
	msgRead               // client or resource → replica: a linearizable read
	msgReadReply          // replica → reader
	msgWrite              // client → resource: a fenced write
	msgWriteReply         // resource → client
	msgCancel             // client → replica: I gave up on my request (attempt)
	msgWithdraw           // client → replica: withdraw my queued request (attempt), and tell me how it ended
)

var msgNames = [...]string{"", "raft", "request", "reply", "read", "read_reply", "write", "write_reply", "cancel", "withdraw"}

func (k msgKind) String() string { return msgNames[k] }

// message is one packet. Only the fields of its kind are set.
type message struct {
	kind     msgKind
	from, to int
	fromInc  uint64 // the sender replica's incarnation (for snapshot reports)
	shard    uint64 // the Raft group a replica's message is for or from
	lost     bool   // drawn at send time, applied at delivery
	// conn: a private request's traffic (its request, replies and
	// cancel), which rides its caller's one connection to one node: never
	// lost or duplicated, only delayed (world.send), and its request is
	// read at most once, only while the caller waits for it
	// (client.readPrivate).
	conn bool

	raft *pb.Message

	attempt  uint64 // the sender's id for this try; replies echo it
	*payload        // client traffic; nil for raft messages, which are most of them
}

// payload is what client, replica and resource traffic carries.
type payload struct {
	cmd   core.Command
	reply replica.Reply

	read    readRequest
	readRes readResult

	write   fenceWrite
	writeOK bool
}

// readRequest asks for an object's status or whether a token still holds.
type readRequest struct {
	fence bool
	kind  core.Kind
	name  string
	token core.FencingToken
}

type readResult struct {
	notServed bool // the replica could not serve it (restarting); retry elsewhere
	status    core.Status
	fenceOK   bool
	err       error
	index     uint64 // the applied index the read saw
}

// network is TigerBeetle's packet simulator in miniature: every message
// draws its fate from the network's stream when sent (lost, duplicated, how
// late), and a matrix of cut links decides at delivery, so a partition that
// starts while a message flies stops it.
type network struct {
	rng      *mrand.Rand
	loss     float64
	dup      float64
	minDelay time.Duration
	maxDelay time.Duration
	cut      [][]bool // cut[from][to], addresses
	offline  []bool   // addresses cut off from everyone (a multiplexed client's outage, mux.go)
	quiet    bool     // liveness phase: no loss or duplication
	sent     uint64
	dropped  uint64
}

func newNetwork(rng *mrand.Rand, o Options, addrs int) *network {
	n := &network{rng: rng, loss: o.Loss, dup: o.Dup, minDelay: o.MinDelay, maxDelay: o.MaxDelay}
	n.cut = make([][]bool, addrs+1)
	for i := range n.cut {
		n.cut[i] = make([]bool, addrs+1)
	}
	n.offline = make([]bool, addrs+1)
	return n
}

func (n *network) delay() time.Duration {
	d := n.minDelay
	if span := n.maxDelay - n.minDelay; span > 0 {
		d += time.Duration(n.rng.Int64N(int64(span)))
	}
	// A few messages are much later than the rest: reordering across
	// retries and heartbeats.
	if n.rng.IntN(50) == 0 {
		d += time.Duration(n.rng.Int64N(int64(20*n.maxDelay) + 1))
	}
	return d
}

// send schedules a message's deliveries.
func (w *world) send(m *message) {
	n := w.net
	n.sent++
	copies := 1
	if !n.quiet && n.dup > 0 && n.rng.Float64() < n.dup {
		copies = 2
	}
	if !n.quiet && n.loss > 0 && n.rng.Float64() < n.loss {
		m.lost = true
	}
	if m.conn {
		// Drawn all the same, so that the network's stream stays as it was.
		copies, m.lost = 1, false
	}
	for i := 0; i < copies; i++ {
		c := m
		if i > 0 {
			dup := *m
			if m.raft != nil {
				dup.raft = proto.Clone(m.raft).(*pb.Message)
			}
			c = &dup
		}
		w.schedule(&event{at: w.now + n.delay(), kind: evDeliver, msg: c})
	}
}

func (n *network) blocked(from, to int) bool {
	return n.cut[from][to] || n.offline[from] || n.offline[to]
}

func (n *network) heal() {
	for i := range n.cut {
		for j := range n.cut[i] {
			n.cut[i][j] = false
		}
	}
}
