package redisadapter

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// logRecorder is a slog.Handler that keeps every record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.records = append(l.records, r.Clone())
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) count(level slog.Level) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if r.Level == level {
			n++
		}
	}
	return n
}

// stateRecorder records OnStateChange calls.
type stateRecorder struct {
	mu     sync.Mutex
	events [][2]State
}

func (s *stateRecorder) record(from, to State, _ error) {
	s.mu.Lock()
	s.events = append(s.events, [2]State{from, to})
	s.mu.Unlock()
}

// list returns a copy of the recorded transitions.
func (s *stateRecorder) list() [][2]State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][2]State(nil), s.events...)
}

// expect waits until the transition from -> to was reported n times (the
// callback runs on the Builder's notifier goroutine, after State changed),
// and fails if it was reported more often.
func (s *stateRecorder) expect(t testing.TB, from, to State, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("OnStateChange(%v, %v) called %d times", from, to, n), func() bool { return s.count(from, to) >= n })
	if got := s.count(from, to); got != n {
		t.Errorf("OnStateChange(%v, %v) called %d times, want %d: %v", from, to, got, n, s.list())
	}
}

func (s *stateRecorder) count(from, to State) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.events {
		if e == [2]State{from, to} {
			n++
		}
	}
	return n
}

// singleServer is one Socket.IO server on a Builder, for fallback tests that
// need a client but not a cluster.
func singleServer(t *testing.T, b *Builder) (*socket.Server, *sioclient.Client) {
	t.Helper()
	so := socket.DefaultServerOptions()
	so.SetConnectTimeout(time.Second)
	so.SetAdapter(b)
	io := socket.NewServer(nil, so)
	conns := make(chan *socket.Socket, 1)
	io.On("connection", func(args ...any) { conns <- args[0].(*socket.Socket) })
	srv := httptestServer(t, io)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cl, err := sioclient.Dial(ctx, srv, "/")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	<-conns
	return io, cl
}

