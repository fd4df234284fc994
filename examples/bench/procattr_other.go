//go:build !linux

package main

import "syscall"

// procAttr: outside Linux, children are stopped by the benchmark's cleanup
// only.
func procAttr() *syscall.SysProcAttr { return nil }
