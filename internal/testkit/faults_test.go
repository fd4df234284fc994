package testkit_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/redis/go-redis/v9"
)

// hangFor is how long the fault tests wait to conclude that something hangs.
const hangFor = 300 * time.Millisecond

// pingWithin runs PING bounded by d (the client has ContextTimeoutEnabled).
func pingWithin(c *redis.Client, d time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	err := c.Ping(ctx).Err()
	return time.Since(start), err
}

func boundedClient(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestProxyFreezeThaw(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	r := testkit.NewRedis(t)
	p := testkit.NewProxy(t, r.Addr())
	c := boundedClient(t, p.Addr())
	if _, err := pingWithin(c, time.Second); err != nil {
		t.Fatalf("PING through the proxy: %v", err)
	}

	p.Freeze()
	if d, err := pingWithin(c, hangFor); err == nil || d < hangFor-10*time.Millisecond {
		t.Fatalf("PING while frozen returned after %v: %v", d, err)
	}
	// A new connection is accepted while frozen, and nothing answers it.
	raw, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if err != nil {
		t.Fatalf("dial while frozen: %v", err)
	}
	defer raw.Close()
	if _, err := raw.Write([]byte(respPing)); err != nil {
		t.Fatal(err)
	}
	_ = raw.SetReadDeadline(time.Now().Add(hangFor))
	rd := bufio.NewReader(raw)
	if line, err := rd.ReadString('\n'); !isTimeout(err) {
		t.Fatalf("read while frozen: %q, %v", line, err)
	}

	p.Thaw()
	if _, err := pingWithin(c, time.Second); err != nil {
		t.Fatalf("PING after thaw: %v", err)
	}
	// What was sent while frozen is delivered after the thaw.
	_ = raw.SetReadDeadline(time.Now().Add(time.Second))
	if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+PONG") {
		t.Fatalf("PING sent while frozen: %q, %v", line, err)
	}
}

func TestProxyCut(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	r := testkit.NewRedis(t)
	p := testkit.NewProxy(t, r.Addr())
	raw, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	testkit.WaitFor(t, "the proxy holds the connection", func() bool { return p.Conns() == 1 })
	p.Cut()
	_ = raw.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := raw.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read after Cut: %v", err)
	}
	testkit.WaitFor(t, "no connection left", func() bool { return p.Conns() == 0 })
	if _, err := pingWithin(boundedClient(t, p.Addr()), time.Second); err != nil {
		t.Fatalf("PING through the proxy after Cut: %v", err)
	}
}

// TestProxyCloseWhileFrozen: Close releases connections held by a freeze,
// including one accepted and never connected to the target.
func TestProxyCloseWhileFrozen(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	r := testkit.NewRedis(t)
	p := testkit.NewProxy(t, r.Addr())
	c := boundedClient(t, p.Addr())
	if _, err := pingWithin(c, time.Second); err != nil {
		t.Fatal(err)
	}
	raw, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	p.Freeze()
	late, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	_, _ = raw.Write([]byte(respPing))
	testkit.WaitFor(t, "three connections", func() bool { return p.Conns() == 3 })
	p.Close()
	if n := p.Conns(); n != 0 {
		t.Fatalf("%d connections after Close", n)
	}
}

func TestSilentListener(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	addr := testkit.SilentListener(t)
	c := boundedClient(t, addr)
	if d, err := pingWithin(c, hangFor); err == nil || d < hangFor-10*time.Millisecond {
		t.Fatalf("PING to the silent listener returned after %v: %v", d, err)
	}
	raw, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer raw.Close()
	if _, err := raw.Write([]byte(respPing)); err != nil {
		t.Fatal(err)
	}
	_ = raw.SetReadDeadline(time.Now().Add(hangFor))
	if n, err := raw.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("read: %d bytes, %v", n, err)
	}
}

func TestHangingDialAddr(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	addr := testkit.HangingDialAddr(t)
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), hangFor)
		start := time.Now()
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		cancel()
		d := time.Since(start)
		if err == nil {
			conn.Close()
			t.Fatalf("dial %d to %s completed", i, addr)
		}
		if d < hangFor-10*time.Millisecond {
			t.Fatalf("dial %d failed after %v, not bounded by the context: %v", i, d, err)
		}
	}
	// go-redis with its DialTimeout: PING fails after the dial timeout.
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	start := time.Now()
	err := c.Ping(context.Background()).Err()
	if d := time.Since(start); err == nil || d < 190*time.Millisecond || d > 2*time.Second {
		t.Fatalf("go-redis PING to the hanging address: %v after %v", err, d)
	}
}

func TestHangingDialer(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	hd := testkit.NewHangingDialer(t)
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", Dialer: hd.Dial, MaxRetries: -1})
	defer c.Close()
	if d, err := pingWithin(c, hangFor); err == nil || d < hangFor-10*time.Millisecond {
		t.Fatalf("PING through the hanging dialer: %v after %v", err, d)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// respPing is PING as a RESP array (miniredis does not take inline
// commands).
const respPing = "*1\r\n$4\r\nPING\r\n"
