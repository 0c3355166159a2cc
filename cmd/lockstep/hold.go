package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/lockstepd/lockstep/client"
)

// holdFlags are the flags of the commands that hold something while a
// command runs (lock, sem, rwlock).
type holdFlags struct {
	*common
	wait    time.Duration
	grace   time.Duration
	maxHold time.Duration
	// lockDelay is the hold's lock-delay (lock's; 0 for sem and rwlock,
	// which have none): how long the servers keep the next holder out
	// after the hold fails.
	lockDelay time.Duration
}

func newHoldCommand(name, help string, stdout, stderr io.Writer) *holdFlags {
	h := &holdFlags{common: newCommand(name, help, stdout, stderr)}
	h.wait = -1
	h.fs.Var((*waitFlag)(&h.wait), "wait", "the `duration` to wait when held: 0 tries once (exit 2 when held); forever (the default) or a negative duration waits until granted")
	h.fs.DurationVar(&h.grace, "grace", 10*time.Second, "after the session is lost, how long the command has after SIGTERM before SIGKILL")
	h.fs.DurationVar(&h.maxHold, "max-hold", 0, "end the hold this long after it is granted even while the session lives (a hung command), as when the session is lost: SIGTERM, then SIGKILL after --grace (0: no bound; at least 1s)")
	return h
}

// holdOptions are the grant bounds the flags ask for.
func (h *holdFlags) holdOptions(more ...client.HoldOption) []client.HoldOption {
	return append(more, client.WithMaxHold(h.maxHold))
}

// acquireFn takes the hold and answers its token; release gives it back.
type held struct {
	token   uint64
	release func(ctx context.Context) error
	// lost closes when the hold must be taken for ended (the hold's Lost):
	// the session's loss, --max-hold passing while the session lives, or
	// another caller's release of the grant by its token; lostErr (the
	// hold's LostErr) says which.
	lost    <-chan struct{}
	lostErr func() error
	// current is the hold's token now (the hold's Token): 0 once it ended
	// or its lease, as the client counts it, passed.
	current func() uint64
	// maxHoldEnd is when --max-hold ends the hold at the latest, counted
	// from before the acquire was sent (zero: no --max-hold).
	maxHoldEnd time.Time
}

// runHeld is the common body of lock, sem and rwlock: open a session, take
// the hold, run the command with the token in its environment, and give
// everything back when it exits.
func (h *holdFlags) runHeld(kind client.Kind, name string, argv []string,
	acquire func(ctx context.Context, s *client.Session) (held, error)) int {
	if len(argv) == 0 {
		return h.usageErr("no command to run: put it after --, like: %s %s -- ./job.sh", h.fs.Name(), name)
	}
	if h.maxHold > 0 && h.maxHold < client.MinTTL {
		return h.usageErr("--max-hold %v is under %v: the hold would end almost at once; give at least %v, or 0 for no bound", h.maxHold, client.MinTTL, client.MinTTL)
	}
	cl, err := h.client()
	if err != nil {
		return h.fail(err)
	}
	ctx, stop := interrupted()
	defer stop()
	s, err := h.session(ctx, cl)
	if err != nil {
		return h.fail(err)
	}
	defer func() {
		cctx, cancel := cleanupCtx()
		defer cancel()
		_ = s.Close(cctx)
	}()

	actx := ctx
	if h.wait > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, h.wait)
		defer cancel()
	}
	sent := time.Now()
	hd, err := acquire(actx, s)
	if h.maxHold > 0 {
		hd.maxHoldEnd = sent.Add(h.maxHold) // the servers count from the grant, later
	}
	switch {
	case err == nil:
	case errors.Is(err, client.ErrLocked), errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil, errors.Is(err, client.ErrTimeout):
		fmt.Fprintf(h.stderr, "%s: %s %q %s; the command did not run.\n", h.fs.Name(), kind, name, h.holders(cl, kind, name))
		if h.wait == 0 {
			fmt.Fprintf(h.stderr, "Try again later, or wait for it with --wait 1m. See 'lockstep status %s'.\n", name)
		} else {
			fmt.Fprintf(h.stderr, "Waited %v. Wait longer with --wait, or see 'lockstep status %s'.\n", h.wait, name)
		}
		return exitHeld
	case ctx.Err() != nil:
		fmt.Fprintf(h.stderr, "%s: interrupted while waiting for %s %q; the wait was withdrawn and the command did not run.\n", h.fs.Name(), kind, name)
		return exitInterrupted
	default:
		return h.fail(err)
	}
	code := h.runCommand(s, name, hd, argv)
	// A hold lost while the session lives passed its --max-hold, or
	// another caller released it: the servers ended it, and a release
	// would only be refused as stale.
	if s.Err() == nil && code != exitSessionLost {
		cctx, cancel := cleanupCtx()
		defer cancel()
		err := hd.release(cctx)
		if errors.Is(err, client.ErrNotHeld) {
			// The servers had ended the grant before the command exited,
			// and no word of it came (a server without pushes, or a push
			// dropped): the command may have run beside the next holder,
			// which is a loss, as when the push arrives.
			fmt.Fprintf(h.stderr, "%s: lost the hold on %s %q before the command exited: its release was refused: %v\n"+
				"%s: another holder may have run beside the command: see 'lockstep status %s'.\n",
				h.fs.Name(), kind, name, err, h.fs.Name(), name)
			return exitSessionLost
		}
		if errors.Is(err, client.ErrSessionLost) {
			// The servers no longer have the session (it expired, was
			// closed, or a restore put the cluster back before it), and
			// with it the grant: the hold ended before lockstep could
			// release it, maybe before the command exited, as when the
			// push of the session's loss arrives. Creating a new session
			// or closing this one, the advice that rides on the refusal,
			// would change nothing.
			fmt.Fprintf(h.stderr, "%s: lost the hold on %s %q before the command exited: its release was refused: %s\n"+
				"%s: the hold ended with the session, so the command may have run beside another holder: see 'lockstep status %s'.\n",
				h.fs.Name(), kind, name, sessionGone(err), h.fs.Name(), name)
			return exitSessionLost
		}
		if err != nil {
			fmt.Fprintf(h.stderr, "%s: releasing %s %q: %v (closing the session releases it anyway)\n", h.fs.Name(), kind, name, err)
		}
	}
	return code
}

