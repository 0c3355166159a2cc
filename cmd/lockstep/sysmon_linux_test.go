//go:build linux

package main

import (
	goruntime "runtime"
	"syscall"
	"testing"
)

// setTimerSlack sets the calling thread's slack, as PR_GET_TIMERSLACK
// reads it back.
func TestSetTimerSlack(t *testing.T) {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	const prGetTimerslack = 30
	get := func() uintptr {
		ns, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prGetTimerslack, 0, 0)
		if errno != 0 {
			t.Fatalf("PR_GET_TIMERSLACK: %v", errno)
		}
		return ns
	}
	before := get()
	if !setTimerSlack(quietTimerSlack) {
		t.Fatal("setTimerSlack failed")
	}
	defer setTimerSlack(0) // this thread's default again
	if got := get(); got != quietTimerSlack {
		t.Fatalf("timer slack after setTimerSlack(%d) = %d ns (before: %d)", quietTimerSlack, got, before)
	}
}
