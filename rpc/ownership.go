package rpc

import (
	"context"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/lockstepd/lockstep/core"
	"github.com/lockstepd/lockstep/rpc/gen/lockstep/v1/lockstepv1connect"
)

// Actions, as the ACL names them (docs/security.md).
const (
	ActionRead  = "read"  // status, list, watch, leader, check fence, cluster status
	ActionUse   = "use"   // acquire, release, renew, campaign, resign, wait, sessions
	ActionAdmin = "admin" // cluster membership and leadership
)

// actions maps each procedure to the action it needs; a procedure missing
// here needs none (health, which load balancers probe without credentials).
var actions = map[string]string{
	lockstepv1connect.SessionServiceCreateProcedure:     ActionUse,
	lockstepv1connect.SessionServiceKeepAliveProcedure:  ActionUse,
	lockstepv1connect.SessionServiceCloseProcedure:      ActionUse,
	lockstepv1connect.SessionServiceGetProcedure:        ActionUse,
	lockstepv1connect.SessionServiceListProcedure:       ActionUse,
	lockstepv1connect.SessionServiceCancelWaitProcedure: ActionUse,
	lockstepv1connect.SessionServiceAbandonProcedure:    ActionUse,
	// The session stream: authenticated once, when it opens; each request
	// on it then needs its own twin's action (session_stream.go).
	lockstepv1connect.SessionServiceStreamProcedure:    ActionUse,
	lockstepv1connect.SessionServiceMultiplexProcedure: ActionUse,

	lockstepv1connect.LockServiceAcquireProcedure:    ActionUse,
	lockstepv1connect.LockServiceReleaseProcedure:    ActionUse,
	lockstepv1connect.LockServiceRenewProcedure:      ActionUse,
	lockstepv1connect.LockServiceStatusProcedure:     ActionRead,
	lockstepv1connect.LockServiceListProcedure:       ActionRead,
	lockstepv1connect.LockServiceCheckFenceProcedure: ActionRead,

	lockstepv1connect.SemaphoreServiceAcquireProcedure: ActionUse,
	lockstepv1connect.SemaphoreServiceReleaseProcedure: ActionUse,
	lockstepv1connect.SemaphoreServiceStatusProcedure:  ActionRead,
	lockstepv1connect.RWLockServiceAcquireProcedure:    ActionUse,
	lockstepv1connect.RWLockServiceReleaseProcedure:    ActionUse,
	lockstepv1connect.RWLockServiceStatusProcedure:     ActionRead,

	lockstepv1connect.BarrierServiceWaitProcedure:   ActionUse,
	lockstepv1connect.BarrierServiceSetProcedure:    ActionUse,
	lockstepv1connect.BarrierServiceRemoveProcedure: ActionUse,
	lockstepv1connect.BarrierServiceStatusProcedure: ActionRead,

	lockstepv1connect.ElectionServiceCampaignProcedure: ActionUse,
	lockstepv1connect.ElectionServiceProclaimProcedure: ActionUse,
	lockstepv1connect.ElectionServiceResignProcedure:   ActionUse,
	lockstepv1connect.ElectionServiceLeaderProcedure:   ActionRead,
	lockstepv1connect.ElectionServiceObserveProcedure:  ActionRead,

	lockstepv1connect.WatchServiceWatchProcedure: ActionRead,

	lockstepv1connect.ClusterServiceStatusProcedure:             ActionRead,
	lockstepv1connect.ClusterServiceAddNodeProcedure:            ActionAdmin,
	lockstepv1connect.ClusterServiceRemoveNodeProcedure:         ActionAdmin,
	lockstepv1connect.ClusterServiceTransferLeadershipProcedure: ActionAdmin,
	lockstepv1connect.ClusterServiceBackupProcedure:             ActionAdmin,
}

// ActionOf is the action a procedure needs; "" for one anyone may call.
func ActionOf(procedure string) string { return actions[procedure] }