// sessionGone is a release's refusal for a session gone (ErrSessionLost)
// in the servers' words ("session 12 does not exist (it expired, was
// closed, or never was)"): what follows the sentinel (the client keeps
// the servers' message as text after it), less the advice they add for a
// caller still to act, "create a new session", which a command that
// already ran has no use for.
func sessionGone(err error) string {
	msg := err.Error()
	if _, after, ok := strings.Cut(msg, client.ErrSessionLost.Error()+": "); ok {
		msg = after
	}
	return strings.TrimSuffix(msg, ": create a new session")
}

// holders says, for a refusal message, why the object was not had: who
// holds it, or the lock-delay that keeps it from everyone.
func (h *holdFlags) holders(cl *client.Client, kind client.Kind, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := cl.Status(ctx, kind, name)
	if err == nil && len(st.Holders) == 0 && st.BlockedUntilMs != 0 {
		// Nobody holds it, and status alone said "(free)": the last
		// holder's session failed, and its lock-delay runs.
		return fmt.Sprintf("is kept from everyone by a lock-delay until %s, after its holder failed (its session was lost or its maximum hold passed) or its session was closed by an operator", ms(st.BlockedUntilMs))
	}
	if err != nil || len(st.Holders) == 0 {
		return "is held by someone else"
	}
	ho := st.Holders[0]
	more := ""
	if len(st.Holders) > 1 {
		more = fmt.Sprintf(" and %d more", len(st.Holders)-1)
	}
	held := fmt.Sprintf("is held by someone else (%s, session %d, token %d%s)", ho.Owner, ho.SessionId, ho.FencingToken, more)
	if kind == client.KindRWLock && st.Mode == "read" {
		// Readers hold it, which a reader shares: what kept this one out
		// is a writer waiting, since a reader never goes past one.
		for _, w := range st.Waiters {
			if w.Mode == "write" {
				return fmt.Sprintf("is held for reading (%s, session %d%s), and a writer waits for it (%s, session %d): a new reader waits behind a waiting writer, so that writers are not starved",
					ho.Owner, ho.SessionId, more, w.Owner, w.SessionId)
			}
		}
	}
	return held
}

