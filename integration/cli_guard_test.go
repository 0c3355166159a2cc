//go:build integration && linux

package integration

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCLICommandDiesWithLock kills `lockstep lock` with -9 while its
// command (a shell and the shell's child) runs: both must be gone within a
// second, long before the session expires, and the next holder's command
// must never run beside them.
func TestCLICommandDiesWithLock(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	c.start(n)
	c.waitHealthy(20*time.Second, n)
	l := cli{t: t, url: n.url(), dir: t.TempDir()}

	for _, sub := range [][]string{{"lock"}, {"sem", "--limit", "1"}, {"rwlock", "--write"}} {
		t.Run(sub[0], func(t *testing.T) {
			l.t = t
			shellPid, childPid := l.file(sub[0]+".shell"), l.file(sub[0]+".child")
			name := "cli/guard-" + sub[0]
			args := append(append(append([]string{}, sub[0], name), sub[1:]...), "--ttl", "2s", "--",
				"sh", "-c", `echo $$ > `+shellPid+`.tmp; mv `+shellPid+`.tmp `+shellPid+`; sleep 300 & echo $! > `+childPid+`.tmp; mv `+childPid+`.tmp `+childPid+`; wait`)
			holder, _, errb, done := l.start(args...)
			pids := make([]int, 0, 2)
			eventually(t, 10*time.Second, "the command to start", func() error {
				pids = pids[:0]
				for _, f := range []string{shellPid, childPid} {
					raw, err := os.ReadFile(f)
					if err != nil {
						return err
					}
					pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
					if err != nil {
						return err
					}
					pids = append(pids, pid)
				}
				return nil
			})
			starts := pidStarts(t, pids)
			if err := holder.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-done
			killed := time.Now()
			for _, pid := range pids {
				for alive(pid) && time.Since(killed) < 3*time.Second {
					time.Sleep(20 * time.Millisecond)
				}
				if alive(pid) {
					t.Fatalf("process %d of the command outlived lockstep %s killed -9 by %v; stderr:\n%s", pid, sub[0], time.Since(killed), errb)
				}
			}
			if d := time.Since(killed); d > time.Second {
				t.Errorf("the command took %v to die after lockstep %s was killed, more than a second", d, sub[0])
			}
			// The next holder runs once the session has expired, and sees
			// nothing of the first command (a zombie not yet reaped by this
			// machine's init is dead).
			// Each process's stat is read once: a zombie can be reaped
			// between two reads, and a failed read means it is gone. A live
			// process whose start time differs is another one that got the
			// pid since.
			check := `for ps in ` + starts + `; do p=${ps%:*}; s=$(cat /proc/$p/stat 2>/dev/null) || continue; set -- ${s##*") "}; [ "$1" = Z ] && continue; [ "${20}" != "${ps#*:}" ] && continue; echo "overlap: $p alive: $s"; exit 9; done`
			next := append(append(append([]string{}, sub[0], name), sub[1:]...), "--wait", "20s", "--", "sh", "-c", check)
			if code, out, errOut := l.run(30*time.Second, next...); code != 0 {
				t.Fatalf("the next holder: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
			}
		})
	}
}

// pidStarts gives "pid:starttime" for each process (the start time in
// clock ticks since boot, field 22 of /proc/pid/stat), which names a
// process even once its pid is reused.
func pidStarts(t *testing.T, pids []int) string {
	t.Helper()
	out := make([]string, 0, len(pids))
	for _, pid := range pids {
		fields, err := statFields(pid)
		if err != nil {
			t.Fatalf("process %d of the command: %v", pid, err)
		}
		if len(fields) < 20 {
			t.Fatalf("process %d: short stat %q", pid, fields)
		}
		out = append(out, strconv.Itoa(pid)+":"+fields[19])
	}
	return strings.Join(out, " ")
}

// alive says whether a process exists and is not a zombie.
func alive(pid int) bool {
	fields, err := statFields(pid)
	if err != nil {
		return false
	}
	return len(fields) == 0 || fields[0] != "Z"
}

// statFields reads /proc/pid/stat and gives its fields after the command
// name, which is in parentheses and may hold spaces: "pid (comm) S ...",
// so the state is fields[0] and field N of proc(5) is fields[N-3].
func statFields(pid int) ([]string, error) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	s := string(raw)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:]), nil
}
