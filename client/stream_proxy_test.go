package client_test

import (
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// twinOf is the unary twin's procedure and the message of a session
// stream's request: what the proxy's faults match on.
func twinOf(r *pb.StreamRequest) (string, proto.Message) {
	switch x := r.Request.(type) {
	case *pb.StreamRequest_KeepAlive:
		return lockstepv1connect.SessionServiceKeepAliveProcedure, x.KeepAlive
	case *pb.StreamRequest_CloseSession:
		return lockstepv1connect.SessionServiceCloseProcedure, x.CloseSession
	case *pb.StreamRequest_Abandon:
		return lockstepv1connect.SessionServiceAbandonProcedure, x.Abandon
	case *pb.StreamRequest_GetSession:
		return lockstepv1connect.SessionServiceGetProcedure, x.GetSession
	case *pb.StreamRequest_AcquireLock:
		return lockstepv1connect.LockServiceAcquireProcedure, x.AcquireLock
	case *pb.StreamRequest_ReleaseLock:
		return lockstepv1connect.LockServiceReleaseProcedure, x.ReleaseLock
	case *pb.StreamRequest_AcquireSemaphore:
		return lockstepv1connect.SemaphoreServiceAcquireProcedure, x.AcquireSemaphore
	case *pb.StreamRequest_ReleaseSemaphore:
		return lockstepv1connect.SemaphoreServiceReleaseProcedure, x.ReleaseSemaphore
	case *pb.StreamRequest_AcquireRwlock:
		return lockstepv1connect.RWLockServiceAcquireProcedure, x.AcquireRwlock
	case *pb.StreamRequest_ReleaseRwlock:
		return lockstepv1connect.RWLockServiceReleaseProcedure, x.ReleaseRwlock
	case *pb.StreamRequest_WaitBarrier:
		return lockstepv1connect.BarrierServiceWaitProcedure, x.WaitBarrier
	case *pb.StreamRequest_Campaign:
		return lockstepv1connect.ElectionServiceCampaignProcedure, x.Campaign
	case *pb.StreamRequest_Proclaim:
		return lockstepv1connect.ElectionServiceProclaimProcedure, x.Proclaim
	case *pb.StreamRequest_Resign:
		return lockstepv1connect.ElectionServiceResignProcedure, x.Resign
	}
	return "", nil
}

// requestsOf decodes a frame's message: a Multiplex message's requests, or
// a session stream's one request.
func requestsOf(multi bool, msg []byte) []*pb.StreamRequest {
	if multi {
		m := &pb.MultiplexRequest{}
		if proto.Unmarshal(msg, m) != nil {
			return nil
		}
		return m.Requests
	}
	req := &pb.StreamRequest{}
	if proto.Unmarshal(msg, req) != nil {
		return nil
	}
	return []*pb.StreamRequest{req}
}

// frameOf encodes reqs as one uncompressed Connect streaming frame.
func frameOf(multi bool, reqs []*pb.StreamRequest) []byte {
	var msg []byte
	if multi {
		msg, _ = proto.Marshal(&pb.MultiplexRequest{Requests: reqs})
	} else {
		msg, _ = proto.Marshal(reqs[0])
	}
	frame := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	return append(frame, msg...)
}

// serveStream forwards a session stream or a Multiplex stream frame by
// frame (Connect streaming: a flag byte, a 4-byte length, the message),
// playing the faults on each request (a Multiplex frame's one by one, the
// rest forwarded in a frame of their own): while stuck nothing is
// forwarded or delivered, a dropped keepalive is never forwarded, a held
// request is forwarded on release while the later ones go on. The upstream stream outlives its caller
// while the proxy is stuck (until resume) or holds one of its requests.
func (p *faultProxy) serveStream(w http.ResponseWriter, r *http.Request) {
	multi := strings.HasSuffix(r.URL.Path, "/Multiplex")
	p.mu.Lock()
	p.opened = append(p.opened, r.URL.Path)
	p.mu.Unlock()
	p.streamsOpen.Add(1)
	defer p.streamsOpen.Add(-1)
	if p.stuck.Load() {
		p.hang()
		return
	}
	upCtx, upCancel := context.WithCancel(context.Background())
	var cut atomic.Bool // broken by breakAfter: deliver nothing more
	pr, pw := io.Pipe()
	var writeMu sync.Mutex
	write := func(frame []byte) {
		writeMu.Lock()
		defer writeMu.Unlock()
		_, _ = pw.Write(frame)
	}
	var holds sync.WaitGroup
	go func() {
		defer func() {
			holds.Wait() // held requests are delivered before the body ends
			_ = pw.Close()
		}()
		var head [5]byte
		for {
			if _, err := io.ReadFull(r.Body, head[:]); err != nil {
				return
			}
			frame := make([]byte, 5+binary.BigEndian.Uint32(head[1:]))
			copy(frame, head[:])
			if _, err := io.ReadFull(r.Body, frame[5:]); err != nil {
				return
			}
			reqs := requestsOf(multi, frame[5:])
			if p.stuck.Load() {
				continue // never arrives
			}
			var pass []*pb.StreamRequest
			for _, req := range reqs {
				path, m := twinOf(req)
				var body []byte
				if m != nil {
					body, _ = proto.Marshal(m)
				}
				if p.dropKeepalives.Load() && strings.HasSuffix(path, "/KeepAlive") {
					continue // never arrives
				}
				p.mu.Lock()
				hold := p.hold != nil && p.hold(path, body)
				breakNow := p.breakAfter != nil && p.breakAfter(path, body)
				p.seen = append(p.seen, "stream "+path)
				if m != nil {
					p.sent = append(p.sent, m)
				}
				p.mu.Unlock()
				if breakNow {
					// The server applies it; its answer cuts the stream
					// before it reaches the client.
					cut.Store(true)
				}
				if hold {
					p.holding.Add(1)
					holds.Add(1)
					held := frameOf(multi, []*pb.StreamRequest{req})
					go func() {
						defer holds.Done()
						select {
						case <-p.held:
							write(held)
						case <-p.closed:
						}
					}()
					continue
				}
				pass = append(pass, req)
			}
			switch {
			case len(pass) == len(reqs):
				write(frame)
			case len(pass) > 0:
				write(frameOf(multi, pass))
			}
		}
	}()
	// The caller's leaving reaches the server once nothing is held back,
	// unless the proxy is stuck: then only on resume.
	go func() {
		select {
		case <-r.Context().Done():
		case <-upCtx.Done():
			return
		}
		holds.Wait()
		if !p.stuck.Load() {
			upCancel()
			return
		}
		p.mu.Lock()
		p.orphans = append(p.orphans, upCancel)
		p.mu.Unlock()
	}()
	req, err := http.NewRequestWithContext(upCtx, r.Method, p.target+r.URL.RequestURI(), pr)
	if err != nil {
		p.t.Errorf("proxy: %v", err)
		upCancel()
		return
	}
	req.Header = r.Header.Clone()
	res, err := p.upH2.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	if p.stuck.Load() {
		p.hang()
		return
	}
	for k, vs := range res.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(res.StatusCode)
	f, _ := w.(http.Flusher)
	if f != nil {
		f.Flush()
	}
	p.relay(w, res.Body, func() {
		if cut.Load() {
			upCancel()
			panic(http.ErrAbortHandler) // the client's stream ends with a reset, no end frame
		}
	})
}