// Whole says whether a procedure concerns every name at once, so that it
// needs its action from a rule of prefix "", not on some name as other
// calls that name none do: Backup reads the whole state (every owner and
// value), and membership and leadership changes (every admin call) stop
// or move the service of every name. Admin on one prefix grants nothing.
func Whole(procedure string) bool {
	return actions[procedure] == ActionAdmin
}

// Filtered says whether a procedure shows many names (List, Watch): it is
// never refused by name, its answer leaves out what the caller may not read.
func Filtered(procedure string) bool {
	return procedure == lockstepv1connect.LockServiceListProcedure || procedure == lockstepv1connect.WatchServiceWatchProcedure
}

// NameOf is the name a request is about ("name", or a watch's target), and
// whether it names one at all (session and cluster requests do not).
func NameOf(msg any) (string, bool) {
	m, ok := msg.(proto.Message)
	if !ok {
		return "", false
	}
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	// A watch names its target in a oneof (name or prefix): the one set.
	// Reading "name" first answered "" for every prefix watch, which the
	// audit log then recorded as about nothing.
	var unset protoreflect.FieldDescriptor
	for _, field := range []protoreflect.Name{"name", "prefix"} {
		fd := fields.ByName(field)
		if fd == nil || fd.Kind() != protoreflect.StringKind {
			continue
		}
		if fd.ContainingOneof() != nil && !r.Has(fd) {
			unset = fd
			continue
		}
		return r.Get(fd).String(), true
	}
	if unset != nil {
		return "", true // a target oneof with nothing set
	}
	return "", false
}

// SessionIDOf is the session_id a request carries, 0 for none.
func SessionIDOf(msg any) uint64 {
	return uintField(msg, "session_id")
}

func uintField(msg any, name protoreflect.Name) uint64 {
	m, ok := msg.(proto.Message)
	if !ok {
		return 0
	}
	r := m.ProtoReflect()
	if fd := r.Descriptor().Fields().ByName(name); fd != nil && fd.Kind() == protoreflect.Uint64Kind {
		return r.Get(fd).Uint()
	}
	return 0
}

// A session belongs to the principal that created it. With authentication
// on, the API records the principal in front of every owner label the
// caller gives ("PRINCIPAL:label", an empty label included when a request
// creates a session): the label is in the session's replicated state, so
// every member and every future leader knows the owner without a field of
// its own. Labels also name holders (Release by owner), and the prefix keeps
// one principal from naming another's. A request that names a session
// (session_id) is let through only when the session's owner label carries
// the caller's prefix.

// OwnerSeparator ends the principal in an owner label.
const OwnerSeparator = ":"

// creates are the procedures that create a session when they name none.
var creates = map[string]bool{
	lockstepv1connect.SessionServiceCreateProcedure:    true,
	lockstepv1connect.LockServiceAcquireProcedure:      true,
	lockstepv1connect.SemaphoreServiceAcquireProcedure: true,
	lockstepv1connect.RWLockServiceAcquireProcedure:    true,
	lockstepv1connect.BarrierServiceWaitProcedure:      true,
	lockstepv1connect.ElectionServiceCampaignProcedure: true,
}

// ownership puts the caller's prefix on labels and refuses requests on
// another principal's session, as on one that does not exist; it does
// nothing for anonymous callers.
type ownership struct{ s *service }

