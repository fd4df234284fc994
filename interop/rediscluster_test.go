//go:build interop

package interop

import "testing"

// TestRedisCluster runs the classic suite (the Go servers with a pattern,
// then with room subscriptions) and the sharded suite (dynamic mode) on a
// Redis Cluster of three masters: the Go servers on a go-redis
// ClusterClient, the Node servers on node-redis createCluster (server.js
// with CLUSTER_NODES). A classic PUBLISH reaches the whole cluster from any
// node, and each server subscribes on whichever node its client picked; a
// sharded channel lives on the master of its slot, so the rooms of one
// namespace spread over the three masters. Both emitters publish through
// one node.
func TestRedisCluster(t *testing.T) {
	for _, rooms := range []bool{false, true} {
		t.Run("classic/"+classicModeName(rooms), func(t *testing.T) {
			e := startCluster(t, classicSpec(rooms, true))
			e.runTests(t, classicTests())
		})
	}
	t.Run("sharded/dynamic", func(t *testing.T) {
		testShardedInterop(t, startCluster(t, shardedSpec("dynamic", true)), "dynamic")
	})
}
