package redisadapter

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// redisCluster is a Redis Cluster the test starts: masters (and optional
// replicas) as redis-server processes on loopback ports, joined with
// redis-cli --cluster create, stopped at the end of the test.
type redisCluster struct {
	t     testing.TB
	nodes []*redisProc
}

// requireRedisCli returns the path of redis-cli; without it the test is
// skipped, except under CI (CI=true), where it fails.
func requireRedisCli(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-cli is required in CI: %v", err)
		}
		t.Skip("redis-cli not installed; the Redis Cluster tests need it")
	}
	return path
}

// startRedisCluster starts masters × (1 + replicas) cluster-enabled
// redis-server processes, creates the cluster and waits until every node
// reports cluster_state:ok and agrees on the slots.
func startRedisCluster(t testing.TB, masters, replicas int) *redisCluster {
	t.Helper()
	requireRedisServer(t)
	cli := requireRedisCli(t)
	rc := &redisCluster{t: t}
	var addrs []string
	for i := 0; i < masters*(1+replicas); i++ {
		// The cluster bus gets its own free port (cluster-port), so that
		// port+10000 never has to be free.
		p := startRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(freePort(t)), "--cluster-node-timeout", "1000",
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
	rc.waitHealthy(masters)
	return rc
}

// waitHealthy waits until every live node reports cluster_state:ok and sees
// the given number of masters covering all 16384 slots.
func (rc *redisCluster) waitHealthy(masters int) {
	rc.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range rc.nodes {
		if !p.ping() {
			continue
		}
		c := redis.NewClient(&redis.Options{Addr: p.Addr()})
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
			if strings.Contains(info, "cluster_state:ok") && covered == 16384 && len(owners) == masters {
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

// addrs returns the addresses of every node.
func (rc *redisCluster) addrs() []string {
	var out []string
	for _, p := range rc.nodes {
		out = append(out, p.Addr())
	}
	return out
}

// client returns a cluster client, closed at the end of the test.
func (rc *redisCluster) client(t testing.TB) *redis.ClusterClient {
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: rc.addrs()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// masterClients returns one plain client per current master.
func (rc *redisCluster) masterClients(t testing.TB) []*redis.Client {
	t.Helper()
	var out []*redis.Client
	for _, addr := range rc.masterAddrs(t) {
		c := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { _ = c.Close() })
		out = append(out, c)
	}
	return out
}

// masterAddrs asks a live node which nodes own slots.
func (rc *redisCluster) masterAddrs(t testing.TB) []string {
	t.Helper()
	for _, p := range rc.nodes {
		if !p.ping() {
			continue
		}
		c := redis.NewClient(&redis.Options{Addr: p.Addr()})
		slots, err := c.ClusterSlots(context.Background()).Result()
		_ = c.Close()
		if err != nil {
			continue
		}
		set := map[string]bool{}
		for _, s := range slots {
			set[s.Nodes[0].Addr] = true
		}
		var out []string
		for a := range set {
			out = append(out, a)
		}
		sort.Strings(out)
		return out
	}
	t.Fatal("no live cluster node")
	return nil
}

// env is the behaviour suite's view of the cluster.
func (rc *redisCluster) env() *shEnv {
	return &shEnv{
		name:    "cluster",
		ordered: false,
		client:  func(t testing.TB) redis.UniversalClient { return rc.client(t) },
		masters: func(t testing.TB) []*redis.Client { return rc.masterClients(t) },
	}
}

// TestShardedRedisCluster runs the sharded behaviour suite on a Redis Cluster
// of three masters, then checks the connection bound: each server holds at
// most one subscriber connection per master, however many rooms and
// namespaces it subscribes to, and no command ever got CROSSSLOT.
func TestShardedRedisCluster(t *testing.T) {
	rc := startRedisCluster(t, 3, 0)
	env := rc.env()
	for _, mode := range []SubscriptionMode{SubscriptionModeDynamic, SubscriptionModeStatic} {
		t.Run(string(mode), func(t *testing.T) {
			mk := mkSharded(&ShardedOptions{SubscriptionMode: mode})
			t.Run("broadcasts", func(t *testing.T) { testShardedBroadcasts(t, env, mk) })
			t.Run("requests", func(t *testing.T) { testShardedRequests(t, env, mk, true) })
		})
	}
	t.Run("private messages in dynamic mode", func(t *testing.T) {
		c := newShCluster(t, env, 2, mkSharded(nil))
		sid := string(c.socks[1].Id())
		ch := c.prefix + "#/#" + sid + "#"
		if n := env.shardNumSub(t, c.masters, ch); n != 1 {
			t.Fatalf("SHARDNUMSUB of the own-id channel = %d", n)
		}
		frame := fmt.Sprintf(`{"type":3,"data":{"packet":{"type":2,"data":["pm","node"]},"opts":{"rooms":[%q],"except":[],"flags":{}}},"uid":"0123456789abcdef","nsp":"/"}`, sid)
		if err := rc.client(t).SPublish(context.Background(), ch, frame).Err(); err != nil {
			t.Fatal(err)
		}
		c.nodes[0].io.To(socket.Room(sid)).Emit("pm", "go")
		waitEvents(t, c.clients[1], "pm", 2)
	})
	t.Run("connections per master", func(t *testing.T) {
		const servers, rooms = 3, 60
		c := newShCluster(t, env, servers, mkSharded(&ShardedOptions{SubscriptionMode: SubscriptionModeDynamicPrivate}), "/a", "/b")
		for i, s := range c.socks {
			for r := 0; r < rooms; r++ {
				s.Join(socket.Room(fmt.Sprintf("room-%d-%d", i, r)))
			}
		}
		// Every room is subscribed (the joins waited for it).
		for i := range c.socks {
			for r := 0; r < rooms; r++ {
				ch := fmt.Sprintf("%s#/#room-%d-%d#", c.prefix, i, r)
				if n := env.shardNumSub(t, c.masters, ch); n != 1 {
					t.Fatalf("SHARDNUMSUB %s = %d", ch, n)
				}
			}
		}
		// Distinct channels: 3 main channels (shared by the servers), and per
		// server 3 response channels, its socket's own id and its rooms.
		wantChannels := 3 + servers*(3+1+rooms)
		total := 0
		for _, m := range c.masters {
			conns := shPubSubClients(t, m)
			chans, err := m.PubSubShardChannels(context.Background(), c.prefix+"*").Result()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("master %s: %d subscriber connections, %d sharded channels", m.Options().Addr, len(conns), len(chans))
			if len(conns) > servers {
				t.Errorf("master %s has %d subscriber connections for %d servers:\n%s", m.Options().Addr, len(conns), servers, strings.Join(conns, "\n"))
			}
			if len(conns) != servers {
				t.Errorf("master %s: %d connections, want one per server (%d)", m.Options().Addr, len(conns), servers)
			}
			total += len(chans)
		}
		if total != wantChannels {
			t.Errorf("%d channels over the masters, want %d", total, wantChannels)
		}
		// A broadcast to each room arrives.
		for i := range c.socks {
			c.nodes[(i+1)%servers].io.To(socket.Room(fmt.Sprintf("room-%d-%d", i, rooms-1))).Emit("last", i)
			waitEvents(t, c.clients[i], "last", 1)
		}
	})
}

// TestRedisClusterClassicAdapter runs the classic adapter (New with a
// *redis.ClusterClient) on the same kind of cluster: broadcasts cross
// servers, ServerCount is summed over the masters, requests complete.
func TestRedisClusterClassicAdapter(t *testing.T) {
	rc := startRedisCluster(t, 3, 0)
	env := rc.env()
	mk := mkClassic(nil)
	t.Run("broadcasts", func(t *testing.T) { testShardedBroadcasts(t, env, mk) })
	t.Run("requests", func(t *testing.T) { testShardedRequests(t, env, mk, false) })
}

// TestShardedRedisClusterMasterFailover kills (SIGKILL) the master that owns
// a room's channel in a cluster of three masters with one replica each. The
// servers degrade, then follow the promoted replica: the room's channel is
// subscribed on the new master, the dead master's connection is dropped, and
// broadcasts to the room arrive again.
func TestShardedRedisClusterMasterFailover(t *testing.T) {
	rc := startRedisCluster(t, 3, 1)
	env := rc.env()
	opts := &ShardedOptions{MaxReconnectDelay: 500 * time.Millisecond, HealthCheckInterval: 500 * time.Millisecond}
	c := newShCluster(t, env, 2, mkSharded(opts))
	const room = "failover-room"
	c.socks[1].Join(room)
	ch := c.prefix + "#/#" + room + "#"
	cc := rc.client(t)
	owner, err := cc.MasterForKey(context.Background(), ch)
	if err != nil {
		t.Fatal(err)
	}
	var victim *redisProc
	for _, p := range rc.nodes {
		if p.Addr() == owner.Options().Addr {
			victim = p
		}
	}
	if victim == nil {
		t.Fatalf("no process for master %s", owner.Options().Addr)
	}
	c.nodes[0].io.To(room).Emit("f", -1)
	waitEvents(t, c.clients[1], "f", 1)
	killedAt := time.Now()
	victim.Kill()
	// Server 1 holds the room: its subscriber connection to the master
	// fails. (Server 0 may hold nothing there; it degrades when a publish
	// to the dead master fails.)
	waitFor(t, "server 1 degraded", func() bool { return c.nodes[1].b.State() == StateDegraded })
	degradedAfter := time.Since(killedAt)
	// A surviving node tells when Redis moved the slot to the replica.
	var witness *redis.Client
	for _, p := range rc.nodes {
		if p != victim {
			witness = redis.NewClient(&redis.Options{Addr: p.Addr()})
			t.Cleanup(func() { _ = witness.Close() })
			break
		}
	}
	slot := keySlot(ch)
	var promotedAfter time.Duration
	promoted := func() bool {
		slots, err := witness.ClusterSlots(context.Background()).Result()
		if err != nil {
			return false
		}
		for _, r := range slots {
			if slot >= r.Start && slot <= r.End && len(r.Nodes) > 0 {
				return r.Nodes[0].Addr != victim.Addr()
			}
		}
		return false
	}
	// Emit until a broadcast gets through the promoted replica.
	deadline := time.Now().Add(45 * time.Second)
	seq := 0
	for len(c.clients[1].Received("f")) < 2 {
		if promotedAfter == 0 && promoted() {
			promotedAfter = time.Since(killedAt)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no broadcast to %s arrived %v after the master was killed (states %v %v)", room, time.Since(killedAt), c.nodes[0].b.State(), c.nodes[1].b.State())
		}
		seq++
		c.nodes[0].io.To(room).Emit("f", seq)
		time.Sleep(50 * time.Millisecond)
	}
	deliveredAfter := time.Since(killedAt)
	for i, nd := range c.nodes {
		deadline := time.Now().Add(30 * time.Second)
		for nd.b.State() != StateConnected {
			if time.Now().After(deadline) {
				t.Fatalf("server %d still %v", i, nd.b.State())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	connectedAfter := time.Since(killedAt)
	newOwner, err := rc.client(t).MasterForKey(context.Background(), ch) // a client with a fresh view
	if err != nil {
		t.Fatal(err)
	}
	if newOwner.Options().Addr == victim.Addr() {
		t.Fatalf("slot still owned by the killed master")
	}
	masters := rc.masterClients(t)
	if n := env.shardNumSub(t, masters, ch); n != 1 {
		t.Errorf("SHARDNUMSUB %s after failover = %d", ch, n)
	}
	for _, m := range masters {
		if conns := shPubSubClients(t, m); len(conns) > 2 {
			t.Errorf("master %s has %d subscriber connections for 2 servers", m.Options().Addr, len(conns))
		}
	}
	// Everything still works: a request round trip and a broadcast to all.
	got, err := fetch(t, c.nodes[0].io)
	if err != nil || len(got) != 2 {
		t.Errorf("fetchSockets after failover: %d sockets, err %v", len(got), err)
	}
	if promotedAfter == 0 {
		promotedAfter = deliveredAfter
	}
	t.Logf("master %s killed: server degraded after %v; Redis promoted %s after %v; first broadcast through it after %v (%v after the promotion), both servers connected after %v",
		victim.Addr(), degradedAfter.Round(time.Millisecond), newOwner.Options().Addr, promotedAfter.Round(time.Millisecond),
		deliveredAfter.Round(time.Millisecond), (deliveredAfter - promotedAfter).Round(time.Millisecond), connectedAfter.Round(time.Millisecond))
}
