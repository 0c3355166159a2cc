// Package transport carries Raft traffic between Lockstep nodes for
// Dragonboat (NodeHostConfig.Expert.TransportFactory), in the frames of
// Dragonboat's own TCP transport behind a hello of its own (below).
//
// Why not Dragonboat's own: it writes each frame in three writes (magic
// number, header, payload) and reads it in three reads, and its connections
// set TCP_NODELAY, so a frame leaves as three segments and the receiver
// wakes for each. On a virtual machine, where every system call and wake-up
// is dear, that was a tenth of a follower's CPU and part of every commit's
// latency (docs/performance.md, "The commit path"). Here a frame is one
// write, and a connection reads through a buffer, so a frame that arrived
// whole costs one read.
//
// A frame is:
//
//	magic    2 bytes  0xAE 0x7D (0x00 0x00 is the poison that ends a snapshot stream)
//	method   2 bytes  100: a raftpb.MessageBatch, 200: a raftpb.Chunk of a snapshot
//	size     8 bytes  the payload's length, 1..MaxPayload
//	hdr crc  4 bytes  CRC-32 (IEEE) of these 18 header bytes with this field zero
//	body crc 4 bytes  CRC-32 of the payload; 0 and not checked under mutual TLS
//	payload  size bytes
//
// all big-endian. The upper layer (Dragonboat's internal transport) batches
// messages per peer, keeps the queues, and checks deployment ids; this
// package moves frames, and checks that the peer applies the log as this
// member does.
//
// Every connection begins with a hello, a frame of method 300 whose payload
// is
//
//	format   1 byte   1
//	compat   uvarint length, then the bytes: Factory.Compatibility
//	address  uvarint length, then the bytes: the sender's Raft address
//	identity uvarint length, then 16 bytes (or none): the sender's
//	         replica id and the id of its log, big-endian (Identity)
//	refusal  uvarint length, then the bytes: only in a refused peer's
//	         answer, why ("lost log": the dialler lost its log; "known
//	         under another log": the receiver did; "removed": the dialler
//	         was removed from the cluster; "other replica": the receiver
//	         is not the replica the dialler expected; empty: its versions
//	         differ)
//	expect   uvarint length, then 16 bytes (or none): the identity the
//	         dialler knows the member at the address it dialled by (its
//	         log 0 when it has not booked one)
//	peers    uvarint length, then the bytes (or none): Factory.Peers, the
//	         members the sender bootstrapped its cluster with, or "#" and
//	         a digest of them when they would not fit in maxHello
//	settings uvarint length, then the bytes (or none): Factory.Settings,
//	         the sender's settings that should, but need not, be the same
//	         on every member (its consensus timing): told to the
//	         Observer, never refused
//	...      more fields of the same shape, which a receiver that does
//	         not know them skips (a later build's)
//
// A receiver whose Compatibility differs, or whose peer's first frame is
// not a hello (a build before the hello, or Dragonboat's own transport),
// closes the connection before it hands anything to Dragonboat. So members
// that would apply one log differently (core.RulesVersion) never exchange
// a message: in a cluster of mixed builds the members of the majority's
// build go on, and the others are cut off until they run it too, instead of
// diverging silently. A receiver that refuses a hello answers with its own
// before it closes, so the dialler learns why, tells its Observer, and
// dials that peer no more for refusedHoldOff: a member cut off this way
// would otherwise be dialled at every message (25 times a second, each a
// TLS handshake under mutual TLS). The hello is what breaks the wire
// compatibility with Dragonboat's own transport that this package kept
// before it.
//
// The identity keeps out a member that lost its log (Factory.Book): its
// data directory wiped, or another's, and started again under the same
// replica id without being removed and added back. Raft's safety rests on
// a member never forgetting what it voted for and what it acknowledged:
// such a member would vote again in a term it voted in and count towards
// a majority for entries it no longer holds, and an acknowledged grant
// could be lost. Its data directory gives it a new log id, which its
// peers, having seen it take part under another, refuse: answered with a
// "lost log" refusal, it is dialled no more and dials them no more for
// refusedHoldOff at a time, so it neither votes nor is sent the log. A
// peer that dials it first says in its hello whom it expects there, and
// the member refuses that connection itself: a leader's heartbeat would
// otherwise carry a commit index beyond its empty log, on which Raft
// panics.
//
// The settings are what a member should share with its peers but may run
// apart from them for a while (Factory.Settings: the consensus timing,
// which a rolling change alters one member at a time): a receiver that
// takes a dialler's connection tells its Observer what the dialler's
// hello said (PeerSettings), and refuses nothing for them. A hello
// without them, from a build before them, is taken as before.
//
// The peers keep apart members that bootstrapped the cluster with other
// initial members (Factory.Peers): a typo in one member's cluster.peers
// gives it another Raft address for a peer than the others have, in the
// bootstrap entries of its own log, which no later start corrects. Raft
// sees the same entries at the same index and term on every member, and
// the cluster forms; but once the peer it has wrong sends it a message
// (a campaign, when the leader stops), Dragonboat's registry finds the
// peer's own address at odds with the membership and panics. Both sides
// of a hello whose peers differ refuse it, answering with their own, so
// that each says which entries differ: such a member takes no part from
// its first connection on, and is replaced.
package transport

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	dbconfig "github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
)

// Name is what Dragonboat logs as the transport's name.
const Name = "lockstep-tcp"

// Limits. Each is enforced where it is named.
const (
	// MaxPayload bounds one frame's payload: twice Dragonboat's bound on a
	// message batch (64 MiB); a snapshot chunk is 2 MiB. A larger size is
	// a corrupt or hostile frame, and its connection is closed.
	MaxPayload = 128 << 20
	// maxInbound bounds the connections accepted at once. Peers open one
	// per shard stream and snapshot in flight, far fewer than this.
	maxInbound = 4096
	// keepBuffer bounds the buffers a connection keeps between frames; a
	// larger frame gets a buffer of its own.
	keepBuffer = 4 << 20
	// readBuffer is each inbound connection's read buffer: a frame that
	// arrived whole is read in one system call.
	readBuffer = 64 << 10

	dialTimeout      = 5 * time.Second       // connecting to a peer
	handshakeTimeout = 10 * time.Second      // a TLS handshake, either side
	frameTimeout     = 5 * time.Second       // writing one frame, or reading the rest of one begun
	poisonAckTimeout = 10 * time.Second      // a snapshot stream's end acknowledged
	keepAlive        = 10 * time.Second      // TCP keep-alive: finds a peer gone silently
	refusedHoldOff   = 3 * time.Second       // no dial to a peer that refused our versions
	acceptRetry      = 50 * time.Millisecond // after a failed Accept on an open listener
)