// runCommand runs argv with the token in its environment and answers its
// exit code. Interrupts are passed on to it. When the hold is lost (the
// session's loss, --max-hold passing, or another caller's release of the
// grant by its token) the command gets SIGTERM, then SIGKILL after the
// grace period, and the answer is exitSessionLost. A hold found lost as
// the command exits is a loss too: the grant ended before lockstep could
// release it, so the command may have run beside the next holder.
func (h *holdFlags) runCommand(s *client.Session, name string, hd held, argv []string) int {
	token := hd.token
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	// Under a guard (guard_linux.go), the command and its children die
	// with this process, even by kill -9, and are stopped when this process
	// says nothing for as long as the hold was good for (stopped, Ctrl-Z).
	cmd, err := guardedCommand(argv, func(cmd *exec.Cmd) {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, h.stdout, h.stderr
		cmd.Env = append(os.Environ(),
			"LOCKSTEP_FENCING_TOKEN="+strconv.FormatUint(token, 10),
			"LOCKSTEP_LOCK_NAME="+name,
			"LOCKSTEP_SESSION_ID="+strconv.FormatUint(s.ID(), 10))
	}, hd.goodFor(s), h.grace, h.lockDelay)
	if err != nil {
		fmt.Fprintf(h.stderr, "%s: cannot start %q: %v; check the command and PATH.\n", h.fs.Name(), argv[0], err)
		return 127
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	lost := false
	for {
		select {
		case sig := <-sigs:
			_ = signalGroup(cmd, sig.(syscall.Signal))
		case <-hd.lost:
			lost = true
			hd.lost = nil // closed: no more news on it
			if isClosed(exited) {
				continue // the command is gone already (the guard stopped it): said below
			}
			fmt.Fprintf(h.stderr, "%s: lost the hold on %q: %v\n%s: sending SIGTERM to the command (SIGKILL in %v); %s.\n",
				h.fs.Name(), name, h.lostWhy(s, hd), h.fs.Name(), h.grace, nextHolder(h.lockDelay, hd.releasedByAnother() != nil))
			_ = signalGroup(cmd, syscall.SIGTERM)
			go func() {
				select {
				case <-exited:
				case <-time.After(h.grace):
				}
				// Whatever the command left running in its group goes too.
				_ = signalGroup(cmd, syscall.SIGKILL)
			}()
		case <-exited:
			if !lost && (isClosed(hd.lost) || hd.goodFor(s)() == 0) {
				// It ended as the command exited, before lockstep
				// released it: the command may have run beside the next
				// holder, as after any loss.
				fmt.Fprintf(h.stderr, "%s: lost the hold on %q as the command exited: %v\n", h.fs.Name(), name, h.lostWhy(s, hd))
				lost = true
			}
			if lost {
				switch {
				case s.Err() != nil:
					fmt.Fprintf(h.stderr, "%s: the command was stopped because the session was lost; %s.\n", h.fs.Name(), lostAdvice(s.Err()))
				case hd.releasedByAnother() == nil && s.LeaseLeft() == 0:
					fmt.Fprintf(h.stderr, "%s: the command was stopped because the session's lease ran out unrenewed (lockstep was stopped, "+
						"or could not reach the cluster in time): the servers may have handed the hold on; see 'lockstep status %s'.\n", h.fs.Name(), name)
				case hd.releasedByAnother() != nil:
					fmt.Fprintf(h.stderr, "%s: the command was stopped because its grant (token %d) was released by another caller, "+
						"which named its token (a release by owner label and token, over REST or from another client); "+
						"another holder may have started: see 'lockstep status %s'.\n", h.fs.Name(), token, name)
				default:
					fmt.Fprintf(h.stderr, "%s: the command was stopped because its --max-hold of %v passed.\n", h.fs.Name(), h.maxHold)
				}
				return exitSessionLost
			}
			st := cmd.ProcessState
			if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return 128 + int(ws.Signal())
			}
			return st.ExitCode()
		}
	}
}

// nextHolder says when another holder may start after a hold is lost:
// once the lock-delay ends, when one covers the loss (a mutex's, after
// its session failed or its max hold passed); at once, when none does
// (the other kinds, --lock-delay 0, or another caller's release of the
// grant, which hands it on at once).
func nextHolder(lockDelay time.Duration, releasedByAnother bool) string {
	if lockDelay > 0 && !releasedByAnother {
		return "another holder may start once its lock-delay ends"
	}
	return "another holder may be running now"
}

// goodFor says, at each call, how long hd is good for: until the lease,
// as the client counts it, passes, or --max-hold, whichever is sooner; 0
// once it ended.
func (hd held) goodFor(s *client.Session) func() time.Duration {
	return func() time.Duration {
		if hd.current == nil || hd.current() == 0 {
			return 0
		}
		left := s.LeaseLeft()
		if !hd.maxHoldEnd.IsZero() {
			left = min(left, time.Until(hd.maxHoldEnd))
		}
		return max(left, 0)
	}
}

