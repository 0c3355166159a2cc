package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	dbconfig "github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
)

// receiver collects what a transport was handed.
type receiver struct {
	mu      sync.Mutex
	batches []pb.MessageBatch
	chunks  []pb.Chunk
	refuse  bool // the chunk handler refuses every chunk
	got     chan struct{}
}

func newReceiver() *receiver { return &receiver{got: make(chan struct{}, 1024)} }

func (r *receiver) batch(b pb.MessageBatch) {
	r.mu.Lock()
	r.batches = append(r.batches, b)
	r.mu.Unlock()
	r.got <- struct{}{}
}

func (r *receiver) chunk(c pb.Chunk) bool {
	r.mu.Lock()
	r.chunks = append(r.chunks, c)
	refuse := r.refuse
	r.mu.Unlock()
	r.got <- struct{}{}
	return !refuse
}

func (r *receiver) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-r.got:
		case <-time.After(10 * time.Second):
			t.Fatalf("waited 10 s for a delivery")
		}
	}
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.batches) + len(r.chunks)
}

// start runs a transport on 127.0.0.1 with a free port.
func start(t *testing.T, nhc dbconfig.NodeHostConfig, r *receiver) *TCP {
	t.Helper()
	return startWith(t, Factory{}, nhc, r)
}

// startWith is start with f's observer and versions.
func startWith(t *testing.T, f Factory, nhc dbconfig.NodeHostConfig, r *receiver) *TCP {
	t.Helper()
	if nhc.RaftAddress == "" {
		nhc.RaftAddress = "127.0.0.1:0"
	}
	tr := f.Create(nhc, r.batch, r.chunk).(*TCP)
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// sender is a transport that only dials: nhc's TLS settings, any Raft
// address (it does not listen).
func sender(nhc dbconfig.NodeHostConfig) raftio.ITransport {
	nhc.RaftAddress = "127.0.0.1:1"
	return Factory{}.Create(nhc, nil, nil)
}

// dialMessages opens a message connection from a sender with nhc's TLS
// settings to addr, closed when the test ends.
func dialMessages(t *testing.T, nhc dbconfig.NodeHostConfig, addr string) raftio.IConnection {
	t.Helper()
	conn, err := sender(nhc).GetConnection(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return conn
}

// dialSnapshot opens a snapshot connection to addr; the test closes it.
func dialSnapshot(t *testing.T, addr string) raftio.ISnapshotConnection {
	t.Helper()
	sc, err := sender(dbconfig.NodeHostConfig{}).GetSnapshotConnection(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// dialRaw opens a plain TCP connection to addr, closed when the test ends,
// says hello as a peer of the tests' versions ("") would, and writes first
// on it (nil: nothing more).
func dialRaw(t *testing.T, addr string, first []byte) net.Conn {
	t.Helper()
	return dialBare(t, addr, append(frame(methodHello, helloPayload(hello{addr: "raw"})), first...))
}

// dialBare is dialRaw without the hello.
func dialBare(t *testing.T, addr string, first []byte) net.Conn {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	if first != nil {
		if _, err := raw.Write(first); err != nil {
			t.Fatal(err)
		}
	}
	return raw
}

func sampleBatch(i int, cmdSize int) pb.MessageBatch {
	cmd := bytes.Repeat([]byte{byte(i)}, cmdSize)
	return pb.MessageBatch{
		DeploymentId:  7,
		SourceAddress: "127.0.0.1:4001",
		BinVer:        1,
		Requests: []pb.Message{{
			Type: pb.Replicate, To: 2, From: 1, ShardID: 1, Term: 3, LogTerm: 3, LogIndex: uint64(10 * i), Commit: uint64(i),
			Entries: []pb.Entry{{Term: 3, Index: uint64(10*i + 1), Cmd: cmd}, {Term: 3, Index: uint64(10*i + 2), Cmd: []byte("x")}},
		}},
	}
}

// TestBatchesArriveWhole: batches small and larger than the read buffer
// arrive in order and intact, and the sender's reused buffer does not leak
// one batch into the next.
func TestBatchesArriveWhole(t *testing.T) {
	r := newReceiver()
	b := start(t, dbconfig.NodeHostConfig{}, r)
	conn := dialMessages(t, dbconfig.NodeHostConfig{}, b.Addr().String())
	sizes := []int{1, 100, readBuffer - 50, readBuffer + 1, 300 << 10, 10, keepBuffer + 1, 3}
	var sent []pb.MessageBatch
	for i, n := range sizes {
		m := sampleBatch(i, n)
		sent = append(sent, m)
		if err := conn.SendMessageBatch(m); err != nil {
			t.Fatal(err)
		}
	}
	r.wait(t, len(sent))
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range sent {
		if !reflect.DeepEqual(r.batches[i], sent[i]) {
			t.Fatalf("batch %d (%d-byte command) arrived changed", i, sizes[i])
		}
	}
}

// TestSnapshotStreamEndsWithPoison: chunks arrive in order, and Close
// returns once the receiver echoed the poison, well before its bound.
func TestSnapshotStreamEndsWithPoison(t *testing.T) {
	r := newReceiver()
	b := start(t, dbconfig.NodeHostConfig{}, r)
	sc := dialSnapshot(t, b.Addr().String())
	var sent []pb.Chunk
	for i := range 3 {
		c := pb.Chunk{ShardID: 1, ReplicaID: 2, From: 1, ChunkId: uint64(i), ChunkCount: 3, Index: 40, Term: 2,
			Data: bytes.Repeat([]byte{byte(i + 1)}, 200<<10), DeploymentId: 7, BinVer: 1, Filepath: "snap", FileSize: 600 << 10}
		sent = append(sent, c)
		if err := sc.SendChunk(c); err != nil {
			t.Fatal(err)
		}
	}
	began := time.Now()
	sc.Close()
	if d := time.Since(began); d > poisonAckTimeout/2 {
		t.Errorf("Close took %v: the poison was not echoed", d)
	}
	r.wait(t, 3)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !reflect.DeepEqual(r.chunks, sent) {
		t.Fatalf("chunks arrived changed or out of order")
	}
}

// TestRefusedChunkEndsTheStream: when the receiver refuses a chunk, it
// drops the connection, so the sender's next writes fail and it starts the
// snapshot over.
func TestRefusedChunkEndsTheStream(t *testing.T) {
	r := newReceiver()
	r.refuse = true
	b := start(t, dbconfig.NodeHostConfig{}, r)
	sc := dialSnapshot(t, b.Addr().String())
	defer sc.Close()
	c := pb.Chunk{ShardID: 1, ChunkCount: 1, Data: bytes.Repeat([]byte{1}, 64<<10)}
	if err := sc.SendChunk(c); err != nil {
		t.Fatal(err)
	}
	r.wait(t, 1)
	var werr error
	for range 200 { // the first writes after the peer's close may still be buffered
		if werr = sc.SendChunk(c); werr != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if werr == nil {
		t.Fatal("writes kept succeeding after the receiver refused a chunk")
	}
	if n := r.count(); n != 1 {
		t.Errorf("the receiver was handed %d chunks after refusing the first", n-1)
	}
}

// frame builds a frame by hand, in the documented layout.
func frame(method uint16, payload []byte) []byte {
	f := make([]byte, frameStart+len(payload))
	copy(f, magic[:])
	binary.BigEndian.PutUint16(f[2:], method)
	binary.BigEndian.PutUint64(f[4:], uint64(len(payload)))
	binary.BigEndian.PutUint32(f[16:], crc32.ChecksumIEEE(payload))
	binary.BigEndian.PutUint32(f[12:], crc32.ChecksumIEEE(f[2:frameStart]))
	copy(f[frameStart:], payload)
	return f
}

// TestWireFormat: a frame made by hand from the package comment's layout
// (Dragonboat's own TCP transport's, behind a hello) is read, and the
// writer's frames are byte for byte that layout.
func TestWireFormat(t *testing.T) {
	m := sampleBatch(1, 5)
	payload, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	client, server := net.Pipe()
	w := frameWriter{conn: client, obs: unobserved{}}
	go func() {
		_ = w.write(methodBatch, m.SizeUpperLimit(), func(b []byte) []byte { return pb.MustMarshalTo(&m, b) })
	}()
	got := make([]byte, frameStart+len(payload))
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if want := frame(methodBatch, payload); !bytes.Equal(got, want) {
		t.Fatalf("writer's frame\n%x\nwant\n%x", got[:frameStart], want[:frameStart])
	}

	r := newReceiver()
	b := start(t, dbconfig.NodeHostConfig{}, r)
	// Two frames in one write, then one split across writes.
	f := frame(methodBatch, payload)
	raw := dialRaw(t, b.Addr().String(), append(append([]byte{}, f...), f...))
	for _, part := range [][]byte{f[:1], f[1:9], f[9:30], f[30:]} {
		if _, err := raw.Write(part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.wait(t, 3)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, got := range r.batches {
		if !reflect.DeepEqual(got, m) {
			t.Errorf("hand-made frame %d arrived as %+v", i, got)
		}
	}
}

// TestMalformedFramesCloseTheConnection: a frame that breaks the format
// closes its connection without reaching Dragonboat; the listener goes on.
func TestMalformedFramesCloseTheConnection(t *testing.T) {
	m := sampleBatch(2, 10)
	payload, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	good := frame(methodBatch, payload)
	mend := func(f []byte) []byte { // recompute the header CRC after an edit
		binary.BigEndian.PutUint32(f[12:], 0)
		binary.BigEndian.PutUint32(f[12:], crc32.ChecksumIEEE(f[2:frameStart]))
		return f
	}
	edit := func(fn func(f []byte) []byte) []byte { return fn(append([]byte{}, good...)) }
	cases := map[string][]byte{
		"bad magic":       edit(func(f []byte) []byte { f[0] = 0xAF; return f }),
		"header crc":      edit(func(f []byte) []byte { f[13] ^= 1; return f }),
		"unknown method":  edit(func(f []byte) []byte { binary.BigEndian.PutUint16(f[2:], 7); return mend(f) }),
		"empty payload":   edit(func(f []byte) []byte { binary.BigEndian.PutUint64(f[4:], 0); return mend(f) }),
		"oversized":       edit(func(f []byte) []byte { binary.BigEndian.PutUint64(f[4:], MaxPayload+1); return mend(f) }),
		"payload crc":     edit(func(f []byte) []byte { f[len(f)-1] ^= 1; return f }),
		"not a batch":     frame(methodBatch, []byte{0xff, 0xff, 0xff}),
		"size beyond end": edit(func(f []byte) []byte { binary.BigEndian.PutUint64(f[4:], uint64(len(payload)+1)); return mend(f) }),
		"a second hello":  frame(methodHello, helloPayload(hello{addr: "raw"})),
	}
	r := newReceiver()
	b := start(t, dbconfig.NodeHostConfig{}, r)
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			raw := dialRaw(t, b.Addr().String(), f)
			if name == "size beyond end" {
				// The rest of the frame never comes: the reader gives up
				// after frameTimeout. Closing our side ends it sooner.
				raw.(*net.TCPConn).CloseWrite()
			}
			_ = raw.SetReadDeadline(time.Now().Add(frameTimeout + 5*time.Second))
			if _, err := raw.Read(make([]byte, 1)); err == nil {
				t.Fatal("the connection stayed open and answered")
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the connection stayed open")
			}
		})
	}
	if n := r.count(); n != 0 {
		t.Fatalf("%d malformed frames reached the handler", n)
	}
	dialRaw(t, b.Addr().String(), good)
	r.wait(t, 1)
}

// TestMutualTLS: under mutual TLS a peer with a member's certificate from
// the cluster's CA is heard; one without a certificate is not, nor one
// with a certificate the same CA signed for a client only (which any
// principal of the API may hold), and each refusal is counted.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	writePKI(t, dir)
	nhc := dbconfig.NodeHostConfig{MutualTLS: true, CAFile: filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "node.pem"), KeyFile: filepath.Join(dir, "node-key.pem")}
	r := newReceiver()
	got := newRecorder()
	b := startWith(t, Factory{Observer: got}, nhc, r)
	conn := dialMessages(t, nhc, b.Addr().String())
	m := sampleBatch(3, 1000)
	if err := conn.SendMessageBatch(m); err != nil {
		t.Fatal(err)
	}
	r.wait(t, 1)

	pc := dialMessages(t, dbconfig.NodeHostConfig{}, b.Addr().String())
	_ = pc.SendMessageBatch(m) // the server's handshake fails on it
	time.Sleep(200 * time.Millisecond)
	if n := r.count(); n != 1 {
		t.Fatalf("a peer without TLS was heard: %d batches", n)
	}

	asClient := nhc
	asClient.CertFile, asClient.KeyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	// Under TLS 1.3 the dialler's handshake ends before the server has
	// checked its certificate: the dial may succeed, the batch must not.
	var client raftio.IConnection
	if cc, err := sender(asClient).GetConnection(context.Background(), b.Addr().String()); err == nil {
		_ = cc.SendMessageBatch(m)
		client = cc
	}
	clientConn := func() (raftio.IConnection, bool) { return client, client != nil }
	time.Sleep(200 * time.Millisecond)
	if n := r.count(); n != 1 {
		t.Fatalf("a peer with a client's certificate was heard: %d batches", n)
	}
	// The plaintext peer and the client's certificate are counted (the
	// latter once per dial: its sender may redial once the receiver ended
	// the connection); a probe that opens the port and leaves is not.
	var before int
	got.read(func() { before = got.refused["tls"] })
	if before < 2 {
		t.Errorf("refusals %v, want the plaintext peer and the client's certificate counted as tls", got.refused)
	}
	if cc, ok := clientConn(); ok {
		cc.Close() // no more redials
	}
	time.Sleep(100 * time.Millisecond)
	got.read(func() { before = got.refused["tls"] })
	probe, err := net.Dial("tcp", b.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	probe.Close()
	time.Sleep(200 * time.Millisecond)
	got.read(func() {
		if got.refused["tls"] != before {
			t.Errorf("refusals %v after a probe, want still %d tls", got.refused, before)
		}
	})
}

// TestCredentialsReload: with Factory.Credentials the listener and each
// dial take the certificate and CA in force at each handshake, so a reload
// to a new CA's material reaches new connections without a restart: the
// listener presents the new certificate and checks peers against the new
// CA (a peer with the old CA's certificate is refused, and counted), a
// dialler presents its new certificate, and a connection open before the
// reload goes on.
func TestCredentialsReload(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	writePKI(t, dirA)
	writePKI(t, dirB)
	certA, caA := loadCredentials(t, dirA)
	certB, caB := loadCredentials(t, dirB)
	both := caA.Clone()
	both.AppendCertsFromPEM(mustRead(t, filepath.Join(dirB, "ca.pem")))

	// The files stay A's, as a member's configuration names the files
	// Dragonboat checks at start; only the Credentials change.
	nhcA := dbconfig.NodeHostConfig{MutualTLS: true, CAFile: filepath.Join(dirA, "ca.pem"),
		CertFile: filepath.Join(dirA, "node.pem"), KeyFile: filepath.Join(dirA, "node-key.pem")}
	listening := newCredentials(certA, caA)
	got := newRecorder()
	r := newReceiver()
	addr := startWith(t, Factory{Observer: got, Credentials: listening.get}, nhcA, r).Addr().String()
	dialling := newCredentials(certA, caA)
	s := Factory{Credentials: dialling.get}.Create(dbconfig.NodeHostConfig{MutualTLS: true, RaftAddress: "127.0.0.1:1"}, nil, nil)
	dialWith := func(s raftio.ITransport) (raftio.IConnection, error) {
		conn, err := s.GetConnection(context.Background(), addr)
		if err == nil {
			t.Cleanup(conn.Close)
		}
		return conn, err
	}
	before, err := dialWith(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := before.SendMessageBatch(sampleBatch(1, 10)); err != nil {
		t.Fatal(err)
	}
	r.wait(t, 1)
	if presented(t, addr, certA, caA) != string(certA.Certificate[0]) {
		t.Fatal("the listener does not present the certificate in force at start")
	}

	listening.set(certB, caB) // the reload
	if presented(t, addr, certB, caB) != string(certB.Certificate[0]) {
		t.Fatal("after the reload the listener still presents the old certificate")
	}
	// A peer of the old CA alone no longer trusts the listener.
	if _, err := dialWith(sender(nhcA)); err == nil {
		t.Fatal("a peer trusting only the old CA completed a handshake with the reloaded listener")
	}
	// One that trusts both but presents the old CA's certificate is
	// refused by the listener, which counts it. Under TLS 1.3 its dial
	// may succeed before the listener has checked it; its batch must not
	// arrive.
	var refused int
	got.read(func() { refused = got.refused["tls"] })
	oldCert := Factory{Credentials: func() (*tls.Certificate, *x509.CertPool) { return certA, both }}.
		Create(dbconfig.NodeHostConfig{MutualTLS: true, RaftAddress: "127.0.0.1:1"}, nil, nil)
	if conn, err := dialWith(oldCert); err == nil {
		_ = conn.SendMessageBatch(sampleBatch(2, 10))
	}
	eventually(t, "the old CA's certificate is refused as tls", func() bool {
		n := 0
		got.read(func() { n = got.refused["tls"] })
		return n > refused
	})

	// The connection open before the reload goes on with what it began
	// with; the dialler's own reload reaches its next dial.
	if err := before.SendMessageBatch(sampleBatch(3, 10)); err != nil {
		t.Fatalf("a connection open before the reload: %v", err)
	}
	r.wait(t, 1)
	if _, err := dialWith(s); err == nil {
		t.Fatal("a dialler trusting only the old CA completed a handshake with the reloaded listener")
	}
	dialling.set(certB, caB)
	after, err := dialWith(s)
	if err != nil {
		t.Fatalf("a dial with the new material: %v", err)
	}
	if err := after.SendMessageBatch(sampleBatch(4, 10)); err != nil {
		t.Fatal(err)
	}
	r.wait(t, 1)
	time.Sleep(100 * time.Millisecond) // anything refused would have arrived by now
	if n := r.count(); n != 3 {
		t.Fatalf("%d batches arrived, want 3: before the reload, on the old connection, and with the new material", n)
	}
}

// credentials is a Factory.Credentials that a test swaps, as a reload does.
type credentials struct {
	mu   sync.Mutex
	cert *tls.Certificate
	ca   *x509.CertPool
}

func newCredentials(cert *tls.Certificate, ca *x509.CertPool) *credentials {
	return &credentials{cert: cert, ca: ca}
}

func (c *credentials) get() (*tls.Certificate, *x509.CertPool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert, c.ca
}

func (c *credentials) set(cert *tls.Certificate, ca *x509.CertPool) {
	c.mu.Lock()
	c.cert, c.ca = cert, ca
	c.mu.Unlock()
}

// loadCredentials reads the member's certificate and the CA writePKI wrote
// into dir.
func loadCredentials(t *testing.T, dir string) (*tls.Certificate, *x509.CertPool) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ca := x509.NewCertPool()
	if !ca.AppendCertsFromPEM(mustRead(t, filepath.Join(dir, "ca.pem"))) {
		t.Fatalf("%s holds no certificate", filepath.Join(dir, "ca.pem"))
	}
	return &cert, ca
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// presented is the DER of the certificate the listener at addr presents
// to a member with cert that trusts ca.
func presented(t *testing.T, addr string, cert *tls.Certificate, ca *x509.CertPool) string {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: "127.0.0.1", RootCAs: ca, Certificates: []tls.Certificate{*cert}})
	if err != nil {
		t.Fatalf("a handshake with the listener: %v", err)
	}
	defer conn.Close()
	return string(conn.ConnectionState().PeerCertificates[0].Raw)
}

// TestCloseEndsReaders: Close returns with connections open, and the
// transport takes no new ones.
func TestCloseEndsReaders(t *testing.T) {
	r := newReceiver()
	b := start(t, dbconfig.NodeHostConfig{}, r)
	addr := b.Addr().String()
	var raws []net.Conn
	for range 3 {
		raws = append(raws, dialRaw(t, addr, nil))
	}
	time.Sleep(50 * time.Millisecond) // accepted
	done := make(chan struct{})
	go func() { b.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited on open connections")
	}
	for _, raw := range raws {
		_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := raw.Read(make([]byte, 1)); err == nil {
			t.Fatal("a connection outlived Close")
		}
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("still listening after Close")
	}
}

func TestValidate(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:63001": true, "node1.example:7000": true, "[::1]:1": true,
		"127.0.0.1": false, ":7000": false, "127.0.0.1:0": false, "127.0.0.1:65536": false, "h:port": false,
	} {
		if got := (Factory{}).Validate(addr); got != want {
			t.Errorf("Validate(%q) = %v, want %v", addr, got, want)
		}
	}
}

// writePKI writes ca.pem, node.pem and node-key.pem for 127.0.0.1 signed
// by it, and client.pem and client-key.pem (a client's), into dir. (The security package makes real ones; it
// imports the runtime, so this test cannot use it.)
func writePKI(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(err)
	ca, err := x509.ParseCertificate(caDER)
	must(err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node-1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	must(err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	must(err)
	// A client's certificate from the same CA, as lockstep certs client
	// makes it: for client use only.
	clientTmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "ci"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	clientDER, err := x509.CreateCertificate(rand.Reader, clientTmpl, ca, &key.PublicKey, caKey)
	must(err)
	for name, block := range map[string]*pem.Block{"ca.pem": {Type: "CERTIFICATE", Bytes: caDER},
		"node.pem": {Type: "CERTIFICATE", Bytes: der}, "node-key.pem": {Type: "PRIVATE KEY", Bytes: keyDER},
		"client.pem": {Type: "CERTIFICATE", Bytes: clientDER}, "client-key.pem": {Type: "PRIVATE KEY", Bytes: keyDER}} {
		must(os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600))
	}
}

// TestSendRedialsARestartedPeer: once a peer ended the connection (it
// restarted), the next send dials again and arrives, without an error that
// would start Dragonboat's circuit-breaker back-off; with nobody listening
// any more, it fails at once instead of vanishing into the dead socket.
func TestSendRedialsARestartedPeer(t *testing.T) {
	r1 := newReceiver()
	b1 := start(t, dbconfig.NodeHostConfig{}, r1)
	addr := b1.Addr().String()
	conn := dialMessages(t, dbconfig.NodeHostConfig{}, addr)
	if err := conn.SendMessageBatch(sampleBatch(1, 10)); err != nil {
		t.Fatal(err)
	}
	r1.wait(t, 1)

	b1.Close() // the peer stops: its side of the connection closes (a FIN: it read everything)
	r2 := newReceiver()
	b2 := start(t, dbconfig.NodeHostConfig{RaftAddress: addr}, r2)
	time.Sleep(200 * time.Millisecond) // the close reaches this side
	if err := conn.SendMessageBatch(sampleBatch(2, 10)); err != nil {
		t.Fatalf("the first send to the restarted peer failed: %v", err)
	}
	r2.wait(t, 1)

	b2.Close() // and now the peer is gone
	time.Sleep(200 * time.Millisecond)
	if err := conn.SendMessageBatch(sampleBatch(3, 10)); err == nil {
		t.Fatal("a send to a peer that is gone succeeded: the message was lost silently")
	}
}

// recorder is an Observer that keeps what it was told.
type recorder struct {
	mu       sync.Mutex
	dials    map[string]int // "peer ok" or "peer failed"
	sent     map[string]int // bytes by peer
	failures map[string]int
	ended    map[string]int
	received int
	refused  map[string]int
	strange  []string // "peer theirs" of each Incompatible
	lost     []string // "peer replica ours" of each CutOff for a lost log
	removed  []string // "peer replica ours" of each CutOff for a removal
	other    []string // "peer expected ours" of each CutOff for another replica
	peers    []string // "peer theirs ours" of each OtherPeers
	settings []string // "peer theirs" of each PeerSettings
}

func newRecorder() *recorder {
	return &recorder{dials: map[string]int{}, sent: map[string]int{}, failures: map[string]int{},
		ended: map[string]int{}, refused: map[string]int{}}
}

func (r *recorder) Dialed(peer string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.dials[peer+" failed"]++
	} else {
		r.dials[peer+" ok"]++
	}
}

func (r *recorder) Sent(peer string, n int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent[peer] += n
	if err != nil {
		r.failures[peer]++
	}
}

func (r *recorder) Ended(peer string) { r.mu.Lock(); r.ended[peer]++; r.mu.Unlock() }
func (r *recorder) Received(n int)    { r.mu.Lock(); r.received += n; r.mu.Unlock() }
func (r *recorder) Refused(reason string) {
	r.mu.Lock()
	r.refused[reason]++
	r.mu.Unlock()
}

func (r *recorder) Incompatible(peer, theirs string) {
	r.mu.Lock()
	r.strange = append(r.strange, peer+" "+theirs)
	r.mu.Unlock()
}

func (r *recorder) OtherPeers(peer, theirs, ours string) {
	r.mu.Lock()
	r.peers = append(r.peers, peer+" "+theirs+" "+ours)
	r.mu.Unlock()
}

func (r *recorder) PeerSettings(peer, theirs string) {
	r.mu.Lock()
	r.settings = append(r.settings, peer+" "+theirs)
	r.mu.Unlock()
}

func (r *recorder) CutOff(peer string, replica uint64, reason string, ours bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	line := fmt.Sprintf("%s %x %v", peer, replica, ours)
	switch reason {
	case CutLostLog:
		r.lost = append(r.lost, line)
	case CutRemoved:
		r.removed = append(r.removed, line)
	case CutOtherReplica:
		r.other = append(r.other, line)
	}
}

// read runs f under the recorder's lock.
func (r *recorder) read(f func()) { r.mu.Lock(); defer r.mu.Unlock(); f() }

// TestObserverCounts: the observer hears each dial and how it went, the
// bytes of each frame on both sides, the peer ending a connection (and not
// the owner closing one), a failed send, and each refused connection with
// its reason.
func TestObserverCounts(t *testing.T) {
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	gone.Close()

	sent := newRecorder()
	s := Factory{Observer: sent}.Create(dbconfig.NodeHostConfig{RaftAddress: "127.0.0.1:1"}, nil, nil)
	if _, err := s.GetConnection(context.Background(), goneAddr); err == nil {
		t.Fatal("dialled an address nobody listens on")
	}

	got := newRecorder()
	r1 := newReceiver()
	b1 := Factory{Observer: got}.Create(dbconfig.NodeHostConfig{RaftAddress: "127.0.0.1:0"}, r1.batch, r1.chunk).(*TCP)
	if err := b1.Start(); err != nil {
		t.Fatal(err)
	}
	addr := b1.Addr().String()
	conn, err := s.GetConnection(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	batch := sampleBatch(1, 100)
	if err := conn.SendMessageBatch(batch); err != nil {
		t.Fatal(err)
	}
	r1.wait(t, 1)
	frameBytes := frameStart + batch.Size()

	b1.Close() // the peer ends the connection
	r2 := newReceiver()
	b2 := Factory{Observer: got}.Create(dbconfig.NodeHostConfig{RaftAddress: addr}, r2.batch, r2.chunk).(*TCP)
	if err := b2.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the close reaches the sender
	if err := conn.SendMessageBatch(batch); err != nil {
		t.Fatal(err)
	}
	r2.wait(t, 1)
	conn.Close() // the owner's close is not the peer's doing

	payload, err := batch.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	badSum := frame(methodBatch, payload)
	badSum[len(badSum)-1] ^= 1
	for _, f := range [][]byte{{0xAF, 0x7D}, badSum} { // malformed, then a bad checksum
		raw := dialRaw(t, addr, f)
		_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = raw.Read(make([]byte, 1)) // returns when the receiver closes it
		raw.Close()
	}
	b2.Close()
	time.Sleep(200 * time.Millisecond)
	if err := conn.SendMessageBatch(batch); err == nil {
		t.Fatal("a send on a closed connection succeeded")
	}

	sent.read(func() {
		if sent.dials[goneAddr+" failed"] != 1 || sent.dials[addr+" ok"] != 2 {
			t.Errorf("dials %v, want one failed to %s and two (the first, the redial) to %s", sent.dials, goneAddr, addr)
		}
		if sent.sent[addr] < 2*frameBytes {
			t.Errorf("%d bytes counted as sent to %s, want at least two frames of %d", sent.sent[addr], addr, frameBytes)
		}
		if sent.ended[addr] != 1 {
			t.Errorf("the peer ended %d connections, want 1 (the owner's close is not counted)", sent.ended[addr])
		}
		if sent.failures[addr] != 1 {
			t.Errorf("%d send failures to %s, want 1", sent.failures[addr], addr)
		}
	})
	got.read(func() {
		if got.received != 2*frameBytes {
			t.Errorf("%d bytes counted as received, want two frames of %d", got.received, frameBytes)
		}
		if got.refused["malformed"] != 1 || got.refused["checksum"] != 1 {
			t.Errorf("refused %v, want one malformed and one checksum", got.refused)
		}
	})
}

// TestHelloKeepsOtherVersionsOut: a peer whose Compatibility differs, or
// that sends no hello (a build before it, Dragonboat's own transport), is
// refused before anything reaches Dragonboat, and the observer hears who
// it was and what it runs; a peer of the same versions is heard. The hello
// is the first frame of every connection, in the documented layout.
func TestHelloKeepsOtherVersionsOut(t *testing.T) {
	const ours, theirs = "rules 2, entries 1, snapshots 3", "rules 3, entries 1, snapshots 3"
	got := newRecorder()
	r := newReceiver()
	addr := startWith(t, Factory{Observer: got, Compatibility: ours}, dbconfig.NodeHostConfig{}, r).Addr().String()

	send := func(compat, from string) raftio.IConnection {
		s := Factory{Compatibility: compat}.Create(dbconfig.NodeHostConfig{RaftAddress: from}, nil, nil)
		conn, err := s.GetConnection(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(conn.Close)
		// A refused peer's send may fail: the receiver closes at once.
		if err := conn.SendMessageBatch(sampleBatch(1, 10)); err != nil && compat == ours {
			t.Fatal(err)
		}
		return conn
	}
	send(theirs, "10.0.0.3:7001")
	sc, err := Factory{Compatibility: theirs}.Create(dbconfig.NodeHostConfig{RaftAddress: "10.0.0.3:7001"}, nil, nil).
		GetSnapshotConnection(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = sc.SendChunk(pb.Chunk{ShardID: 1, Data: []byte("state")})
	sc.Close()
	bare := dialBare(t, addr, frame(methodBatch, mustMarshal(t, sampleBatch(2, 10))))
	_ = bare.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := bare.Read(make([]byte, 1)); err == nil {
		t.Fatal("a peer without a hello was answered")
	}
	send(ours, "10.0.0.2:7001")
	r.wait(t, 1)
	time.Sleep(100 * time.Millisecond) // anything refused would have arrived by now
	if n := r.count(); n != 1 {
		t.Fatalf("%d frames reached Dragonboat, want only the one from the peer of the same versions", n)
	}
	got.read(func() {
		// The refused message connection may have been dialled twice: a
		// send after the receiver closed it redials.
		if v := got.refused["versions"]; v < 2 || v > 3 || got.refused["no hello"] != 1 {
			t.Errorf("refused %v, want two or three for their versions (messages, snapshot) and one without a hello", got.refused)
		}
		want := map[string]bool{"10.0.0.3:7001 " + theirs: true, "127.0.0.1 ": true} // no hello: the host alone
		for _, s := range got.strange {
			if !want[s] {
				t.Errorf("told of an incompatible peer %q, want one of %v", s, want)
			}
		}
		if len(got.strange) != got.refused["versions"]+got.refused["no hello"] {
			t.Errorf("told of %d incompatible peers, want one per refusal %v: %q", len(got.strange), got.refused, got.strange)
		}
	})

	// The writer's hello, byte for byte.
	client, server := net.Pipe()
	go func() {
		w := frameWriter{conn: client}
		hello := helloPayload(hello{compat: ours, addr: "10.0.0.1:7001"})
		_, _ = w.writeFrame(methodHello, len(hello), func(b []byte) []byte { return append(b[:0], hello...) })
	}()
	payload := append([]byte{1, byte(len(ours))}, ours...)
	payload = append(append(payload, byte(len("10.0.0.1:7001"))), "10.0.0.1:7001"...)
	want := frame(methodHello, payload)
	gotHello := make([]byte, len(want))
	if _, err := io.ReadFull(server, gotHello); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotHello, want) {
		t.Fatalf("hello\n%x\nwant\n%x", gotHello, want)
	}
	for _, bad := range [][]byte{nil, {2}, payload[:5], append(append([]byte{}, payload...), 5, 'x')} {
		if _, ok := parseHello(bad); ok {
			t.Errorf("parsed a malformed hello %x", bad)
		}
	}
	// A later build's fields after the address are skipped, so that it
	// can send them to this one.
	later := append(append([]byte{}, payload...), 0, 3, 'a', 'b', 'c')
	if h, ok := parseHello(later); !ok || h.compat != ours || h.addr != "10.0.0.1:7001" {
		t.Errorf("a hello with two more fields: %+v %v, want ours and the address", h, ok)
	}
}

func mustMarshal(t *testing.T, b pb.MessageBatch) []byte {
	t.Helper()
	p, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// refusedDial starts a receiver made by receiving, dials it from a
// dialler made by dialling (whose observer is heard), and waits until
// heard says (read under heard's lock) that the dialler heard the
// refusal.
func refusedDial(t *testing.T, receiving, dialling Factory, heard func() bool) (*receiver, string, *TCP, raftio.IConnection) {
	t.Helper()
	r := newReceiver()
	addr := startWith(t, receiving, dbconfig.NodeHostConfig{}, r).Addr().String()
	s := dialling.Create(dbconfig.NodeHostConfig{RaftAddress: "127.0.0.1:1"}, nil, nil).(*TCP)
	conn, err := s.GetConnection(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	rec := dialling.Observer.(*recorder)
	eventually(t, "the dialler hears the refusal", func() bool {
		ok := false
		rec.read(func() { ok = heard() })
		return ok
	})
	return r, addr, s, conn
}

// TestRefusedDiallerHoldsOff: a receiver that refuses a dialler's versions
// answers with its own hello; the dialler tells its observer the peer's
// versions and dials it no more for refusedHoldOff (without it, a cut-off
// member is dialled at every message, each a TLS handshake under mutual
// TLS).
func TestRefusedDiallerHoldsOff(t *testing.T) {
	const ours, theirs = "rules 2, entries 1, snapshots 3", "rules 3, entries 1, snapshots 3"
	got, heard := newRecorder(), newRecorder()
	r, addr, s, conn := refusedDial(t, Factory{Observer: got, Compatibility: theirs}, Factory{Observer: heard, Compatibility: ours},
		func() bool { return len(heard.strange) > 0 })
	heard.read(func() {
		if heard.strange[0] != addr+" "+theirs {
			t.Errorf("the dialler heard %q, want %q", heard.strange[0], addr+" "+theirs)
		}
	})
	if err := conn.SendMessageBatch(sampleBatch(1, 10)); !errors.Is(err, errRefused) || !HeldOff("send batch failed ("+err.Error()+")") {
		t.Fatalf("a send within the hold-off: %v, want %v without a dial, which HeldOff knows", err, errRefused)
	}
	if _, err := s.GetSnapshotConnection(context.Background(), addr); !errors.Is(err, errRefused) {
		t.Fatalf("a snapshot dial within the hold-off: %v, want %v", err, errRefused)
	}
	got.read(func() {
		if got.refused["versions"] != 1 {
			t.Errorf("the receiver refused %v, want one connection: the dialler held off", got.refused)
		}
	})
	s.mu.Lock()
	s.refused[addr] = refusal{theirs: theirs, until: time.Now()} // the hold-off ends
	s.mu.Unlock()
	c2, err := s.GetConnection(context.Background(), addr)
	if err != nil {
		t.Fatalf("a dial after the hold-off: %v", err)
	}
	c2.Close()
	if n := r.count(); n != 0 {
		t.Fatalf("%d frames reached Dragonboat from a peer of other versions", n)
	}
}

// eventually polls cond every 10 ms for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 10 s", what)
}

// memoryBook is a Book in memory; Record fails while fail is set.
type memoryBook struct {
	mu    sync.Mutex
	logs  map[uint64]uint64
	addrs map[string]uint64 // the membership: Raft address → replica id
	fail  bool
	gen   uint64 // Generation - 1
}

func (b *memoryBook) Generation() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gen + 1
}

func (b *memoryBook) Member(replica uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.addrs {
		if r == replica {
			return true
		}
	}
	return false
}

func (b *memoryBook) At(addr string) (Identity, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.addrs[addr]
	if !ok {
		return Identity{}, false
	}
	return Identity{Replica: r, Log: b.logs[r]}, true
}

func (b *memoryBook) Known(replica uint64) (uint64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	log, ok := b.logs[replica]
	return log, ok
}

func (b *memoryBook) Record(id Identity) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if had, ok := b.logs[id.Replica]; ok && had != id.Log {
		return errors.New("another log")
	}
	if b.fail {
		return errors.New("disk full")
	}
	b.logs[id.Replica] = id.Log
	return nil
}

// TestMemberThatLostItsLogIsRefused: a peer that took part (anything but a
// pre-vote) is booked under its log before its message reaches
// Dragonboat; the same replica id under another log (its data directory
// wiped) is then refused at its hello, told why, held off both ways, and
// none of its messages arrive. A peer that only pre-voted is not booked,
// a hello without an identity (an older build) is taken, and a message
// that could not be booked is not delivered.
func TestMemberThatLostItsLogIsRefused(t *testing.T) {
	book := &memoryBook{logs: map[uint64]uint64{}, addrs: map[string]uint64{}}
	got := newRecorder()
	r := newReceiver()
	recv := startWith(t, Factory{Observer: got, Book: book, Self: Identity{Replica: 0xa, Log: 1}}, dbconfig.NodeHostConfig{}, r)
	addr := recv.Addr().String()

	type member struct {
		heard *recorder
		tr    *TCP
		conn  raftio.IConnection
	}
	dial := func(from string, id Identity) member {
		t.Helper()
		m := member{heard: newRecorder()}
		m.tr = Factory{Observer: m.heard, Self: id}.Create(dbconfig.NodeHostConfig{RaftAddress: from}, nil, nil).(*TCP)
		var err error
		if m.conn, err = m.tr.GetConnection(context.Background(), addr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.conn.Close)
		return m
	}
	typed := func(k pb.MessageType) pb.MessageBatch {
		b := sampleBatch(1, 10)
		b.Requests[0].Type = k
		return b
	}
	send := func(m member, b pb.MessageBatch) {
		t.Helper()
		if err := m.conn.SendMessageBatch(b); err != nil {
			t.Fatal(err)
		}
	}

	// Pre-votes book nothing: a member that only pre-voted may be wiped.
	early := dial("10.0.0.2:7001", Identity{Replica: 0xb, Log: 100})
	send(early, typed(pb.RequestPreVote))
	r.wait(t, 1)
	if _, ok := book.Known(0xb); ok {
		t.Fatal("a pre-vote booked its sender")
	}
	again := dial("10.0.0.2:7001", Identity{Replica: 0xb, Log: 101})
	send(again, typed(pb.RequestVote))
	r.wait(t, 1)
	if log, ok := book.Known(0xb); !ok || log != 101 {
		t.Fatalf("after a vote the book holds %x %v, want log 101", log, ok)
	}

	// Wiped: the same replica under another log.
	wiped := dial("10.0.0.2:7001", Identity{Replica: 0xb, Log: 102})
	eventually(t, "the wiped member hears why", func() bool {
		n := 0
		wiped.heard.read(func() { n = len(wiped.heard.lost) })
		return n > 0
	})
	wiped.heard.read(func() {
		if want := addr + " b true"; wiped.heard.lost[0] != want {
			t.Errorf("the wiped member heard %q, want %q", wiped.heard.lost[0], want)
		}
	})
	if err := wiped.conn.SendMessageBatch(typed(pb.RequestVoteResp)); !errors.Is(err, errLostLog) || !HeldOff(err.Error()) {
		t.Errorf("a send within the hold-off: %v, want %v", err, errLostLog)
	}
	if _, err := recv.GetConnection(context.Background(), "10.0.0.2:7001"); !errors.Is(err, errLostLog) {
		t.Errorf("the refusing member dialled the wiped one: %v, want %v", err, errLostLog)
	}
	got.read(func() {
		if got.refused["lost log"] != 1 || len(got.lost) != 1 || got.lost[0] != "10.0.0.2:7001 b false" {
			t.Errorf("refused %v, told of %q; want one lost log, 10.0.0.2:7001 b false", got.refused, got.lost)
		}
	})

	// Dialled first by a peer that knows it: the wiped member refuses the
	// connection itself, since what the peer sends (a leader's commit
	// index) does not fit its empty log, and both hear why.
	wipedHeard, wipedGot := newRecorder(), newReceiver()
	listening := startWith(t, Factory{Observer: wipedHeard, Self: Identity{Replica: 0xb, Log: 103}}, dbconfig.NodeHostConfig{}, wipedGot)
	wipedAddr := listening.Addr().String()
	book.mu.Lock()
	book.addrs[wipedAddr] = 0xb
	book.mu.Unlock()
	toWiped, err := recv.GetConnection(context.Background(), wipedAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer toWiped.Close()
	_ = toWiped.SendMessageBatch(typed(pb.Heartbeat))
	eventually(t, "the peer hears that the member it dialled lost its log", func() bool {
		n := 0
		got.read(func() { n = len(got.lost) })
		return n == 2
	})
	got.read(func() {
		if want := wipedAddr + " b false"; got.lost[1] != want {
			t.Errorf("the peer heard %q, want %q", got.lost[1], want)
		}
	})
	wipedHeard.read(func() {
		if wipedHeard.refused["lost log"] != 1 || len(wipedHeard.lost) != 1 || !strings.HasSuffix(wipedHeard.lost[0], " b true") {
			t.Errorf("the wiped member refused %v and heard %q, want one lost log, its own", wipedHeard.refused, wipedHeard.lost)
		}
	})
	if n := wipedGot.count(); n != 0 {
		t.Errorf("%d frames reached the wiped member's Dragonboat", n)
	}
	if err := toWiped.SendMessageBatch(typed(pb.Heartbeat)); !errors.Is(err, errLostLog) {
		t.Errorf("a send to the wiped member within the hold-off: %v, want %v", err, errLostLog)
	}

	// A member removed from the cluster (log 0) is told so.
	book.mu.Lock()
	book.logs[0xd] = 0
	book.mu.Unlock()
	removed := dial("10.0.0.5:7001", Identity{Replica: 0xd, Log: 7})
	eventually(t, "the removed member hears it", func() bool {
		n := 0
		removed.heard.read(func() { n = len(removed.heard.removed) })
		return n > 0
	})
	if err := removed.conn.SendMessageBatch(typed(pb.RequestPreVote)); !errors.Is(err, errRemoved) {
		t.Errorf("a removed member's send within the hold-off: %v, want %v", err, errRemoved)
	}
	removed.heard.read(func() {
		if want := addr + " d true"; removed.heard.removed[0] != want {
			t.Errorf("the removed member heard %q, want %q", removed.heard.removed[0], want)
		}
	})
	got.read(func() {
		if got.refused["removed"] != 1 || len(got.removed) != 1 || got.removed[0] != "10.0.0.5:7001 d false" {
			t.Errorf("refused %v, told of %q; want one removed, 10.0.0.5:7001 d false", got.refused, got.removed)
		}
	})
	book.mu.Lock()
	delete(book.logs, 0xd)
	book.mu.Unlock()

	// An older build's hello carries no identity: taken, booking nothing.
	old := dial("10.0.0.3:7001", Identity{})
	send(old, typed(pb.Heartbeat))
	r.wait(t, 1)

	// A message that could not be booked does not arrive.
	book.mu.Lock()
	book.fail = true
	book.mu.Unlock()
	unbooked := dial("10.0.0.4:7001", Identity{Replica: 0xc, Log: 5})
	_ = unbooked.conn.SendMessageBatch(typed(pb.ReplicateResp))
	eventually(t, "the unbooked connection is refused", func() bool {
		n := 0
		got.read(func() { n = got.refused["unbooked"] })
		return n == 1
	})
	time.Sleep(100 * time.Millisecond) // anything refused would have arrived by now
	if n := r.count(); n != 3 {
		t.Fatalf("%d batches reached Dragonboat, want 3: the pre-vote, the vote and the older build's heartbeat", n)
	}
	if n := wipedGot.count(); n != 0 {
		t.Errorf("%d frames reached the wiped member's Dragonboat", n)
	}
	if len(book.logs) != 1 {
		t.Errorf("the book holds %v, want only replica b", book.logs)
	}

	// The identity and the refusal, byte for byte, and back.
	h := hello{compat: "c", addr: "a:1", self: Identity{Replica: 0x0102, Log: 0x0304}, refusal: refusedLostLog}
	want := []byte{1, 1, 'c', 3, 'a', ':', '1', 16, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 3, 4, 8}
	want = append(want, refusedLostLog...)
	if b := helloPayload(h); !bytes.Equal(b, want) {
		t.Errorf("hello\n%x\nwant\n%x", b, want)
	}
	if back, ok := parseHello(want); !ok || back != h {
		t.Errorf("parsed %+v %v, want %+v", back, ok, h)
	}
	h.refusal, h.expect = "", Identity{Replica: 5, Log: 6}
	if back, ok := parseHello(helloPayload(h)); !ok || back != h {
		t.Errorf("parsed %+v %v, want %+v", back, ok, h)
	}
	if _, ok := parseHello(append([]byte{1, 1, 'c', 3, 'a', ':', '1', 3}, "abc"...)); ok {
		t.Error("parsed an identity of 3 bytes")
	}
}

// TestOtherReplicaIsRefusedOnlyByANonMember: a dialler whose membership has
// another replica at the address is refused, and both hear why, when the
// member there is not one in its own view (it runs under another
// incarnation than the one added); a member that is one in its own view
// takes the dialler, whose view is stale.
func TestOtherReplicaIsRefusedOnlyByANonMember(t *testing.T) {
	for _, member := range []bool{false, true} {
		heard, got := newRecorder(), newReceiver()
		own := &memoryBook{logs: map[uint64]uint64{}, addrs: map[string]uint64{}}
		tr := startWith(t, Factory{Observer: heard, Self: Identity{Replica: 0xe, Log: 1}, Book: own}, dbconfig.NodeHostConfig{}, got)
		addr := tr.Addr().String()
		if member {
			own.addrs[addr] = 0xe
		}
		dialling := newRecorder()
		stale := &memoryBook{logs: map[uint64]uint64{}, addrs: map[string]uint64{addr: 0xf}}
		d := Factory{Observer: dialling, Self: Identity{Replica: 0xa, Log: 2}, Book: stale}.
			Create(dbconfig.NodeHostConfig{RaftAddress: "10.0.0.9:7001"}, nil, nil).(*TCP)
		conn, err := d.GetConnection(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SendMessageBatch(sampleBatch(1, 10))
		if member {
			got.wait(t, 1)
			heard.read(func() {
				if len(heard.other) != 0 {
					t.Errorf("a member in its own view refused a stale dialler: %q", heard.other)
				}
			})
		} else {
			eventually(t, "both hear of the other replica", func() bool {
				n, m := 0, 0
				heard.read(func() { n = len(heard.other) })
				dialling.read(func() { m = len(dialling.other) })
				return n == 1 && m == 1
			})
			heard.read(func() {
				if want := "10.0.0.9:7001 f true"; heard.other[0] != want || heard.refused["other replica"] != 1 {
					t.Errorf("the member heard %q, refused %v; want %q", heard.other, heard.refused, want)
				}
			})
			dialling.read(func() {
				if want := addr + " f false"; dialling.other[0] != want {
					t.Errorf("the dialler heard %q, want %q", dialling.other[0], want)
				}
			})
			if n := got.count(); n != 0 {
				t.Errorf("%d frames from a dialler that expected another replica", n)
			}
		}
		conn.Close()
	}
}

// TestRemovedWhileConnectedIsCut: a member removed while its connection is
// open (its hello was taken) is refused at its next frame once the book
// changed, not when it next dials, which may be never.
func TestRemovedWhileConnectedIsCut(t *testing.T) {
	book := &memoryBook{logs: map[uint64]uint64{0xd: 7}, addrs: map[string]uint64{}}
	got, r := newRecorder(), newReceiver()
	addr := startWith(t, Factory{Observer: got, Book: book, Self: Identity{Replica: 0xa, Log: 1}}, dbconfig.NodeHostConfig{}, r).Addr().String()
	heard := newRecorder()
	conn, err := Factory{Observer: heard, Self: Identity{Replica: 0xd, Log: 7}}.
		Create(dbconfig.NodeHostConfig{RaftAddress: "10.0.0.5:7001"}, nil, nil).GetConnection(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SendMessageBatch(sampleBatch(1, 10)); err != nil {
		t.Fatal(err)
	}
	r.wait(t, 1)
	book.mu.Lock()
	book.logs[0xd], book.gen = 0, book.gen+1
	book.mu.Unlock()
	_ = conn.SendMessageBatch(sampleBatch(2, 10))
	eventually(t, "the removed member hears it on its open connection", func() bool {
		n := 0
		heard.read(func() { n = len(heard.removed) })
		return n == 1
	})
	time.Sleep(100 * time.Millisecond)
	if n := r.count(); n != 1 {
		t.Errorf("%d batches delivered, want only the one before the removal", n)
	}
}

// TestOtherPeersAreRefused: a dialler that bootstrapped the cluster with
// other peers is refused before anything of it reaches Dragonboat, both
// sides hear both peers fields, the dialler holds off, and peers fields
// that agree, or that one side lacks (a member that joined, or a build
// before the field), are taken; a digest stands for peers too long.
func TestOtherPeersAreRefused(t *testing.T) {
	const ours, wrong = "a=127.0.0.1:1,b=127.0.0.1:2,c=127.0.0.1:3", "a=127.0.0.1:1,b=127.0.0.1:9,c=127.0.0.1:3"
	got, heard := newRecorder(), newRecorder()
	r, addr, _, conn := refusedDial(t, Factory{Observer: got, Peers: ours}, Factory{Observer: heard, Peers: wrong},
		func() bool { return len(heard.peers) > 0 })
	heard.read(func() {
		if want := addr + " " + ours + " " + wrong; heard.peers[0] != want {
			t.Errorf("the dialler heard %q, want %q", heard.peers[0], want)
		}
	})
	got.read(func() {
		if got.refused[refusedPeers] != 1 || len(got.peers) != 1 || got.peers[0] != "127.0.0.1:1 "+wrong+" "+ours {
			t.Errorf("the receiver refused %v and heard %q, want one refusal for peers", got.refused, got.peers)
		}
	})
	if err := conn.SendMessageBatch(sampleBatch(1, 10)); !errors.Is(err, errOtherPeers) || !HeldOff(err.Error()) {
		t.Fatalf("a send within the hold-off: %v, want %v", err, errOtherPeers)
	}
	// The same peers, or none on one side: taken.
	for _, p := range []string{ours, ""} {
		c := Factory{Peers: p}.Create(dbconfig.NodeHostConfig{RaftAddress: "127.0.0.1:1"}, nil, nil)
		conn, err := c.GetConnection(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.SendMessageBatch(sampleBatch(1, 10)); err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	r.wait(t, 2)
	if n := r.count(); n != 2 {
		t.Errorf("%d batches reached Dragonboat, want the two of the agreeing diallers", n)
	}

	// Peers too long for a hello travel as their digest, which agrees
	// with the peers whole and with itself.
	long := CanonicalPeers(map[string]string{"a": strings.Repeat("h", 300) + ":1", "b": strings.Repeat("i", 300) + ":2",
		"c": strings.Repeat("j", 300) + ":3", "d": strings.Repeat("k", 300) + ":4"})
	tcp := Factory{Peers: long}.Create(dbconfig.NodeHostConfig{RaftAddress: "127.0.0.1:1"}, nil, nil).(*TCP)
	if !strings.HasPrefix(tcp.peers, peersDigest) || len(tcp.hello) > maxHello {
		t.Errorf("peers of %d bytes: the hello carries %q, %d bytes", len(long), tcp.peers, len(tcp.hello))
	}
	if !samePeers(tcp.peers, long) || !samePeers(long, tcp.peers) || samePeers(tcp.peers, ours) || ParsePeers(tcp.peers) != nil {
		t.Error("a digest does not stand for its peers")
	}
	if m := ParsePeers(ours); len(m) != 3 || m["b"] != "127.0.0.1:2" {
		t.Errorf("ParsePeers(%q) = %v", ours, m)
	}
	h := hello{compat: "c", addr: "a:1", peers: ours}
	if back, ok := parseHello(helloPayload(h)); !ok || back != h {
		t.Errorf("parsed %+v %v, want %+v", back, ok, h)
	}
}

// TestPeerSettingsAreToldNotRefused: a dialler whose hello gives other
// settings (its consensus timing) is taken, and the receiver's observer
// is told them at each connection; a dialler that gives none (a build
// before them) is taken and nothing is told. A hello with settings keeps
// the earlier fields where a build before them reads them, the settings
// being one more field of the same shape, which that build skips, and it
// stays within maxHello with the longest peers.
func TestPeerSettingsAreToldNotRefused(t *testing.T) {
	const ours, theirs = "election_timeout_ms=300", "election_timeout_ms=5000"
	got := newRecorder()
	r := newReceiver()
	addr := startWith(t, Factory{Observer: got, Settings: ours}, dbconfig.NodeHostConfig{}, r).Addr().String()
	for i, f := range []Factory{{Settings: theirs}, {Settings: theirs}, {}} {
		conn, err := f.Create(dbconfig.NodeHostConfig{RaftAddress: "127.0.0.1:1"}, nil, nil).GetConnection(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.SendMessageBatch(sampleBatch(i, 10)); err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	r.wait(t, 3)
	got.read(func() {
		if len(got.refused) != 0 {
			t.Errorf("refused %v: other settings are no reason to refuse a peer", got.refused)
		}
		if len(got.settings) != 2 || got.settings[0] != "127.0.0.1:1 "+theirs || got.settings[1] != got.settings[0] {
			t.Errorf("told %q, want the dialler's settings at each of its two connections, nothing for the one without", got.settings)
		}
	})

	h := hello{compat: "c", addr: "a:1", settings: theirs}
	payload := helloPayload(h)
	if back, ok := parseHello(payload); !ok || back != h {
		t.Errorf("parsed %+v %v, want %+v", back, ok, h)
	}
	// What a build before the settings reads: the first six fields, and a
	// last whole field it skips.
	b := payload[1:]
	for range 6 {
		n, k := binary.Uvarint(b)
		b = b[k+int(n):]
	}
	if n, k := binary.Uvarint(b); k <= 0 || string(b[k:]) != theirs || int(n) != len(theirs) {
		t.Errorf("after six fields the hello has %q, want one field of the settings", b)
	}
	long := CanonicalPeers(map[string]string{"a": strings.Repeat("h", 300) + ":1", "b": strings.Repeat("i", 300) + ":2"})
	tcp := Factory{Peers: long, Settings: ours, Compatibility: "rules 4, entries 1, snapshots 5, client keys 2, runtime 2, shards 1"}.
		Create(dbconfig.NodeHostConfig{RaftAddress: "127.0.0.1:1"}, nil, nil).(*TCP)
	largest := helloPayload(hello{compat: tcp.compat, addr: "127.0.0.1:1", self: Identity{1, 1}, refusal: refusedKnownOtherwise,
		expect: Identity{1, 1}, peers: tcp.peers, settings: tcp.settings})
	if len(largest) > maxHello {
		t.Errorf("the largest hello is %d bytes, over maxHello (%d), which a build before the settings refuses", len(largest), maxHello)
	}
}