func (i ownership) check(ctx context.Context, procedure string, msg any) error {
	who := PrincipalFrom(ctx)
	if who.ID == "" || ActionOf(procedure) != ActionUse {
		return nil
	}
	m, ok := msg.(proto.Message)
	if !ok {
		return nil
	}
	id := SessionIDOf(msg)
	prefix := who.ID + OwnerSeparator
	r := m.ProtoReflect()
	for _, name := range []protoreflect.Name{"owner", "candidate", "participant"} {
		fd := r.Descriptor().Fields().ByName(name)
		if fd == nil || fd.Kind() != protoreflect.StringKind {
			continue
		}
		// A barrier's participant is a label shown in status too: one
		// principal's showed as any name it chose, another's included.
		v := r.Get(fd).String()
		if v != "" || (id == 0 && creates[procedure] && name != "participant") {
			r.Set(fd, protoreflect.ValueOfString(prefix+v))
		}
	}
	if id == 0 {
		return nil
	}
	owner, err := i.s.sessionOwner(ctx, core.SessionID(id))
	if err != nil {
		return err
	}
	if ownerPrincipal(owner) != who.ID && !(administered[procedure] && i.s.administersSessions(ctx, who)) {
		// Answered as a session that does not exist: permission_denied
		// for another principal's live session and not_found for a dead
		// one told any caller which ids were live, and so the cluster's
		// activity. And as late: a missing id is answered after a
		// linearizable read too, and a live one found at once told the
		// same by its time (a reviewer's 0.35 ms against 0.75).
		if _, err := i.s.read(ctx, "", false, func(*core.Machine) error { return nil }); err != nil {
			return err
		}
		return errNoSuchSession(id)
	}
	return nil
}

// administered are the requests on a session that a SessionAdministrator
// may make on another principal's: see it, and end it.
var administered = map[string]bool{
	lockstepv1connect.SessionServiceGetProcedure:   true,
	lockstepv1connect.SessionServiceListProcedure:  true,
	lockstepv1connect.SessionServiceCloseProcedure: true,
}

// administersSessions says whether who may see and close every principal's
// sessions (SessionAdministrator).
func (s *service) administersSessions(ctx context.Context, who Principal) bool {
	a, ok := s.opts.Authorizer.(SessionAdministrator)
	return ok && who.ID != "" && a.AdministersSessions(ctx, who)
}

// errNoSuchSession answers a session id that names no session of the
// caller's: none at all, or another principal's.
func errNoSuchSession(id uint64) error {
	return connect.NewError(connect.CodeNotFound, fmt.Errorf("session %d does not exist (it expired, was closed, or never was): create a new session", id))
}

// ownerPrincipal is the principal an owner label names: PRINCIPAL:label,
// or autoOwnerPrefix before it for a session the server made for one
// request. A prefix test of the whole label would let a principal named
// "auto" own every session the server made, and deny every other
// principal its own.
func ownerPrincipal(owner string) string {
	p, _, ok := strings.Cut(strings.TrimPrefix(owner, autoOwnerPrefix), OwnerSeparator)
	if !ok {
		return "" // no principal's: made while authentication was off
	}
	return p
}

// sessionOwner reads a session's owner label: from this node's state first
// (an owner never changes, so a stale answer that has the session is
// right), then linearizably, for a session created a moment ago elsewhere.
// Every acquire in a given session asks (sessionFor), so the stale read
// goes to the backend without read's deadline: it does not wait.
func (s *service) sessionOwner(ctx context.Context, id core.SessionID) (string, error) {
	for _, stale := range []bool{true, false} {
		owner, found := "", false
		look := func(m *core.Machine) error {
			owner, found = m.SessionOwner(id)
			return nil
		}
		var err error
		if stale {
			_, err = s.b.Read(ctx, "", true, look)
			err = s.apiError(err)
		} else {
			_, err = s.read(ctx, "", false, look)
		}
		if err != nil {
			return "", err
		}
		if found {
			return owner, nil
		}
	}
	return "", errNoSuchSession(uint64(id))
}

// readable returns the caller's read filter for List and Watch, nil when
// every name is readable.
func (s *service) readable(ctx context.Context) func(name string) bool {
	f, ok := s.opts.Authorizer.(ReadFilter)
	if !ok {
		return nil
	}
	who := PrincipalFrom(ctx)
	return func(name string) bool { return f.CanRead(ctx, who, name) }
}