const (
	headerSize = 18
	frameStart = 2 + headerSize // magic and header, before the payload

	methodBatch uint16 = 100
	methodChunk uint16 = 200
	methodHello uint16 = 300

	helloFormat = 1
	// maxHello bounds a hello's payload: a compatibility, an address, an
	// identity and a refusal.
	maxHello = 1024
	// identitySize is an identity field's length when it is present.
	identitySize = 16
	// refusedLostLog is the refusal a receiver answers a member that lost
	// its log with; refusedKnownOtherwise, what a member that lost its log
	// answers a peer that expected it under its old one.
	refusedLostLog        = "lost log"
	refusedKnownOtherwise = "known under another log"
	// refusedRemoved answers a member removed from the cluster;
	// refusedOtherReplica, a peer that expected another replica at this
	// member's address.
	refusedRemoved      = "removed"
	refusedOtherReplica = "other replica"
	// refusedPeers answers a peer that bootstrapped the cluster with
	// other initial members than this member.
	refusedPeers = "peers"
	// peersDigest begins a hello's peers field that carries a digest of
	// the peers rather than the peers themselves.
	peersDigest = "#"
)

// Why a member is cut off (Observer.CutOff); Observer.Refused counts each
// of its refusals under the same name.
const (
	CutLostLog      = "lost log"
	CutRemoved      = "removed"
	CutOtherReplica = "other replica"
)

// RefusalReasons are every reason Observer.Refused is given, so that a
// counter of them can start each at 0: an alert on its increase misses
// the first refusal of a series that does not exist yet.
var RefusalReasons = []string{"tls", "no hello", "versions", refusedPeers, CutLostLog, CutRemoved, CutOtherReplica,
	"malformed", "checksum", "chunk refused", "unbooked"}

var (
	magic  = [2]byte{0xAE, 0x7D}
	poison = [2]byte{0x00, 0x00}

	errFrame = errors.New("transport: malformed frame")
)

// Factory makes Dragonboat use this transport.
type Factory struct {
	// Observer is told what the transport does (nil: nothing is).
	Observer Observer
	// Compatibility is what a peer's must equal for its traffic to be
	// taken: core.Compatibility(), the versions of the log's rules and
	// encodings. It travels in each connection's hello.
	Compatibility string
	// Credentials, when set, is where mutual TLS takes the member's
	// certificate (its key included) and the cluster's CA from: the
	// listener asks it at every handshake, and each dial at every dial, so
	// material a reload put in force (SIGHUP: security.State.Credentials,
	// which replaces it only after checking it) reaches new connections
	// without a restart; connections open keep what they began with. It
	// must return both, and must return at once. Nil: the files the
	// NodeHostConfig names, which the listener reads once, at Start, and
	// each dial reads again. Either way only nhc.MutualTLS turns TLS on.
	Credentials func() (cert *tls.Certificate, ca *x509.CertPool)
	// Self is this member's identity, which its hello carries (zero: none,
	// and a peer's Book cannot tell that it lost its log).
	Self Identity
	// Book, when set, is where this member keeps the logs its peers took
	// part under, and refuses a peer that comes back under another log
	// (nil: it refuses none).
	Book Book
	// Peers is the initial members this member bootstrapped its cluster
	// with, as "id=address" sorted by id and joined by commas (Canonical
	// Peers); its hello carries them, and a peer that bootstrapped with
	// others is refused. Empty: none to compare (a member that joined a
	// running cluster, or one whose data directory predates the record),
	// and no peer is refused for its peers.
	Peers string
	// Settings is what this member's hello says of the settings that
	// should be the same on every member but may differ without harm
	// to the log (the consensus timing): the receiver of a connection
	// tells its Observer the dialler's (PeerSettings), and refuses
	// nothing for them. Opaque to the transport; empty: none said.
	Settings string
}

// CanonicalPeers is the form of Factory.Peers: the members, "id=address",
// sorted by id and joined by commas.
func CanonicalPeers(peers map[string]string) string {
	ids := make([]string, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(id + "=" + peers[id])
	}
	return b.String()
}

// ParsePeers reads CanonicalPeers' form back (nil for a digest).
func ParsePeers(s string) map[string]string {
	if s == "" || strings.HasPrefix(s, peersDigest) {
		return nil
	}
	m := map[string]string{}
	for _, p := range strings.Split(s, ",") {
		id, addr, _ := strings.Cut(p, "=")
		m[id] = addr
	}
	return m
}

// digestPeers is a hello's peers field for peers too long to carry whole.
func digestPeers(peers string) string {
	if peers == "" || strings.HasPrefix(peers, peersDigest) {
		return peers
	}
	sum := sha256.Sum256([]byte(peers))
	return peersDigest + hex.EncodeToString(sum[:16])
}

// samePeers says whether two hellos' peers fields name the same members,
// each whole or a digest; either empty is no evidence, and agrees.
func samePeers(a, b string) bool {
	return a == "" || b == "" || a == b || digestPeers(a) == digestPeers(b)
}

// Identity is what a member's hello says it is.
type Identity struct {
	// Replica is its replica id (config.ReplicaID: node id and incarnation).
	Replica uint64
	// Log is drawn at random when its data directory is made, never zero:
	// a member whose directory was wiped comes back under another.
	Log uint64
}

// Book keeps, per replica id, the log a peer took part under: sent a
// message other than a pre-vote (a vote, an entry, an acknowledgement, a
// heartbeat), which its peers may have counted. Its methods must be safe
// for concurrent use.
type Book interface {
	// Known returns the log replica took part under, when the book holds
	// one; 0 for a replica removed from the cluster, which never takes
	// part again.
	Known(replica uint64) (log uint64, ok bool)
	// Record keeps that id.Replica took part under id.Log, durably before
	// it returns: the transport hands the message that shows it to
	// Dragonboat only after. It fails when the book holds another log for
	// the replica.
	Record(id Identity) error
	// At returns the identity of the member at a Raft address: its replica
	// id as this member knows the membership, and the log the book holds
	// for it (0: none yet). ok is false when no member is there.
	At(addr string) (Identity, bool)
	// Member says whether the membership, as this member knows it, has
	// replica.
	Member(replica uint64) bool
	// Generation changes whenever the book does, so that a connection
	// open since before (a member removed since) is judged again; it must
	// be cheap, since it is read at every frame.
	Generation() uint64
}

