//go:build !linux

package cluster

import "syscall"

// childAttr: without a parent-death signal, Close is what stops the nodes.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
