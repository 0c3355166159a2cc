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
)

// Bugs are the planted bugs, in the order -bug list prints them.
var Bugs = []bug{
	{bugAckRefused, "a try-once lock the cluster refused is acknowledged as granted, with a token the worker makes up (one above the last it saw)",
		"acknowledged grants in the log, porcupine"},
	{bugSkipFence, "the resource accepts a write on token order alone, without asking the cluster whether the token still holds",
		"fenced resource (the sleeper's write after its session expired)"},
	{bugPhantomRelease, "an unlock is reported successful without being sent: the worker walks away still holding the mutex",
		"porcupine (a refusal, or the same token granted again, while the model says free)"},
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