var _ dbconfig.TransportFactory = Factory{}

// Create implements dbconfig.TransportFactory.
func (f Factory) Create(nhc dbconfig.NodeHostConfig, onBatch raftio.MessageHandler, onChunk raftio.ChunkHandler) raftio.ITransport {
	obs := f.Observer
	if obs == nil {
		obs = unobserved{}
	}
	// The peers whole when this member's largest hello (an answer, or a
	// dial that names whom it expects) stays within maxHello, which a
	// build before the peers bounds every hello by; else their digest.
	peers := f.Peers
	largest := hello{compat: f.Compatibility, addr: nhc.RaftAddress, self: f.Self, refusal: refusedKnownOtherwise,
		expect: Identity{Replica: 1, Log: 1}, peers: peers, settings: f.Settings}
	if len(helloPayload(largest)) > maxHello {
		peers = digestPeers(peers)
	}
	return &TCP{nhc: nhc, onBatch: onBatch, onChunk: onChunk, encrypted: nhc.MutualTLS, credentials: f.Credentials, obs: obs,
		conns: map[net.Conn]struct{}{}, refused: map[string]refusal{}, compat: f.Compatibility, book: f.Book, id: f.Self,
		peers: peers, settings: f.Settings,
		hello: helloPayload(hello{compat: f.Compatibility, addr: nhc.RaftAddress, self: f.Self, peers: peers, settings: f.Settings})}
}

// Observer is told what the transport does, so that the node can count it
// (runtime's lockstep_raft_peer_* series; docs/operations.md). A peer is
// named by the Raft address it was dialled at. The methods run on the send
// and receive paths, so they must return at once.
type Observer interface {
	// Dialed: a connection to peer was dialled; err says why it failed.
	Dialed(peer string, err error)
	// Sent: a frame of n bytes was written to peer, or failed with err.
	Sent(peer string, n int, err error)
	// Ended: peer ended a message connection (it restarted, or a link
	// was dropped); the next send to it dials again.
	Ended(peer string)
	// Received: a frame of n bytes was read from a peer.
	Received(n int)
	// Refused: an inbound connection was closed because of what it sent
	// (reason: "malformed", "checksum", "chunk refused", "no hello" or
	// "versions").
	Refused(reason string)
	// Incompatible: a peer does not apply the log as this member does:
	// this member refused its connection, or it refused this member's.
	// peer is its Raft address (from its hello, or dialled; the host it
	// connected from when it sent no hello); theirs is its Compatibility
	// ("" when it sent no hello).
	Incompatible(peer, theirs string)
	// CutOff: a member is cut off, for reason (CutLostLog, CutRemoved or
	// CutOtherReplica). ours false: the member at peer (its Raft address),
	// replica its replica id (for CutOtherReplica, the replica expected
	// there), refused by this member or refusing it. ours true: this
	// member, refused by peer or refusing it (for CutOtherReplica,
	// replica is the one peer expected).
	CutOff(peer string, replica uint64, reason string, ours bool)
	// OtherPeers: the member at peer (its Raft address) bootstrapped the
	// cluster with other initial members than this one: this member
	// refused its connection (counted as Refused("peers") too), or it
	// refused this member's. theirs and ours are the hellos' peers
	// fields (Factory.Peers, or "#" and a digest of them).
	OtherPeers(peer, theirs, ours string)
	// PeerSettings: this member took a connection from the member at
	// peer (its Raft address), whose hello gave its Factory.Settings as
	// theirs (never empty: a hello without them says nothing). Told at
	// every connection taken, so the observer says each difference once.
	PeerSettings(peer, theirs string)
}

type unobserved struct{}

func (unobserved) Dialed(string, error)                {}
func (unobserved) Sent(string, int, error)             {}
func (unobserved) Ended(string)                        {}
func (unobserved) Received(int)                        {}
func (unobserved) Refused(string)                      {}
func (unobserved) Incompatible(_, _ string)            {}
func (unobserved) CutOff(string, uint64, string, bool) {}
func (unobserved) OtherPeers(_, _, _ string)           {}
func (unobserved) PeerSettings(_, _ string)            {}

// Validate implements dbconfig.TransportFactory: a Raft address is
// host:port with a port in 1..65535.
func (Factory) Validate(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	p, err := strconv.Atoi(port)
	return err == nil && p >= 1 && p <= 65535
}

// TCP is the transport of one NodeHost: a listener for its peers' frames,
// and connections it dials to send its own.
type TCP struct {
	nhc       dbconfig.NodeHostConfig
	onBatch   raftio.MessageHandler
	onChunk   raftio.ChunkHandler
	encrypted bool // mutual TLS: TLS checks integrity, the body CRC is skipped
	// credentials is Factory.Credentials: nil, the files nhc names.
	credentials func() (*tls.Certificate, *x509.CertPool)
	obs         Observer
	compat      string   // Factory.Compatibility
	book        Book     // Factory.Book
	id          Identity // Factory.Self
	peers       string   // Factory.Peers, or their digest (Create)
	settings    string   // Factory.Settings
	hello       []byte   // the payload of this member's hello

	mu      sync.Mutex
	ln      net.Listener
	conns   map[net.Conn]struct{} // accepted and being served
	refused map[string]refusal    // by Raft address: peers held off (they refused us, or lost their log)
	closed  bool
	wg      sync.WaitGroup
}

// refusal is why a peer is not dialled again until a time: the refusal
// of a hello, either way ("": it refused our versions, theirs are its
// own).
type refusal struct {
	theirs, why string
	until       time.Time
}

// err is what a dial within the hold-off fails with.
func (r refusal) err(ours string) error {
	switch r.why {
	case refusedLostLog, refusedKnownOtherwise:
		return errLostLog
	case refusedRemoved:
		return errRemoved
	case refusedOtherReplica:
		return errOtherReplica
	case refusedPeers:
		return errOtherPeers
	}
	return fmt.Errorf("%w (it applies the log by %q, this member by %q)", errRefused, r.theirs, ours)
}

// HeldOff says whether text (a line about a failed connection) is this
// transport's hold-off after a refusal, either way, rather than a peer
// that is down: its next dial connects and is refused again.
func HeldOff(text string) bool {
	for _, err := range []error{errRefused, errLostLog, errRemoved, errOtherReplica, errOtherPeers} {
		if strings.Contains(text, err.Error()) {
			return true
		}
	}
	return false
}

