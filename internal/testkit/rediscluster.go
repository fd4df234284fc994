package testkit

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterHealthTimeout bounds the wait for a Redis Cluster to agree on its
// slots after it is created or changed.
const clusterHealthTimeout = 30 * time.Second

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// RedisCluster is a Redis Cluster a test starts: masters (and optional
// replicas) as redis-server processes on loopback ports, joined with
// redis-cli --cluster create, killed at the end of the test.
type RedisCluster struct {
	t       testing.TB
	masters int
	nodes   []*RedisProc
}

// StartRedisCluster starts masters × (1 + replicas) cluster-enabled
// redis-server processes, creates the cluster and waits until every node
// reports cluster_state:ok and agrees on the slots. It skips the test
// without redis-server or redis-cli (fails under CI=true).
func StartRedisCluster(t testing.TB, masters, replicas int) *RedisCluster {
	t.Helper()
	RequireRedisServer(t)
	cli := RequireRedisCli(t)
	rc := &RedisCluster{t: t, masters: masters}
	var addrs []string
	for i := 0; i < masters*(1+replicas); i++ {
		// The cluster bus gets its own free port (cluster-port), so that
		// port+10000 never has to be free.
		p := StartRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(FreePort(t)), "--cluster-node-timeout", "1000",
			"--cluster-replica-validity-factor", "0")
		rc.nodes = append(rc.nodes, p)
		addrs = append(addrs, p.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	rc.WaitHealthy()
	return rc
}

// WaitHealthy waits until every live node reports cluster_state:ok and sees
// as many masters as the cluster was created with, covering all 16384 slots.
func (rc *RedisCluster) WaitHealthy() {
	rc.t.Helper()
	deadline := time.Now().Add(clusterHealthTimeout)
	for _, p := range rc.nodes {
		if !p.Running() || !p.Ping() {
			continue
		}
		c := redis.NewClient(p.Options())
		for {
			info, _ := c.ClusterInfo(context.Background()).Result()
			slots, _ := c.ClusterSlots(context.Background()).Result()
			covered := 0
			owners := map[string]bool{}
			for _, s := range slots {
				covered += s.End - s.Start + 1
				if len(s.Nodes) > 0 {
					owners[s.Nodes[0].Addr] = true
				}
			}
			if strings.Contains(info, "cluster_state:ok") && covered == clusterSlots && len(owners) == rc.masters {
				break
			}
			if time.Now().After(deadline) {
				_ = c.Close()
				rc.t.Fatalf("cluster not healthy on %s:\n%s\nslots %v", p.Addr(), info, slots)
			}
			time.Sleep(50 * time.Millisecond)
		}
		_ = c.Close()
	}
}

// Nodes returns every node of the cluster, masters and replicas, in the
// order they were started.
func (rc *RedisCluster) Nodes() []*RedisProc { return rc.nodes }

// Node returns the node listening on addr, or nil.
func (rc *RedisCluster) Node(addr string) *RedisProc {
	for _, p := range rc.nodes {
		if p.Addr() == addr {
			return p
		}
	}
	return nil
}

// Addrs returns the addresses of every node.
func (rc *RedisCluster) Addrs() []string {
	var out []string
	for _, p := range rc.nodes {
		out = append(out, p.Addr())
	}
	return out
}

// Client returns a cluster client of every node, closed at the end of the
// test.
func (rc *RedisCluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.Addrs()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// MasterClients returns one plain client per current master, closed at the
// end of the test.
func (rc *RedisCluster) MasterClients(t testing.TB) []*redis.Client {
	t.Helper()
	var out []*redis.Client
	for _, addr := range rc.MasterAddrs(t) {
		c := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { _ = c.Close() })
		out = append(out, c)
	}
	return out
}

// MasterAddrs asks a live node which nodes own slots now, and returns their
// addresses, sorted.
func (rc *RedisCluster) MasterAddrs(t testing.TB) []string {
	t.Helper()
	slots := rc.slots(t)
	set := map[string]bool{}
	for _, s := range slots {
		if len(s.Nodes) > 0 {
			set[s.Nodes[0].Addr] = true
		}
	}
	var out []string
	for a := range set {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

// slots returns CLUSTER SLOTS as a live node sees it.
func (rc *RedisCluster) slots(t testing.TB) []redis.ClusterSlot {
	t.Helper()
	for _, p := range rc.nodes {
		if !p.Running() || !p.Ping() {
			continue
		}
		c := redis.NewClient(p.Options())
		slots, err := c.ClusterSlots(context.Background()).Result()
		_ = c.Close()
		if err == nil {
			return slots
		}
	}
	t.Fatal("no live cluster node")
	return nil
}

// KeySlot returns the hash slot of key (CLUSTER KEYSLOT, hash tags
// included), as the cluster computes it.
func (rc *RedisCluster) KeySlot(t testing.TB, key string) int {
	t.Helper()
	for _, p := range rc.nodes {
		if !p.Running() || !p.Ping() {
			continue
		}
		c := redis.NewClient(p.Options())
		n, err := c.ClusterKeySlot(context.Background(), key).Result()
		_ = c.Close()
		if err == nil {
			return int(n)
		}
	}
	t.Fatal("no live cluster node")
	return -1
}

// SlotOwner returns the address of the master that owns slot, as a live
// node sees it.
func (rc *RedisCluster) SlotOwner(t testing.TB, slot int) string {
	t.Helper()
	for _, s := range rc.slots(t) {
		if slot >= s.Start && slot <= s.End && len(s.Nodes) > 0 {
			return s.Nodes[0].Addr
		}
	}
	t.Fatalf("slot %d has no owner", slot)
	return ""
}

// MasterFor returns the node of the master that owns key's slot.
func (rc *RedisCluster) MasterFor(t testing.TB, key string) *RedisProc {
	t.Helper()
	addr := rc.SlotOwner(t, rc.KeySlot(t, key))
	p := rc.Node(addr)
	if p == nil {
		t.Fatalf("no process for master %s", addr)
	}
	return p
}

// KillMaster kills (SIGKILL) the master that owns key's slot and returns it;
// with replicas, the cluster promotes one of them after the node timeout
// (one second). A killed node may be started again with Restart.
func (rc *RedisCluster) KillMaster(t testing.TB, key string) *RedisProc {
	t.Helper()
	p := rc.MasterFor(t, key)
	p.Kill()
	return p
}

// MigrateSlot moves one hash slot of the running cluster to the master at
// toMasterAddr, as redis-cli --cluster reshard does: CLUSTER SETSLOT
// IMPORTING on the target and MIGRATING on the source, MIGRATE of every key
// of the slot, then CLUSTER SETSLOT NODE on the target, the source and every
// other master. It returns once every live node reports the new owner in
// CLUSTER SLOTS. Clients with sharded subscriptions on the slot's channels
// get SUNSUBSCRIBE from the source (Redis 7).
func (rc *RedisCluster) MigrateSlot(t testing.TB, slot int, toMasterAddr string) {
	t.Helper()
	if slot < 0 || slot >= clusterSlots {
		t.Fatalf("slot %d out of range", slot)
	}
	from := rc.SlotOwner(t, slot)
	if from == toMasterAddr {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterHealthTimeout)
	defer cancel()
	src := redis.NewClient(&redis.Options{Addr: from})
	defer src.Close()
	dst := redis.NewClient(&redis.Options{Addr: toMasterAddr})
	defer dst.Close()
	srcID := rc.myID(ctx, t, src)
	dstID := rc.myID(ctx, t, dst)

	must := func(c *redis.Client, args ...any) {
		t.Helper()
		if err := c.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%v on %s: %v", args, c.Options().Addr, err)
		}
	}
	must(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", srcID)
	must(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dstID)
	host, port, err := net.SplitHostPort(toMasterAddr)
	if err != nil {
		t.Fatal(err)
	}
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, slot, 100).Result()
		if err != nil {
			t.Fatalf("CLUSTER GETKEYSINSLOT %d on %s: %v", slot, from, err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(src, args...)
	}
	// The target first, so that it owns the slot before the source stops
	// redirecting clients to it; then the others, to spare them the wait
	// for gossip.
	must(dst, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	must(src, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
	for _, addr := range rc.MasterAddrs(t) {
		if addr == from || addr == toMasterAddr {
			continue
		}
		c := redis.NewClient(&redis.Options{Addr: addr})
		must(c, "CLUSTER", "SETSLOT", slot, "NODE", dstID)
		_ = c.Close()
	}
	WaitForWithin(t, clusterHealthTimeout, fmt.Sprintf("every node sees slot %d on %s", slot, toMasterAddr), func() bool {
		for _, p := range rc.nodes {
			if !p.Running() {
				continue
			}
			if owner, ok := slotOwnerOn(ctx, p, slot); !ok || owner != toMasterAddr {
				return false
			}
		}
		return true
	})
}

// slotOwnerOn returns the owner of slot as node p sees it.
func slotOwnerOn(ctx context.Context, p *RedisProc, slot int) (string, bool) {
	c := redis.NewClient(p.Options())
	defer c.Close()
	slots, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		return "", false
	}
	for _, s := range slots {
		if slot >= s.Start && slot <= s.End && len(s.Nodes) > 0 {
			return s.Nodes[0].Addr, true
		}
	}
	return "", false
}

func (rc *RedisCluster) myID(ctx context.Context, t testing.TB, c *redis.Client) string {
	t.Helper()
	id, err := c.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatalf("CLUSTER MYID on %s: %v", c.Options().Addr, err)
	}
	return id
}
