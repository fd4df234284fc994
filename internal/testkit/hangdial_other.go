//go:build !linux

package testkit

import "testing"

// HangingDialAddr returns a loopback address where a TCP connect never
// completes. It relies on Linux's listen-overflow behaviour (see the Linux
// build), so elsewhere it skips the test; NewHangingDialer works everywhere.
func HangingDialAddr(t testing.TB) string {
	t.Helper()
	t.Skip("HangingDialAddr needs Linux; use NewHangingDialer")
	return ""
}
