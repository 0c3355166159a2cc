package chaos

// A planted bug breaks the workload's client side or the resource, never
// the server: each must make runs fail, which is the proof that the checks
// can fail (make test-chaos-bugs).
type bug struct {
	name, what, caughtBy string
}

const (
	bugAckRefused     = "ack-refused"
	bugSkipFence      = "skip-fence"
	bugPhantomRelease = "phantom-release"
	bugGhostKeepalive = "ghost-keepalive"
	bugSkipEvent      = "skip-event"
	bugUnnotedClose   = "unnoted-close"
)

// Bugs are the planted bugs, in the order -bug list prints them.
var Bugs = []bug{
	{bugAckRefused, "a try-once lock the cluster refused is acknowledged as granted, with a token the worker makes up (one above the last it saw)",
		"acknowledged grants in the log, porcupine"},
	{bugSkipFence, "the resource accepts a write on token order alone, without asking the cluster whether the token still holds",
		"fenced resource (the sleeper's write after its session expired)"},
	{bugPhantomRelease, "an unlock is reported successful without being sent: the worker walks away still holding the mutex",
		"porcupine (a refusal, or the same token granted again, while the model says free)"},
	{bugGhostKeepalive, "a stopped client's keepalives still get through (a paused process whose renewal thread runs on): the lapser's session never expires",
		"sessions (a stopped session expired within its TTL plus the grace)"},
	{bugSkipEvent, "the watcher drops one event it was sent, as a resume that skipped an entry would",
		"watch order (the watcher's events against the log's)"},
	{bugUnnotedClose, "a session is closed without the run noting that its client closed it, as a close by someone else would look",
		"sessions (a session closed on the servers that its client never closed)"},
}

func bugByName(name string) *bug {
	for i := range Bugs {
		if Bugs[i].name == name {
			return &Bugs[i]
		}
	}
	return nil
}

// is reports whether b is the named bug; a nil bug is none.
func (b *bug) is(name string) bool { return b != nil && b.name == name }

// String is the line -bug list prints.
func (b bug) String() string { return b.name + "\t" + b.what + " (caught by: " + b.caughtBy + ")" }
