package testkit

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMasterName is the name under which the sentinel of StartSentinel
// monitors the master.
const SentinelMasterName = "mymaster"

// Sentinel is a master, one replica of it, and one sentinel monitoring the
// master as SentinelMasterName, all started by the test. The sentinel
// promotes the replica one second after the master stops answering.
type Sentinel struct {
	Master, Replica, Sentinel *RedisProc
	// Client is a sentinel client of the sentinel, closed at the end of the
	// test.
	Client *redis.SentinelClient
}

// StartSentinel starts the three processes and waits until the sentinel
// knows the replica, so that it can promote it. When the test fails, the
// processes' logs are printed: they say why (for instance a redis-server
// without sentinel mode, or a failover that did not happen).
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	RequireRedisServer(t)
	s := &Sentinel{}
	// The logs must be read before the t.TempDir() cleanups remove them: by
	// a defer while starting, by a cleanup registered last afterwards.
	var dirs []string
	dump := func() {
		if t.Failed() {
			DumpRedisLogs(t, dirs...)
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
	s.Master = StartRedis(t, "--repl-diskless-sync-delay", "0")
	dirs = append(dirs, s.Master.Dir())
	s.Replica = StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(s.Master.Port()))
	dirs = append(dirs, s.Replica.Dir())
	replicaInfo := redis.NewClient(s.Replica.Options())
	defer replicaInfo.Close()
	WaitFor(t, "the replica's link to the master is up", func() bool {
		info, err := replicaInfo.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})

	// The sentinel rewrites its configuration file: it must be writable.
	dir := t.TempDir()
	dirs = append(dirs, dir)
	conf := filepath.Join(dir, "sentinel.conf")
	port := FreePort(t)
	cfg := fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
dir %s
sentinel monitor %s 127.0.0.1 %d 1
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 5000
`, port, dir, SentinelMasterName, s.Master.Port(), SentinelMasterName, SentinelMasterName)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// The configuration file must be redis-server's first argument.
	s.Sentinel = newRawProc(t, port, dir, []string{conf, "--sentinel"})
	s.Sentinel.Start()

	s.Client = redis.NewSentinelClient(s.Sentinel.Options())
	t.Cleanup(func() { _ = s.Client.Close() })
	if addr, err := s.MasterAddr(); err != nil || addr != s.Master.Addr() {
		t.Fatalf("SENTINEL GET-MASTER-ADDR-BY-NAME %s = %q, %v; want %s (is sentinel mode available in this redis-server?)",
			SentinelMasterName, addr, err, s.Master.Addr())
	}
	// The sentinel learns the replica from the master's INFO; without it,
	// there is nothing to promote.
	WaitFor(t, "the sentinel knows the replica", func() bool {
		replicas, err := s.Client.Replicas(context.Background(), SentinelMasterName).Result()
		if err != nil {
			return false
		}
		for _, r := range replicas {
			if net.JoinHostPort(r["ip"], r["port"]) == s.Replica.Addr() && r["flags"] == "slave" &&
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

// MasterAddr asks the sentinel for the current master, as host:port.
func (s *Sentinel) MasterAddr() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	hp, err := s.Client.GetMasterAddrByName(ctx, SentinelMasterName).Result()
	if err != nil {
		return "", err
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("unexpected reply %q", hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// FailoverClient returns a new go-redis failover client (Sentinel) of the
// setup, closed at the end of the test.
func (s *Sentinel) FailoverClient(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    SentinelMasterName,
		SentinelAddrs: []string{s.Sentinel.Addr()},
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Env returns the setup as a fixture environment: every server gets its own
// failover client.
func (s *Sentinel) Env() *Env {
	return &Env{
		Name:    "sentinel",
		Ordered: true,
		Real:    true,
		Client:  func(t testing.TB) redis.UniversalClient { return s.FailoverClient(t) },
		Masters: func(t testing.TB) []*redis.Client { return []*redis.Client{s.FailoverClient(t)} },
	}
}
