//go:build interop && linux

package interop

import "syscall"

// procAttr makes the external processes die with the test binary, even when
// it is killed before its cleanup runs.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
