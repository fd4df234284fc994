//go:build interop && !linux

package interop

import "syscall"

// procAttr: outside Linux the processes are stopped by the suite's cleanup
// only.
func procAttr() *syscall.SysProcAttr { return nil }