// lostWhy says why hd was lost: the session's loss, the servers' end of
// the grant (another caller's release, its max hold), or its --max-hold
// as counted here.
func (h *holdFlags) lostWhy(s *client.Session, hd held) error {
	if err := s.Err(); err != nil {
		return err
	}
	if err := hd.releasedByAnother(); err != nil {
		return err
	}
	if s.LeaseLeft() == 0 {
		return errors.New("its session's lease ran out unrenewed (lockstep was stopped, or could not reach the cluster in time)")
	}
	return fmt.Errorf("its --max-hold of %v passed", h.maxHold)
}

// releasedByAnother is why hd was lost when another caller released its
// grant by token (client.ErrReleasedByAnother), nil otherwise.
func (hd held) releasedByAnother() error {
	if hd.lostErr == nil {
		return nil
	}
	if err := hd.lostErr(); errors.Is(err, client.ErrReleasedByAnother) {
		return err
	}
	return nil
}

// isClosed says whether ch (nil: never) is closed.
func isClosed(ch <-chan struct{}) bool {
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func lockCmd(args []string, stdout, stderr io.Writer) int {
	h := newHoldCommand("lock", `
Usage: lockstep lock NAME [flags] -- COMMAND [ARGS...]

Takes the mutex NAME, runs COMMAND while holding it, releases it when the
command exits, and exits with the command's exit code. The command sees
LOCKSTEP_FENCING_TOKEN, LOCKSTEP_LOCK_NAME and LOCKSTEP_SESSION_ID: pass the
token to whatever it writes, so a stale holder's writes can be refused (see
docs/client.md).

The command never outlives lockstep: on Linux it runs under a guard that
kills its whole process group when lockstep dies, even by kill -9. Nor does
it outlive the hold while lockstep is stopped (SIGSTOP, or Ctrl-Z, which
stops lockstep alone, the command being in a group of its own): lockstep
tells the guard how long the hold is good for four times a second, and
when that runs out without word the guard sends the command SIGTERM, then
SIGKILL after --grace, as lockstep would. Other systems have no such
guard; there a killed or stopped lockstep leaves the command running while
its session expires.

If the session is lost while the command runs (this machine could not renew
it within --ttl), the command gets SIGTERM, then SIGKILL after --grace, and
lockstep exits 3. So it does when --max-hold D passes: a command that hangs
while lockstep keeps the session alive is stopped, and the lock handed on,
D after the grant (a Redis lock's expiry). So it does too when another
caller releases the lock by its token (a release by owner label and token
over REST, or from another client): the next holder may start at once, so
the command is stopped, lockstep says who ended the grant, and exits 3
without a release of its own (when no word of that release came, lockstep
exits 3 once its own release at the command's end is refused as not
held). It exits 3 too when that release finds the session gone (it ended
with no word of it reaching lockstep, say a restore put the cluster back
before it): the hold ended with the session, maybe before the command
did. With --wait 0 a held mutex fails at once
with exit 2, as arguments the servers refuse do (another --limit than the
semaphore's own): its message tells which, and says what to fix for the
second.

A session that ends by failure (lockstep killed, its machine gone, its
lease not renewed, or closed by an operator's 'lockstep session close'
without --no-lock-delay) leaves the lock to nobody for --lock-delay: a command
that could not be stopped in time (on a system without the guard, or on a
machine cut off from the cluster, where it has --grace after SIGTERM) has
that long to finish before the next holder starts (Chubby's and Consul's
lock-delay; at most 1m). It defaults to --grace, so that such a command is
killed before the next holder starts; --lock-delay 0 hands the lock on at
once. A release when the command exits hands the lock on at once, and so
does lockstep's own close of its session.

Examples:
  lockstep lock jobs/nightly -- ./backup.sh          # wait for the lock
  lockstep lock jobs/nightly --wait 0 -- ./backup.sh # run only if free
  lockstep lock db-migrate --wait 5m --ttl 30s -- make migrate
  lockstep lock billing --lock-delay 20s -- ./charge.sh
`, stdout, stderr)
	lockDelay := h.fs.Duration("lock-delay", 0, "after the session fails (not a release), keep the lock from everyone for this `duration` (default: --grace, at most 1m; 0: none)")
	pos, argv, code, ok := h.parse(args)
	if !ok {
		return code
	}
	d, warn := lockDelayFor(*lockDelay, flagGiven(h.fs, "lock-delay"), h.grace)
	if warn != "" {
		fmt.Fprintf(h.stderr, "%s: warning: %s\n", h.fs.Name(), warn)
	}
	if len(pos) != 1 {
		return h.usageErr("want one NAME before --, got %d arguments", len(pos))
	}
	name := pos[0]
	h.lockDelay = d
	return h.runHeld(client.KindMutex, name, argv, func(ctx context.Context, s *client.Session) (held, error) {
		m := client.NewMutex(s, name, h.holdOptions(client.WithLockDelay(d))...)
		var err error
		if h.wait == 0 {
			err = m.TryLock(ctx)
		} else {
			err = m.Lock(ctx)
		}
		return held{token: m.Token(), release: m.Unlock, lost: m.Lost(), lostErr: m.LostErr, current: m.Token}, err
	})
}

// maxCLILockDelay is the servers' bound on a lock-delay (core's
// MaxLockDelayMs by default).
const maxCLILockDelay = time.Minute

// lockDelayFor is the lock-delay `lockstep lock` asks for: the one given,
// or --grace, so that a command cut off from the cluster with its session
// (SIGTERM, then SIGKILL after grace) is gone before the next holder
// starts. It warns when the two leave room for such a command to run
// beside the next holder: a shorter one given, or a grace over the
// servers' bound.
func lockDelayFor(given time.Duration, wasGiven bool, grace time.Duration) (time.Duration, string) {
	if wasGiven {
		if given > 0 && given < grace {
			return given, fmt.Sprintf("--lock-delay %v is shorter than --grace %v: a command cut off from the cluster may run up to %v beside the next holder", given, grace, grace-given)
		}
		return given, ""
	}
	if grace > maxCLILockDelay {
		return maxCLILockDelay, fmt.Sprintf("--grace %v is over the longest lock-delay, %v: a command cut off from the cluster may run up to %v beside the next holder", grace, maxCLILockDelay, grace-maxCLILockDelay)
	}
	return grace, ""
}

func semCmd(args []string, stdout, stderr io.Writer) int {
	h := newHoldCommand("sem", `
Usage: lockstep sem NAME --limit N [--permits K] [flags] -- COMMAND [ARGS...]

Takes K of the N permits of the semaphore NAME, runs COMMAND, gives them
back when it exits. At most N permits are out at once across every machine:
use it to cap concurrency. The first acquirer fixes the limit; every later
one must give the same --limit. As with lock, the command never outlives
lockstep on Linux, and is stopped (exit 3) when the session is lost,
--max-hold passes or another caller releases the permits by their token
(see lockstep lock -h). Unlike a mutex, a semaphore has no lock-delay: a
command cut off from the cluster gets SIGTERM when its lease runs out, the
moment the servers may hand its permits on, and may run up to --grace
beside the next holder: keep --grace short, or make the command stop at
once on SIGTERM.

Examples:
  lockstep sem gpu --limit 4 -- ./train.sh            # at most 4 at once
  lockstep sem gpu --limit 4 --permits 2 -- ./big.sh  # takes 2 of the 4
  lockstep sem crawl --limit 10 --wait 0 -- ./crawl   # skip when full (exit 2)
`, stdout, stderr)
	limit := h.fs.Int64("limit", 0, "the semaphore's total `permits` (required)")
	permits := h.fs.Int64("permits", 1, "how many permits this command takes")
	pos, argv, code, ok := h.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return h.usageErr("want one NAME before --, got %d arguments", len(pos))
	}
	switch {
	case *limit == 0:
		return h.usageErr("--limit N is required (the total permits, at least 1)")
	case *limit < 0:
		return h.usageErr("--limit %d: give the total permits, at least 1", *limit)
	}
	if *permits <= 0 || *permits > *limit {
		return h.usageErr("--permits %d: give 1..%d (the limit)", *permits, *limit)
	}
	name := pos[0]
	return h.runHeld(client.KindSemaphore, name, argv, func(ctx context.Context, s *client.Session) (held, error) {
		m := client.NewSemaphore(s, name, *limit, h.holdOptions()...)
		var err error
		if h.wait == 0 {
			err = m.TryAcquire(ctx, *permits)
		} else {
			err = m.Acquire(ctx, *permits)
		}
		return held{token: m.Token(), release: m.Release, lost: m.Lost(), lostErr: m.LostErr, current: m.Token}, err
	})
}

