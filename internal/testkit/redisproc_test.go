package testkit_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/redis/go-redis/v9"
)

func TestRedisProcKillRestart(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	p := testkit.StartRedis(t)
	c := p.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	pid, addr := p.Pid(), p.Addr()
	if pid == 0 || !p.Running() {
		t.Fatalf("Pid %d, Running %v", pid, p.Running())
	}
	p.Kill()
	if p.Running() || p.Pid() != 0 || p.Ping() {
		t.Fatalf("after Kill: Running %v, Pid %d, Ping %v", p.Running(), p.Pid(), p.Ping())
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING to a killed server succeeded")
	}
	p.Restart()
	if p.Addr() != addr || p.Pid() == pid || p.Pid() == 0 {
		t.Fatalf("after Restart: %s pid %d (was %s pid %d)", p.Addr(), p.Pid(), addr, pid)
	}
	if err := c.Get(ctx, "k").Err(); err != redis.Nil {
		t.Fatalf("GET after a restart without persistence: %v", err)
	}
	p.Stop()
	if p.Running() || p.Ping() {
		t.Fatal("running after Stop")
	}
}

func TestRedisProcStartLater(t *testing.T) {
	p := testkit.NewRedisProc(t)
	if p.Running() || p.Ping() {
		t.Fatal("a configured server runs before Start")
	}
	p.Start()
	if !p.Ping() || !strings.HasPrefix(p.URL(), "redis://127.0.0.1:") {
		t.Fatalf("after Start: Ping %v, URL %s", p.Ping(), p.URL())
	}
}

// TestRedisProcFreezes checks the three ways to freeze a server: a
// suspended process, CLIENT PAUSE and DEBUG SLEEP.
func TestRedisProcFreezes(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	p := testkit.StartRedis(t, "--enable-debug-command", "yes")
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	if _, err := pingWithin(c, time.Second); err != nil {
		t.Fatal(err)
	}

	p.Suspend()
	if d, err := pingWithin(c, hangFor); err == nil || d < hangFor-10*time.Millisecond {
		t.Errorf("PING to a suspended server: %v after %v", err, d)
	}
	p.Resume()
	if _, err := pingWithin(c, time.Second); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}

	p.Pause(t, 400*time.Millisecond)
	start := time.Now()
	if err := c.Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("SET during CLIENT PAUSE answered after %v", d)
	}

	slept := p.DebugSleep(400 * time.Millisecond)
	// The sleep has started once a PING stops being answered.
	testkit.WaitFor(t, "DEBUG SLEEP holding the server", func() bool {
		_, err := pingWithin(c, 100*time.Millisecond)
		return err != nil
	})
	if err := <-slept; err != nil {
		t.Fatalf("DEBUG SLEEP: %v", err)
	}
	if _, err := pingWithin(c, time.Second); err != nil {
		t.Fatalf("PING after DEBUG SLEEP: %v", err)
	}
}

func TestTLSRedis(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	pki := testkit.NewPKI(t)
	srv := testkit.StartTLSRedis(t, pki)
	if err := srv.Client(t).Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING over verified TLS: %v", err)
	}
	o, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	o.TLSConfig.RootCAs = testkit.ForeignCAPool(t)
	o.TLSConfig.ServerName = "localhost"
	o.MaxRetries = -1
	c := redis.NewClient(o)
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err == nil {
		t.Fatal("PING with a foreign CA succeeded")
	}
	var _ *tls.Config = pki.ClientConfig()
}

func TestSentinel(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	s := testkit.StartSentinel(t)
	c := s.FailoverClient(t)
	if err := c.Set(context.Background(), "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through the failover client: %v", err)
	}
	if addr, err := s.MasterAddr(); err != nil || addr != s.Master.Addr() {
		t.Fatalf("MasterAddr = %s, %v", addr, err)
	}
}