// errRefused fails a dial to a peer that refused this member's versions
// within refusedHoldOff; errLostLog, to a peer that refused this member,
// or that this member refused, as one that lost its log.
var (
	errRefused = errors.New("transport: the peer refused this member's versions")
	errLostLog = errors.New("transport: a member lost its log (its data directory was made anew under a replica id that took part before): " +
		"it must be removed and added back, not restarted as it is")
	errRemoved      = errors.New("transport: the peer refused this member: it was removed from the cluster")
	errOtherReplica = errors.New("transport: the member at this address is not the replica the membership has there (an old incarnation, or another process)")
	errOtherPeers   = errors.New("transport: the peer bootstrapped the cluster with other cluster.peers than this member")
)

var _ raftio.ITransport = (*TCP)(nil)

// Name implements raftio.ITransport.
func (t *TCP) Name() string { return Name }

// Start listens on the NodeHost's listen address (its Raft address unless
// set apart), with the cluster's TLS when mutual TLS is on.
func (t *TCP) Start() error {
	addr := t.nhc.GetListenAddress()
	tlsConfig, err := t.serverTLS()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("transport: listening on %s: %w", addr, err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		ln.Close()
		return errors.New("transport: closed")
	}
	t.ln = ln
	t.wg.Add(1)
	t.mu.Unlock()
	go t.accept(ln)
	return nil
}

// Addr is where Start listens (nil before it), for a listen address with
// port 0.
func (t *TCP) Addr() net.Addr {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ln == nil {
		return nil
	}
	return t.ln.Addr()
}

// Close stops listening, closes every accepted connection and waits for
// their readers to return. Connections dialled through GetConnection are
// closed by their owner.
func (t *TCP) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	if t.ln != nil {
		t.ln.Close()
	}
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	return nil
}

func (t *TCP) accept(ln net.Listener) {
	defer t.wg.Done()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, or a connection reset before it
			// was taken: the listener itself is fine, so wait and go on.
			time.Sleep(acceptRetry)
			continue
		}
		t.mu.Lock()
		if t.closed || len(t.conns) >= maxInbound {
			t.mu.Unlock()
			conn.Close()
			continue
		}
		t.conns[conn] = struct{}{}
		t.wg.Add(1)
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			t.serve(conn)
			t.mu.Lock()
			delete(t.conns, conn)
			t.mu.Unlock()
			conn.Close()
		}()
	}
}

// serverTLS is the listener's TLS configuration, nil without mutual TLS.
// With Credentials each handshake takes the material in force then;
// without, the files are read once, here.
func (t *TCP) serverTLS() (*tls.Config, error) {
	if !t.nhc.MutualTLS {
		return nil, nil
	}
	if t.credentials != nil {
		if _, _, err := t.material(); err != nil {
			return nil, err // at Start rather than at every handshake, unseen
		}
		return &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, ca, err := t.material()
			if err != nil {
				return nil, err
			}
			return &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca,
				Certificates: []tls.Certificate{*cert}, VerifyConnection: memberCertificate}, nil
		}}, nil
	}
	c, err := t.nhc.GetServerTLSConfig()
	if err != nil {
		return nil, err
	}
	c = c.Clone()
	c.VerifyConnection = memberCertificate
	return c, nil
}

// clientTLS is the TLS configuration of a dial to target, nil without
// mutual TLS: the certificate and CA in force (Credentials), or the files
// read again, so that renewed ones apply at once; the peer's certificate
// must name target's host.
func (t *TCP) clientTLS(target string) (*tls.Config, error) {
	if !t.nhc.MutualTLS {
		return nil, nil
	}
	if t.credentials == nil {
		return t.nhc.GetClientTLSConfig(target)
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("transport: the Raft address %q is not host:port: %w", target, err)
	}
	cert, ca, err := t.material()
	if err != nil {
		return nil, err
	}
	return &tls.Config{ServerName: host, RootCAs: ca, Certificates: []tls.Certificate{*cert}}, nil
}

// errNoCredentials: Factory.Credentials returned no certificate or no CA,
// which its caller must never do under mutual TLS.
var errNoCredentials = errors.New("transport: Factory.Credentials returned no certificate or no CA under mutual TLS: pass the certificate and CA in force (security.State.Credentials), or leave Credentials nil to read the files")

// material is the certificate and CA Credentials holds now.
func (t *TCP) material() (*tls.Certificate, *x509.CertPool, error) {
	cert, ca := t.credentials()
	if cert == nil || ca == nil {
		return nil, nil, errNoCredentials
	}
	return cert, ca, nil
}

// errNotMember refuses a peer whose certificate the cluster's CA signed
// for a client only.
var errNotMember = errors.New("transport: the peer's certificate is not a member's: the cluster's CA signed it for clients only (a member's is made with lockstep certs node)")

// memberCertificate admits only a member's certificate on the Raft port.
// The handshake has already checked the CA's signature and client use, but
// the cluster's client certificates (lockstep certs client) come from the
// same CA: they would pass, and their holders could send votes and
// entries. A member's certificate is also for server use (it serves the
// API and Raft), which a client's is not. A certificate that names no
// extended use at all may be used for anything, so it passes.
func memberCertificate(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil // the handshake itself requires one
	}
	leaf := cs.PeerCertificates[0]
	if len(leaf.ExtKeyUsage) == 0 && len(leaf.UnknownExtKeyUsage) == 0 {
		return nil
	}
	for _, u := range leaf.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
			return nil
		}
	}
	return errNotMember
}

// certificateRefused says a failed handshake failed on what the peer
// sent: plaintext (a member without TLS), no certificate, one the CA did
// not sign, or not a member's.
func certificateRefused(err error) bool {
	var verify *tls.CertificateVerificationError
	var plaintext tls.RecordHeaderError
	return errors.Is(err, errNotMember) || errors.As(err, &verify) || errors.As(err, &plaintext) ||
		strings.Contains(err.Error(), "didn't provide a certificate")
}