func rwlockCmd(args []string, stdout, stderr io.Writer) int {
	h := newHoldCommand("rwlock", `
Usage: lockstep rwlock NAME --read|--write [flags] -- COMMAND [ARGS...]

Takes the read-write lock NAME for reading (shared with other readers) or
writing (alone), runs COMMAND, releases it when the command exits. A queued
writer makes later readers wait, so writers are never starved. As with
lock, the command never outlives lockstep on Linux, and is stopped (exit 3)
when the session is lost, --max-hold passes or another caller releases the
hold by its token (see lockstep lock -h). Unlike a mutex, an RW lock has
no lock-delay: a command cut off from the cluster gets SIGTERM when its
lease runs out, the moment the servers may hand the lock on, and may run
up to --grace beside the next holder: keep --grace short, or make the
command stop at once on SIGTERM.

Examples:
  lockstep rwlock config --read -- ./render.sh
  lockstep rwlock config --write --wait 30s -- ./update-config.sh
`, stdout, stderr)
	read := h.fs.Bool("read", false, "take a shared read hold")
	write := h.fs.Bool("write", false, "take the exclusive write hold")
	pos, argv, code, ok := h.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return h.usageErr("want one NAME before --, got %d arguments", len(pos))
	}
	if *read == *write {
		return h.usageErr("give exactly one of --read or --write")
	}
	name := pos[0]
	return h.runHeld(client.KindRWLock, name, argv, func(ctx context.Context, s *client.Session) (held, error) {
		m := client.NewRWMutex(s, name, h.holdOptions()...)
		var err error
		switch {
		case *read && h.wait == 0:
			err = m.TryRLock(ctx)
		case *read:
			err = m.RLock(ctx)
		case h.wait == 0:
			err = m.TryLock(ctx)
		default:
			err = m.Lock(ctx)
		}
		return held{token: m.Token(), release: m.Unlock, lost: m.Lost(), lostErr: m.LostErr, current: m.Token}, err
	})
}

