package testkit

import (
	"context"
	"testing"

	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
)

// WaitEvents waits until cl received at least n events named name, and
// returns all of them in arrival order; it fails the test after WaitTimeout.
func WaitEvents(t testing.TB, cl *sioclient.Client, name string, n int) []sioclient.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), WaitTimeout)
	defer cancel()
	evs, err := cl.WaitFor(ctx, name, n)
	if err != nil {
		t.Fatalf("waiting for %d %q events on client %s: %v (got %d)", n, name, cl.ID(), err, len(cl.Received(name)))
	}
	return evs
}
