//go:build linux

package main

import "syscall"

// procAttr makes a child process (server instance, redis-server) die with the
// benchmark, even when the benchmark is killed before it can clean up.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