// waitFlag is a --wait duration whose default, waiting until granted, is
// shown as "forever" rather than as -1ns.
type waitFlag time.Duration

func (w *waitFlag) String() string {
	if time.Duration(*w) < 0 {
		return "forever"
	}
	return time.Duration(*w).String()
}

func (w *waitFlag) Set(s string) error {
	if s == "forever" {
		*w = -1
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (like 30s or 5m) or forever", s)
	}
	*w = waitFlag(d)
	return nil
}

// lostAdvice is what to do about a session lost with err: credentials the
// cluster no longer takes (a key revoked by a reload, a certificate no
// longer trusted) or an ACL that no longer allows it are not the network
// or the TTL, which the advice said whatever the loss.
func lostAdvice(err error) string {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	switch {
	case strings.Contains(msg, "client certificate expired"):
		// The cluster ends what a certificate opened when it expires.
		return "the client certificate expired (--cert): renew it (lockstep certs client, or your PKI) and run the command again"
	case connect.CodeOf(err) == connect.CodeUnauthenticated || strings.Contains(msg, "unauthenticated") ||
		strings.Contains(msg, "withdrawn by a reload"):
		return "the cluster no longer takes this command's credentials (an API key revoked, a certificate no longer trusted): " +
			"run it again with good ones (--api-key, --cert and --key)"
	case connect.CodeOf(err) == connect.CodePermissionDenied || strings.Contains(msg, "permission_denied") ||
		strings.Contains(msg, "no longer allows"):
		return "the cluster's ACL no longer allows it: ask for a rule in security.acl (docs/security.md)"
	case isTLSErr(err):
		// The last keepalive failed in the TLS handshake: the servers'
		// certificates (a CA rotated) or this command's no longer do.
		return "the TLS handshake with the servers failed (a CA or certificate rotated?): run it again with the cluster's current CA (--cacert) " +
			"and a client certificate it takes (--cert and --key)"
	case strings.Contains(msg, "was closed") && !strings.Contains(msg, "expired"):
		// Closed on the servers, not timed out: an operator's
		// 'lockstep session close', not the network or the TTL.
		return "its session was closed on the servers (an operator's 'lockstep session close'): run it again if it should still run"
	}
	return "check the network to the servers, or raise --ttl"
}
