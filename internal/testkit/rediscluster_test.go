package testkit_test

import (
	"context"
	"testing"

	"github.com/d38ad898/redisadapter/internal/testkit"
)

// TestRedisClusterMigrateSlot moves the slot of a key that holds a value to
// another master: every node reports the new owner, the key moved with it,
// and a fresh cluster client reads it.
func TestRedisClusterMigrateSlot(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	rc := testkit.StartRedisCluster(t, 3, 0)
	ctx := context.Background()
	const key = "{migrate}k"
	if err := rc.Client(t).Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	slot := rc.KeySlot(t, key)
	from := rc.SlotOwner(t, slot)
	var to string
	for _, m := range rc.MasterAddrs(t) {
		if m != from {
			to = m
			break
		}
	}
	rc.MigrateSlot(t, slot, to)
	for _, p := range rc.Nodes() {
		c := p.Client(t)
		slots, err := c.ClusterSlots(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range slots {
			if slot >= s.Start && slot <= s.End && s.Nodes[0].Addr != to {
				t.Errorf("%s sees slot %d on %s, want %s", p.Addr(), slot, s.Nodes[0].Addr, to)
			}
		}
	}
	if v, err := rc.Node(to).Client(t).Get(ctx, key).Result(); err != nil || v != "v" {
		t.Errorf("GET on the new owner: %q, %v", v, err)
	}
	if v, err := rc.Client(t).Get(ctx, key).Result(); err != nil || v != "v" {
		t.Errorf("GET through a fresh cluster client: %q, %v", v, err)
	}
	if n := len(rc.MasterClients(t)); n != 3 {
		t.Errorf("%d masters after the migration", n)
	}
	rc.WaitHealthy()
}