// serve reads frames from one peer connection until it ends or breaks the
// format; the peer reconnects.
func (t *TCP) serve(conn net.Conn) {
	if tc, ok := conn.(*tls.Conn); ok {
		if err := handshake(tc); err != nil {
			// A peer without a certificate of the cluster's CA, or with a
			// client's, is counted, since a member misconfigured this way
			// cannot reach its peers; a probe that only opened the port,
			// or a connection cut at shutdown, is not.
			if certificateRefused(err) {
				t.obs.Refused("tls")
			}
			return
		}
	}
	r := bufio.NewReaderSize(conn, readBuffer)
	h, ok := t.greeted(conn, r)
	if !ok {
		return
	}
	// unbooked: the peer's taking part is still to be recorded.
	unbooked := false
	var generation uint64
	if t.book != nil && h.self.Replica != 0 {
		generation = t.book.Generation()
		_, known := t.book.Known(h.self.Replica)
		unbooked = !known
	}
	var head [frameStart]byte
	var keep []byte
	for {
		// No deadline while waiting for a frame: a quiet peer is fine, and
		// keep-alives find a dead one.
		if _, err := io.ReadFull(r, head[:2]); err != nil {
			return
		}
		if [2]byte(head[:2]) == poison {
			// The sender ends a snapshot stream and waits for this echo.
			_ = conn.SetWriteDeadline(time.Now().Add(frameTimeout))
			_, _ = conn.Write(poison[:])
			return
		}
		if [2]byte(head[:2]) != magic {
			t.obs.Refused("malformed")
			return
		}
		// The rest of a frame begun must come within frameTimeout; a
		// frame that arrived whole sets no deadline.
		timed := false
		expect := func(n uint64) {
			if !timed && uint64(r.Buffered()) < n {
				timed = true
				_ = conn.SetReadDeadline(time.Now().Add(frameTimeout))
			}
		}
		expect(headerSize)
		if _, err := io.ReadFull(r, head[2:]); err != nil {
			return
		}
		method, size, sum, err := decodeHeader(head[2:])
		if err != nil {
			t.obs.Refused("malformed")
			return
		}
		payload := scratch(&keep, int(size))
		expect(size)
		if _, err := io.ReadFull(r, payload); err != nil {
			return
		}
		if timed {
			_ = conn.SetReadDeadline(time.Time{})
		}
		if !t.encrypted && crc32.ChecksumIEEE(payload) != sum {
			t.obs.Refused("checksum")
			return
		}
		t.obs.Received(frameStart + len(payload))
		if generation != 0 {
			// The book changed since: the peer may have been removed (or
			// found to have lost its log) while this connection was open.
			if g := t.book.Generation(); g != generation {
				generation = g
				if !t.inGoodStanding(h, conn) {
					return
				}
			}
		}
		// Unmarshal copies what it keeps (entries' commands, chunks' data),
		// so the buffer is reused for the next frame.
		switch method {
		case methodBatch:
			var batch pb.MessageBatch
			if batch.Unmarshal(payload) != nil {
				t.obs.Refused("malformed")
				return
			}
			if unbooked && tookPart(batch) {
				if !t.record(h, conn) {
					return
				}
				unbooked = false
			}
			t.onBatch(batch)
		case methodChunk:
			var chunk pb.Chunk
			if chunk.Unmarshal(payload) != nil {
				t.obs.Refused("malformed")
				return
			}
			if unbooked { // a snapshot's sender leads: it took part
				if !t.record(h, conn) {
					return
				}
				unbooked = false
			}
			if !t.onChunk(chunk) {
				t.obs.Refused("chunk refused")
				return // the sender's stream fails and it starts over
			}
		default: // a second hello
			t.obs.Refused("malformed")
			return
		}
	}
}

// tookPart says a batch shows its sender taking part: any message but a
// pre-vote's, which changes no state (a vote, an entry, an
// acknowledgement, even a heartbeat's answer: a member that answers a
// leader acknowledges entries next).
func tookPart(batch pb.MessageBatch) bool {
	for i := range batch.Requests {
		if k := batch.Requests[i].Type; k != pb.RequestPreVote && k != pb.RequestPreVoteResp {
			return true
		}
	}
	return false
}

// record books that the peer of hello h took part, before what shows it
// reaches Dragonboat; false (and the connection is to be closed) when the
// book could not keep it, or holds another log for the replica, a
// connection of the same replica under another log having been booked
// since this one's hello.
func (t *TCP) record(h hello, conn net.Conn) bool {
	if err := t.book.Record(h.self); err != nil {
		if log, known := t.book.Known(h.self.Replica); known {
			t.refuseKnown(h, conn, log)
		} else {
			t.obs.Refused("unbooked")
		}
		return false
	}
	return true
}

// member says whether this member's Book has it in the membership (false
// without a Book, or before it knows the membership).
func (t *TCP) member() bool { return t.book != nil && t.book.Member(t.id.Replica) }

// inGoodStanding says whether the book holds h's replica id under no
// other log than its hello's, and refuses it when not.
func (t *TCP) inGoodStanding(h hello, conn net.Conn) bool {
	if log, known := t.book.Known(h.self.Replica); known && log != h.self.Log {
		t.refuseKnown(h, conn, log)
		return false
	}
	return true
}

// refuseKnown refuses a peer whose replica id the book holds under log,
// not the one it says: removed (log 0), or one that lost its log.
func (t *TCP) refuseKnown(h hello, conn net.Conn, log uint64) {
	if log != 0 {
		t.refuseLostLog(h, conn)
		return
	}
	t.answer(conn, refusedRemoved)
	t.obs.Refused(CutRemoved)
	t.obs.CutOff(h.addr, h.self.Replica, CutRemoved, false)
}

// refuseLostLog answers a peer that lost its log, and holds it off: this
// member does not dial it either, so it is sent neither votes nor the
// log, whose commit index it could not follow.
func (t *TCP) refuseLostLog(h hello, conn net.Conn) {
	t.answer(conn, refusedLostLog)
	t.obs.Refused(CutLostLog)
	t.holdOff(h.addr, refusal{why: refusedLostLog})
	t.obs.CutOff(h.addr, h.self.Replica, CutLostLog, false)
}

// answer writes, best effort, this member's hello with why the dialler's
// was refused: it learns why and holds off.
func (t *TCP) answer(conn net.Conn, why string) {
	_ = t.write(conn, helloPayload(hello{compat: t.compat, addr: t.nhc.RaftAddress, self: t.id, refusal: why, peers: t.peers,
		settings: t.settings}))
}

// holdOff dials addr no more for refusedHoldOff, for r.
func (t *TCP) holdOff(addr string, r refusal) {
	r.until = time.Now().Add(refusedHoldOff)
	t.mu.Lock()
	t.refused[addr] = r
	t.mu.Unlock()
}