// TestRedisDownAtStart: New returns at once, the server delivers locally, one
// warning says it runs single-instance, reconnection backs off (a handful of
// dials, not a hot loop), and the adapter connects when Redis appears.
func TestRedisDownAtStart(t *testing.T) {
	verifyNoLeaks(t)
	m := miniredis.RunT(t)
	addr := m.Addr()
	m.Close()

	var dials atomic.Int64
	rdb := redis.NewClient(&redis.Options{
		Addr: addr,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		MaxRetries: -1,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	logs := &logRecorder{}
	states := &stateRecorder{}
	b := New(rdb, &Options{Key: uniqueKey(t), Logger: slog.New(logs), OnStateChange: states.record, MaxReconnectDelay: 400 * time.Millisecond})
	t.Cleanup(func() { _ = b.Close() })
	io, cl := singleServer(t, b)
	t.Cleanup(func() { io.Close(nil) })

	waitFor(t, "degraded", func() bool { return b.State() == StateDegraded })
	io.Emit("local", 1)
	waitEvents(t, cl, "local", 1)
	if got := ns1(io).Adapter().ServerCount(); got != 1 {
		t.Errorf("ServerCount while degraded = %d, want 1", got)
	}
	if b.Stats().SkippedDegraded == 0 {
		t.Error("remote publish not counted as skipped while degraded")
	}

	// Watch the reconnection for a while: the backoff (100ms doubling, capped
	// at 400ms here) allows a handful of dials per second. A hot loop makes
	// thousands.
	before := dials.Load()
	window := time.NewTimer(2 * time.Second)
	<-window.C
	if n := dials.Load() - before; n > 30 {
		t.Errorf("%d connection attempts in 2s while Redis is down: not backing off", n)
	}
	if n := logs.count(slog.LevelWarn); n != 1 {
		t.Errorf("%d warnings while Redis is down, want exactly 1", n)
	}

	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "connected after Redis appeared", func() bool { return b.State() == StateConnected })
	states.expect(t, StateConnecting, StateDegraded, 1)
	states.expect(t, StateDegraded, StateConnected, 1)
	waitFor(t, "subscribed after Redis appeared", func() bool { return m.PubSubNumPat() == 1 })
	m.Close()
}

func ns1(io *socket.Server) socket.Namespace { return io.Of("/", nil) }

// TestRedisLostAndBackMidTraffic: with Redis gone, local delivery goes on and
// remote publishes are skipped and counted; when it is back, both servers
// resubscribe and broadcasts cross instances again.
func TestRedisLostAndBackMidTraffic(t *testing.T) {
	m := miniredis.RunT(t)
	key := uniqueKey(t)
	var nodes []*Builder
	var servers []*socket.Server
	var clients []*sioclient.Client
	var states []*stateRecorder
	for i := 0; i < 2; i++ {
		rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1})
		t.Cleanup(func() { _ = rdb.Close() })
		st := &stateRecorder{}
		b := New(rdb, &Options{Key: key, OnStateChange: st.record, MaxReconnectDelay: 300 * time.Millisecond, HealthCheckInterval: 200 * time.Millisecond})
		t.Cleanup(func() { _ = b.Close() })
		io, cl := singleServer(t, b)
		t.Cleanup(func() { io.Close(nil) })
		nodes, servers, clients, states = append(nodes, b), append(servers, io), append(clients, cl), append(states, st)
	}
	for _, b := range nodes {
		waitFor(t, "connected", func() bool { return b.State() == StateConnected })
	}
	waitFor(t, "both subscribed", func() bool { return m.PubSubNumPat() == 2 })
	servers[0].Emit("before", 1)
	waitEvents(t, clients[1], "before", 1)

	m.Close()
	for _, b := range nodes {
		waitFor(t, "degraded", func() bool { return b.State() == StateDegraded })
	}
	// Local delivery continues, every message of a burst arrives.
	for i := 0; i < 50; i++ {
		servers[0].Emit("during", i)
	}
	evs := waitEvents(t, clients[0], "during", 50)
	for i, ev := range evs {
		if ev.Args[0] != float64(i) {
			t.Fatalf("local delivery out of order during the outage: %v at %d", ev.Args[0], i)
		}
	}
	if nodes[0].Stats().SkippedDegraded < 50 {
		t.Errorf("SkippedDegraded = %d, want >= 50", nodes[0].Stats().SkippedDegraded)
	}

	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, b := range nodes {
		waitFor(t, "connected again", func() bool { return b.State() == StateConnected })
	}
	waitFor(t, "both resubscribed", func() bool { return m.PubSubNumPat() == 2 })
	servers[0].Emit("after", 1)
	waitEvents(t, clients[1], "after", 1)
	for _, st := range states {
		st.expect(t, StateConnected, StateDegraded, 1)
		st.expect(t, StateDegraded, StateConnected, 1)
	}
	if nodes[0].Stats().Reconnects != 1 {
		t.Errorf("Reconnects = %d, want 1", nodes[0].Stats().Reconnects)
	}
	if len(clients[1].Received("during")) != 0 {
		t.Error("messages published during the outage were delivered remotely")
	}
}

// TestBroadcastNeverWaitsOnRedis points the adapter at a server that accepts
// connections and never answers: broadcasts still reach the local client
// immediately, in order, while nothing has been published.
func TestBroadcastNeverWaitsOnRedis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1, ReadTimeout: 5 * time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	b := New(rdb, &Options{Key: uniqueKey(t), PublishTimeout: 2 * time.Second})
	t.Cleanup(func() { _ = b.Close() })
	io, cl := singleServer(t, b)
	t.Cleanup(func() { io.Close(nil) })
	for i := 0; i < 100; i++ {
		io.Emit("n", i)
	}
	evs := waitEvents(t, cl, "n", 100)
	if evs[99].Args[0] != float64(99) {
		t.Fatalf("last event %v", evs[99].Args)
	}
	if s := b.Stats(); s.Published != 0 || s.PublishErrors != 0 {
		t.Fatalf("stats %+v: a publish completed, so the test did not prove anything", s)
	}
}
