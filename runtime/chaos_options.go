//go:build chaos

package runtime

// WithCompatibility makes the node name compat in its Raft hello in place
// of Compatibility(): the chaos suite restarts a member as a build of
// other versions this way (chaos's "versions" fault). Only the chaos build
// (-tags chaos) has it.
func (o Options) WithCompatibility(compat string) Options {
	o.compatibility = compat
	return o
}