// greeted reads the connection's first frame, which must be a hello with
// this member's Compatibility, within frameTimeout: the dialler writes it
// at once. A peer its Book knows under another log is refused.
func (t *TCP) greeted(conn net.Conn, r *bufio.Reader) (hello, bool) {
	_ = conn.SetReadDeadline(time.Now().Add(frameTimeout))
	h, malformed, err := t.readHello(r)
	compat, peer := h.compat, h.addr
	switch {
	case err != nil:
		return h, false
	case malformed == "no hello":
		// No hello, no Raft address: the host alone, since each of its
		// dials comes from another port.
		t.obs.Refused(malformed)
		host, _, err := net.SplitHostPort(conn.RemoteAddr().String())
		if err != nil {
			host = conn.RemoteAddr().String()
		}
		t.obs.Incompatible(host, "")
		return h, false
	case malformed != "":
		t.obs.Refused(malformed)
		return h, false
	case compat != t.compat:
		// Answer with our hello, so that the dialler learns why and holds
		// off; best effort, the connection closes either way.
		_ = t.sayHello(conn)
		t.obs.Refused("versions")
		t.obs.Incompatible(peer, compat)
		return h, false
	case !samePeers(h.peers, t.peers):
		// The dialler bootstrapped the cluster with other members: one of
		// the two has a peer at another address (or another peer) in
		// its log's first entries, and Dragonboat panics the moment that
		// peer's own address reaches it. Refused before anything of it
		// reaches Dragonboat, and not dialled either.
		t.answer(conn, refusedPeers)
		t.obs.Refused(refusedPeers)
		t.holdOff(h.addr, refusal{theirs: h.peers, why: refusedPeers})
		t.obs.OtherPeers(h.addr, h.peers, t.peers)
		return h, false
	}
	// The dialler's own standing first: a dialler that lost its log, or
	// was removed, may well expect someone stale here.
	if t.book != nil && h.self.Replica != 0 && !t.inGoodStanding(h, conn) {
		return h, false
	}
	switch {
	case h.expect.Replica != 0 && t.id.Replica != 0 && h.expect.Replica != t.id.Replica && !t.member():
		// The dialler's membership has another replica at this address,
		// and this member is not one in its own: it runs under another
		// incarnation than the one added, or took another member's
		// address. What it would be sent is addressed to that replica. (A
		// member that is one in its own view is sent by a dialler whose
		// view is stale, which the log will correct.)
		t.answer(conn, refusedOtherReplica)
		t.obs.Refused(CutOtherReplica)
		t.obs.CutOff(h.addr, h.expect.Replica, CutOtherReplica, true)
		return h, false
	case h.expect.Replica != 0 && h.expect.Replica == t.id.Replica && h.expect.Log != 0 && h.expect.Log != t.id.Log:
		// The dialler knows this member under another log: this one lost
		// it. Nothing of the dialler's may reach Dragonboat.
		t.answer(conn, refusedKnownOtherwise)
		t.obs.Refused(CutLostLog)
		t.holdOff(h.addr, refusal{why: refusedKnownOtherwise})
		t.obs.CutOff(h.addr, t.id.Replica, CutLostLog, true)
		return h, false
	}
	_ = conn.SetReadDeadline(time.Time{})
	if h.settings != "" {
		t.obs.PeerSettings(h.addr, h.settings)
	}
	return h, true
}

// readHello reads a connection's hello: a dialler's first frame, or the
// answer of a peer that refused ours. refusal names a frame that is not
// one ("no hello", "malformed", "checksum"); err, a read that failed.
func (t *TCP) readHello(r *bufio.Reader) (h hello, refusal string, err error) {
	var head [frameStart]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return h, "", err
	}
	if [2]byte(head[:2]) != magic {
		return h, "malformed", nil
	}
	method, size, sum, err := decodeHeader(head[2:])
	switch {
	case err != nil:
		return h, "malformed", nil
	case method != methodHello:
		return h, "no hello", nil
	case size > maxHello:
		return h, "malformed", nil
	}
	payload := make([]byte, size)
	if _, err := io.ReadFull(r, payload); err != nil {
		return h, "", err
	}
	if !t.encrypted && crc32.ChecksumIEEE(payload) != sum {
		return h, "checksum", nil
	}
	h, ok := parseHello(payload)
	if !ok {
		return h, "malformed", nil
	}
	return h, "", nil
}

// sayHello writes this member's hello on conn.
func (t *TCP) sayHello(conn net.Conn) error { return t.write(conn, t.hello) }

// write writes one hello payload on conn.
func (t *TCP) write(conn net.Conn, payload []byte) error {
	w := frameWriter{conn: conn, encrypted: t.encrypted}
	_, err := w.writeFrame(methodHello, len(payload), func(b []byte) []byte { return append(b[:0], payload...) })
	return err
}

// helloTo is this member's hello to target: with whom it expects there,
// when its Book knows.
func (t *TCP) helloTo(target string) []byte {
	if t.book == nil {
		return t.hello
	}
	expect, ok := t.book.At(target)
	if !ok {
		return t.hello
	}
	return helloPayload(hello{compat: t.compat, addr: t.nhc.RaftAddress, self: t.id, expect: expect, peers: t.peers,
		settings: t.settings})
}

// hello is what a hello says: the sender's versions, Raft address and
// identity (zero from a build before it), in an answer why ours was
// refused, and in a dialler's whom it expects at the address it dialled.
type hello struct {
	compat, addr string
	self         Identity
	refusal      string
	expect       Identity
	peers        string
	settings     string
}

