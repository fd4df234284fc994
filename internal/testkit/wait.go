package testkit

import (
	"testing"
	"time"
)

// WaitTimeout bounds every wait for a condition in the tests.
const WaitTimeout = 10 * time.Second

// pollInterval is how often WaitFor evaluates its condition.
const pollInterval = 5 * time.Millisecond

// WaitFor polls cond every few milliseconds until it holds, and fails the
// test with what when it still does not hold after WaitTimeout.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitForWithin(t, WaitTimeout, what, cond)
}

// WaitForWithin is WaitFor with its own deadline d.
func WaitForWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", d, what)
		}
		time.Sleep(pollInterval)
	}
}
