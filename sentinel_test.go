package redisadapter

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// failoverDeadline bounds each phase of the failover test: the sentinel's
// promotion of the replica, and the first cross-instance delivery after it.
const failoverDeadline = 30 * time.Second

// sentinelSetup is a master, one replica of it, and one sentinel monitoring
// the master as "mymaster", all started by the test.
type sentinelSetup struct {
	master, replica, sentinel *redisProc
	sc                        *redis.SentinelClient
}

const sentinelMasterName = "mymaster"

// startSentinelSetup starts the three processes and waits until the sentinel
// knows the replica, so that it can promote it. On failure it prints the
// processes' logs, which say why (for instance a redis-server without
// sentinel mode).
func startSentinelSetup(t *testing.T) *sentinelSetup {
	t.Helper()
	requireRedisServer(t)
	s := &sentinelSetup{}
	// The logs say why a process did not start or the failover did not
	// happen. They must be read before the t.TempDir() cleanups remove them:
	// by a defer while starting, by a cleanup registered last afterwards.
	var dirs []string
	dump := func() {
		if t.Failed() {
			dumpRedisLogs(t, dirs...)
		}
	}
	started := false
	defer func() {
		if !started {
			dump()
		}
	}()
	// Without the delay (5s by default) the master serves the replica's
	// first sync at once.
	s.master = startRedis(t, "--repl-diskless-sync-delay", "0")
	dirs = append(dirs, s.master.dir)
	s.replica = startRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(s.master.port))
	dirs = append(dirs, s.replica.dir)
	replicaInfo := redis.NewClient(&redis.Options{Addr: s.replica.Addr()})
	defer replicaInfo.Close()
	waitFor(t, "the replica's link to the master is up", func() bool {
		info, err := replicaInfo.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})

	// The sentinel rewrites its configuration file: it must be writable.
	dir := t.TempDir()
	dirs = append(dirs, dir)
	conf := filepath.Join(dir, "sentinel.conf")
	port := freePort(t)
	cfg := fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