func helloPayload(h hello) []byte {
	b := []byte{helloFormat}
	b = binary.AppendUvarint(b, uint64(len(h.compat)))
	b = append(b, h.compat...)
	b = binary.AppendUvarint(b, uint64(len(h.addr)))
	b = append(b, h.addr...)
	identity := func(id Identity) {
		if id == (Identity{}) {
			b = append(b, 0)
			return
		}
		b = append(b, identitySize)
		b = binary.BigEndian.AppendUint64(b, id.Replica)
		b = binary.BigEndian.AppendUint64(b, id.Log)
	}
	// The optional fields, up to the last one set.
	switch {
	case h.settings != "":
		identity(h.self)
		b = binary.AppendUvarint(b, uint64(len(h.refusal)))
		b = append(b, h.refusal...)
		identity(h.expect)
		b = binary.AppendUvarint(b, uint64(len(h.peers)))
		b = append(b, h.peers...)
		b = binary.AppendUvarint(b, uint64(len(h.settings)))
		b = append(b, h.settings...)
	case h.peers != "":
		identity(h.self)
		b = binary.AppendUvarint(b, uint64(len(h.refusal)))
		b = append(b, h.refusal...)
		identity(h.expect)
		b = binary.AppendUvarint(b, uint64(len(h.peers)))
		b = append(b, h.peers...)
	case h.expect != (Identity{}):
		identity(h.self)
		b = binary.AppendUvarint(b, uint64(len(h.refusal)))
		b = append(b, h.refusal...)
		identity(h.expect)
	case h.refusal != "":
		identity(h.self)
		b = binary.AppendUvarint(b, uint64(len(h.refusal)))
		b = append(b, h.refusal...)
	case h.self != (Identity{}):
		identity(h.self)
	}
	return b
}

func parseHello(b []byte) (h hello, ok bool) {
	if len(b) == 0 || b[0] != helloFormat {
		return h, false
	}
	b = b[1:]
	field := func() (string, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return "", false
		}
		v := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return v, true
	}
	var fields [7]string
	for i := range fields {
		if len(b) == 0 && i >= 2 { // the identity, refusal, expect, peers and settings are optional
			break
		}
		if fields[i], ok = field(); !ok {
			return hello{}, false
		}
	}
	// Fields a later build adds come after, in the same shape, and are
	// skipped: so that build can send them to this one in a rolling
	// upgrade. Bytes that are not whole fields are malformed.
	for len(b) > 0 {
		if _, ok := field(); !ok {
			return hello{}, false
		}
	}
	h = hello{compat: fields[0], addr: fields[1], refusal: fields[3], peers: fields[5], settings: fields[6]}
	for _, f := range []struct {
		text string
		id   *Identity
	}{{fields[2], &h.self}, {fields[4], &h.expect}} {
		switch len(f.text) {
		case 0:
		case identitySize:
			*f.id = Identity{Replica: binary.BigEndian.Uint64([]byte(f.text[:8])), Log: binary.BigEndian.Uint64([]byte(f.text[8:]))}
		default:
			return hello{}, false
		}
	}
	return h, true
}

func handshake(tc *tls.Conn) error {
	if err := tc.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return err
	}
	if err := tc.Handshake(); err != nil {
		return err
	}
	return tc.SetDeadline(time.Time{})
}

// GetConnection dials target for Raft messages.
func (t *TCP) GetConnection(ctx context.Context, target string) (raftio.IConnection, error) {
	c := &Connection{t: t, ctx: ctx, target: target}
	if err := c.connect(); err != nil {
		return nil, err
	}
	return c, nil
}

// GetSnapshotConnection dials target for one snapshot's chunks.
func (t *TCP) GetSnapshotConnection(ctx context.Context, target string) (raftio.ISnapshotConnection, error) {
	conn, err := t.dial(ctx, target)
	if err != nil {
		return nil, err
	}
	return &SnapshotConnection{w: frameWriter{conn: conn, encrypted: t.encrypted, peer: target, obs: t.obs}}, nil
}

// dial connects to target and says hello, telling the observer how it
// went.
func (t *TCP) dial(ctx context.Context, target string) (net.Conn, error) {
	t.mu.Lock()
	r, held := t.refused[target]
	if held && !time.Now().Before(r.until) {
		delete(t.refused, target)
		held = false
	}
	t.mu.Unlock()
	if held {
		err := r.err(t.compat)
		t.obs.Dialed(target, err)
		return nil, err
	}
	conn, err := t.dialTLS(ctx, target)
	if err == nil {
		if err = t.write(conn, t.helloTo(target)); err != nil {
			conn.Close()
			conn = nil
		}
	}
	t.obs.Dialed(target, err)
	return conn, err
}

func (t *TCP) dialTLS(ctx context.Context, target string) (net.Conn, error) {
	d := net.Dialer{Timeout: dialTimeout, KeepAlive: keepAlive}
	conn, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		// Reset rather than linger on close: the upper layer closes a
		// connection only when it failed, and redials.
		_ = tc.SetLinger(0)
	}
	tlsConfig, err := t.clientTLS(target)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if tlsConfig == nil {
		return conn, nil
	}
	tc := tls.Client(conn, tlsConfig)
	if err := handshake(tc); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// Connection sends Raft message batches to one peer.
type Connection struct {
	t      *TCP
	ctx    context.Context
	target string
	w      frameWriter
	ended  *atomic.Bool // set by the current conn's watcher when the peer ended it
	reset  *atomic.Bool // set when a send to the current conn found that the peer ended it
}

var _ raftio.IConnection = (*Connection)(nil)

func (c *Connection) connect() error {
	conn, err := c.t.dial(c.ctx, c.target)
	if err != nil {
		return err
	}
	ended, reset := new(atomic.Bool), new(atomic.Bool)
	c.w = frameWriter{conn: conn, encrypted: c.t.encrypted, peer: c.target, obs: c.t.obs, buf: c.w.buf}
	c.ended, c.reset = ended, reset
	go watch(conn, ended, reset, func() { c.t.obs.Ended(c.target) }, func(r *bufio.Reader) {
		if h, refusal, err := c.t.readHello(r); err == nil && refusal == "" {
			c.t.heldOff(c.target, h)
		}
	})
	return nil
}

// heldOff notes that target refused this member, answering h: for its
// versions, or as a member that lost its log. It is not dialled again for
// refusedHoldOff.
func (t *TCP) heldOff(target string, h hello) {
	t.holdOff(target, refusal{theirs: h.compat, why: h.refusal})
	switch h.refusal {
	case refusedRemoved:
		t.obs.CutOff(target, t.id.Replica, CutRemoved, true)
	case refusedOtherReplica:
		var expected Identity
		if t.book != nil {
			expected, _ = t.book.At(target)
		}
		t.obs.CutOff(target, expected.Replica, CutOtherReplica, false)
	case refusedLostLog: // this member lost its log
		t.obs.CutOff(target, t.id.Replica, CutLostLog, true)
	case refusedKnownOtherwise: // the peer did
		t.obs.CutOff(target, h.self.Replica, CutLostLog, false)
	case refusedPeers:
		t.obs.OtherPeers(target, h.peers, t.peers)
	default:
		t.obs.Incompatible(target, h.compat)
	}
}

