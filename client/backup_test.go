package client_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
	pb "github.com/lockstepd/lockstep/rpc/gen/lockstep/v1"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// backupMember answers Backup with data, or with a refusal.
type backupMember struct {
	member
	data    []byte
	refusal error
}

func (m backupMember) Backup(_ context.Context, _ *connect.Request[pb.BackupRequest], s *connect.ServerStream[pb.BackupChunk]) error {
	if m.refusal != nil {
		return m.refusal
	}
	return s.Send(&pb.BackupChunk{Data: m.data})
}

// TestBackupSaysWhatTheMemberThatAnsweredSaid: with the members that are
// down listed after the one that survived, a refused backup reports the
// survivor's refusal (which names --stale), not the last endpoint's
// connection error; and a member that answers is used.
func TestBackupSaysWhatTheMemberThatAnsweredSaid(t *testing.T) {
	serve := func(m backupMember) string {
		mux := http.NewServeMux()
		mux.Handle(lockstepv1connect.NewClusterServiceHandler(m))
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	l.Close()
	refused := serve(backupMember{refusal: connect.NewError(connect.CodeUnavailable,
		errors.New("no quorum (a member without a quorum can back up what it applied: --stale)"))})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c, err := client.New([]string{refused, down}, client.WithRetryTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	err = c.Backup(ctx, &bytes.Buffer{}, false)
	if err == nil || !strings.Contains(err.Error(), "--stale") {
		t.Fatalf("backup with the survivor first and a member down after: %v, want the survivor's refusal naming --stale", err)
	}

	good := serve(backupMember{data: []byte("archive")})
	c2, err := client.New([]string{down, good}, client.WithRetryTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	var out bytes.Buffer
	if err := c2.Backup(ctx, &out, false); err != nil || out.String() != "archive" {
		t.Fatalf("backup past a member down: %q %v", out.String(), err)
	}
}