dir %s
sentinel monitor %s 127.0.0.1 %d 1
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
`, port, dir, sentinelMasterName, s.master.port, sentinelMasterName, sentinelMasterName)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// The configuration file must be redis-server's first argument, so
	// startRedis (which puts --port first) cannot start a sentinel.
	s.sentinel = &redisProc{t: t, port: port, dir: dir, args: []string{conf, "--sentinel"}}
	s.sentinel.start()
	t.Cleanup(s.sentinel.stop)

	s.sc = redis.NewSentinelClient(&redis.Options{Addr: s.sentinel.Addr()})
	t.Cleanup(func() { _ = s.sc.Close() })
	if addr, err := s.masterAddr(); err != nil || addr != s.master.Addr() {
		t.Fatalf("SENTINEL GET-MASTER-ADDR-BY-NAME %s = %q, %v; want %s (is sentinel mode available in this redis-server?)",
			sentinelMasterName, addr, err, s.master.Addr())
	}
	// The sentinel learns the replica from the master's INFO; without it,
	// there is nothing to promote.
	waitFor(t, "the sentinel knows the replica", func() bool {
		replicas, err := s.sc.Replicas(context.Background(), sentinelMasterName).Result()
		if err != nil {
			return false
		}
		for _, r := range replicas {
			if net.JoinHostPort(r["ip"], r["port"]) == s.replica.Addr() && r["flags"] == "slave" &&
				r["master-link-status"] == "ok" {
				return true
			}
		}
		return false
	})
	started = true
	t.Cleanup(dump)
	return s
}

// masterAddr asks the sentinel for the current master, as host:port.
func (s *sentinelSetup) masterAddr() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	hp, err := s.sc.GetMasterAddrByName(ctx, sentinelMasterName).Result()
	if err != nil {
		return "", err
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("unexpected reply %q", hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// dumpRedisLogs prints the redis-server logs found in dirs.
func dumpRedisLogs(t *testing.T, dirs ...string) {
	for _, dir := range dirs {
		logs, _ := filepath.Glob(filepath.Join(dir, "redis-*.log"))
		for _, l := range logs {
			b, err := os.ReadFile(l)
			if err == nil {
				t.Logf("---- %s\n%s", l, b)
			}
		}
	}
}

// startFailoverNode is cluster.startNode with a go-redis failover client
// (Sentinel) instead of a plain client: each server has its own client.
func (c *cluster) startFailoverNode(sentinelAddrs []string, opts *Options) *node {
	c.t.Helper()
	o := Options{}
	if opts != nil {
		o = *opts
	}
	o.Key = c.key
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    sentinelMasterName,
		SentinelAddrs: sentinelAddrs,
	})
	c.t.Cleanup(func() { _ = rdb.Close() })
	nd := &node{rdb: rdb, sockets: map[string]chan *socket.Socket{}}
	nd.b = New(nd.rdb, &o)
	so := socket.DefaultServerOptions()
	so.SetConnectTimeout(time.Second)
	so.SetAdapter(nd.b)
	nd.io = socket.NewServer(nil, so)
	for _, nsp := range c.nsps {
		ch := make(chan *socket.Socket, 64)
		nd.sockets[nsp] = ch
		nd.io.Of(nsp, func(args ...any) { ch <- args[0].(*socket.Socket) })
	}
	nd.http = httptest.NewServer(nd.io.ServeHandler(nil))
	return nd
}

// TestSentinelFailover: two Socket.IO servers, each with its own go-redis
// failover client, form a cluster through a Sentinel-managed master. The
// master is killed (SIGKILL); the sentinel promotes the replica; without any
// restart of the Socket.IO servers, cross-instance delivery resumes in both
// directions and both adapters are connected again. The time from the kill
// to the first cross-instance delivery is logged.
func TestSentinelFailover(t *testing.T) {
	verifyNoLeaks(t)
	s := startSentinelSetup(t)

	c := &cluster{t: t, key: uniqueKey(t), nsps: []string{"/"}}
	for i := 0; i < 2; i++ {
		c.nodes = append(c.nodes, c.startFailoverNode([]string{s.sentinel.Addr()}, nil))
	}
	t.Cleanup(c.close)
	for i, nd := range c.nodes {
		waitFor(t, fmt.Sprintf("server %d connected through the sentinel", i), func() bool { return nd.b.State() == StateConnected })
	}
	cl0, _ := c.connect(0, "/")
	cl1, _ := c.connect(1, "/")
	waitFor(t, "both servers subscribed", func() bool { return c.nodes[0].io.Of("/", nil).Adapter().ServerCount() == 2 })
	c.nodes[0].io.Emit("before", "x")
	waitEvents(t, cl1, "before", 1)

	killed := time.Now()
	s.master.Kill()

	var promotedAfter time.Duration
	for {
		addr, err := s.masterAddr()
		if err == nil && addr == s.replica.Addr() {
			promotedAfter = time.Since(killed)
			break
		}
		if time.Since(killed) > failoverDeadline {
			t.Fatalf("the sentinel did not promote the replica within %v (master now %q, %v)", failoverDeadline, addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("sentinel promoted the replica %v after the kill", promotedAfter.Round(time.Millisecond))

	// Emit numbered events from server 0 until the client of server 1 gets
	// one: publishes made while the adapter is degraded, or before the other
	// server resubscribed, are lost (pub/sub is at-most-once).
	deliveredAfter := crossUntilDelivered(t, c.nodes[0].io, cl1, "after", killed)
	t.Logf("first cross-instance delivery %v after the kill (%v after the promotion)",
		deliveredAfter.Round(time.Millisecond), (deliveredAfter - promotedAfter).Round(time.Millisecond))

	// And the other way round, which needs server 1's publisher and server
	// 0's subscriber on the new master.
	crossUntilDelivered(t, c.nodes[1].io, cl0, "back", killed)
	for i, nd := range c.nodes {
		waitFor(t, fmt.Sprintf("server %d connected after the failover", i), func() bool { return nd.b.State() == StateConnected })
		st := nd.b.Stats()
		t.Logf("server %d after failover: state %v, reconnects %d, state changes %d, publish errors %d, skipped while degraded %d",
			i, st.State, st.Reconnects, st.StateChanges, st.PublishErrors, st.SkippedDegraded)
	}
	if n := c.nodes[0].io.Of("/", nil).Adapter().ServerCount(); n != 2 {
		t.Fatalf("ServerCount after the failover = %d, want 2", n)
	}
}

// crossUntilDelivered emits numbered events named event on from until cl
// receives one, and returns the time elapsed since start. It fails the test
// when none arrived within failoverDeadline.
func crossUntilDelivered(t *testing.T, from *socket.Server, cl *sioclient.Client, event string, start time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(failoverDeadline)
	for seq := 0; ; seq++ {
		from.Emit(event, seq)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := cl.WaitFor(ctx, event, 1)
		cancel()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q event crossed instances within %v (%v after the kill, %d emitted)", event, failoverDeadline, time.Since(start), seq+1)
		}
	}
}
