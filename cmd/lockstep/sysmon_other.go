//go:build !linux

package main

// quietSysmon is Linux's only (sysmon.go): elsewhere the server runs with
// the runtime's own sysmon.
func quietSysmon() {}