// watch marks conn ended and closes it the moment the peer ends it. A
// peer never writes on a message connection, so a read returns only when
// the connection ended (or broke the protocol). Without this, the first
// frame written after the peer closed would still succeed, into a dead
// socket, and be lost: a partition's proxy or a restarted peer would cost
// a message each time, and a follower that sends rarely (its forwarded
// proposals, its vote) would lose its next one.
//
// The one thing a peer writes is its own hello, when it refuses ours:
// onAnswer then reads it.
//
// onEnd tells the observer the peer ended the connection. A close here is
// not the peer's doing, unless a send had found that the peer ended it
// (reset): the sender sees the peer's reset as a failed write, which
// Dragonboat answers by closing the connection, and on a loaded machine
// that close could reach this read before the reset did. The restart was
// then not counted (lockstep_raft_peer_disconnects_total).
func watch(conn net.Conn, ended, reset *atomic.Bool, onEnd func(), onAnswer func(*bufio.Reader)) {
	r := bufio.NewReaderSize(conn, frameStart+maxHello)
	_, err := r.Peek(1)
	if err == nil {
		_ = conn.SetReadDeadline(time.Now().Add(frameTimeout))
		onAnswer(r)
	}
	ended.Store(true)
	conn.Close()
	if !errors.Is(err, net.ErrClosed) || reset.Load() {
		onEnd()
	}
}

// peerEnded says whether a failed write means the peer ended the
// connection: it reset it, or had closed it before the write.
func peerEnded(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// SendMessageBatch writes batch as one frame. When the peer ended the
// connection since the last frame (it restarted, or a proxy dropped the
// link), it dials once more first: a restarted peer then costs neither
// this message nor Dragonboat's circuit-breaker back-off, which a failed
// send starts (0.5 to 1.5 s, in which a peer's votes and acknowledgements
// are dropped). A failed dial fails the send, as before.
func (c *Connection) SendMessageBatch(batch pb.MessageBatch) error {
	if c.ended.Load() {
		if err := c.connect(); err != nil {
			c.t.obs.Sent(c.target, 0, err)
			return err
		}
	}
	err := c.w.write(methodBatch, batch.SizeUpperLimit(), func(b []byte) []byte { return pb.MustMarshalTo(&batch, b) })
	if err != nil && peerEnded(err) {
		c.reset.Store(true) // before Dragonboat closes the connection: watch counts the end
	}
	return err
}

// Close closes the connection.
func (c *Connection) Close() { c.w.conn.Close() }

// SnapshotConnection sends one snapshot's chunks to one peer.
type SnapshotConnection struct{ w frameWriter }

var _ raftio.ISnapshotConnection = (*SnapshotConnection)(nil)

// SendChunk writes chunk as one frame.
func (c *SnapshotConnection) SendChunk(chunk pb.Chunk) error {
	return c.w.write(methodChunk, chunk.Size(), func(b []byte) []byte { return pb.MustMarshalTo(&chunk, b) })
}

// Close ends the stream with the poison and waits, bounded, for the peer
// to echo it, so that the last chunks are read before the connection goes.
func (c *SnapshotConnection) Close() {
	conn := c.w.conn
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(poisonAckTimeout)); err != nil {
		return
	}
	if _, err := conn.Write(poison[:]); err != nil {
		return
	}
	var ack [2]byte
	_, _ = io.ReadFull(conn, ack[:])
}

// frameWriter writes whole frames, each in one write.
type frameWriter struct {
	conn      net.Conn
	encrypted bool
	peer      string   // its Raft address, for obs
	obs       Observer // the transport's (unobserved{} when none was given)
	buf       []byte   // kept between frames (scratch)
}

// write marshals a payload of at most upper bytes behind the frame's head
// and writes the frame.
func (w *frameWriter) write(method uint16, upper int, marshal func([]byte) []byte) error {
	n, err := w.writeFrame(method, upper, marshal)
	w.obs.Sent(w.peer, n, err)
	return err
}

func (w *frameWriter) writeFrame(method uint16, upper int, marshal func([]byte) []byte) (int, error) {
	buf := scratch(&w.buf, frameStart+upper)
	payload := marshal(buf[frameStart:])
	if len(payload) == 0 || len(payload) > MaxPayload {
		return 0, fmt.Errorf("transport: a %d-byte payload is outside 1..%d", len(payload), MaxPayload)
	}
	var sum uint32
	if !w.encrypted {
		sum = crc32.ChecksumIEEE(payload)
	}
	copy(buf, magic[:])
	encodeHeader(buf[2:frameStart], method, uint64(len(payload)), sum)
	if err := w.conn.SetWriteDeadline(time.Now().Add(frameTimeout)); err != nil {
		return 0, err
	}
	return w.conn.Write(buf[:frameStart+len(payload)])
}

// scratch returns n bytes from *kept, growing it when it is short; a
// buffer larger than keepBuffer is used once and not kept.
func scratch(kept *[]byte, n int) []byte {
	if cap(*kept) >= n {
		return (*kept)[:n]
	}
	buf := make([]byte, n)
	if n <= keepBuffer {
		*kept = buf
	}
	return buf
}

func encodeHeader(h []byte, method uint16, size uint64, sum uint32) {
	binary.BigEndian.PutUint16(h[0:], method)
	binary.BigEndian.PutUint64(h[2:], size)
	binary.BigEndian.PutUint32(h[10:], 0)
	binary.BigEndian.PutUint32(h[14:], sum)
	binary.BigEndian.PutUint32(h[10:], crc32.ChecksumIEEE(h[:headerSize]))
}

// decodeHeader checks a header and returns its method, payload size and
// payload CRC. It leaves h as it found it.
func decodeHeader(h []byte) (method uint16, size uint64, sum uint32, err error) {
	got := binary.BigEndian.Uint32(h[10:])
	binary.BigEndian.PutUint32(h[10:], 0)
	want := crc32.ChecksumIEEE(h[:headerSize])
	binary.BigEndian.PutUint32(h[10:], got)
	if got != want {
		return 0, 0, 0, errFrame
	}
	method = binary.BigEndian.Uint16(h[0:])
	size = binary.BigEndian.Uint64(h[2:])
	if (method != methodBatch && method != methodChunk && method != methodHello) || size == 0 || size > MaxPayload {
		return 0, 0, 0, errFrame
	}
	return method, size, binary.BigEndian.Uint32(h[14:]), nil
}
