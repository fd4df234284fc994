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
	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// The fallback promises, in every mode: Redis down at start, lost and back
// mid-traffic, a broadcast that never waits on Redis, and what a user sees of
// it (State, Stats, log lines, OnStateChange in order).

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

// at returns the records of one level.
func (l *logRecorder) at(level slog.Level) []slog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []slog.Record
	for _, r := range l.records {
		if r.Level == level {
			out = append(out, r)
		}
	}
	return out
}

func (l *logRecorder) count(level slog.Level) int { return len(l.at(level)) }

// attr returns the value of a record's attribute key, as a string.
func attr(r slog.Record, key string) string {
	v := ""
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

// stateEventRec is one recorded OnStateChange call.
type stateEventRec struct {
	from, to State
	err      error
}

// stateRecorder records OnStateChange calls.
type stateRecorder struct {
	mu     sync.Mutex
	events []stateEventRec
}

func (s *stateRecorder) record(from, to State, err error) {
	s.mu.Lock()
	s.events = append(s.events, stateEventRec{from, to, err})
	s.mu.Unlock()
}

// list returns a copy of the recorded transitions.
func (s *stateRecorder) list() []stateEventRec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]stateEventRec(nil), s.events...)
}

func (s *stateRecorder) String() string {
	out := ""
	for _, e := range s.list() {
		out += fmt.Sprintf("[%v->%v]", e.from, e.to)
	}
	return out
}

func (s *stateRecorder) count(from, to State) int {
	n := 0
	for _, e := range s.list() {
		if e.from == from && e.to == to {
			n++
		}
	}
	return n
}

// errs returns the errors the transitions carried.
func (s *stateRecorder) errs() []error {
	var out []error
	for _, e := range s.list() {
		if e.err != nil {
			out = append(out, e.err)
		}
	}
	return out
}

// expect waits until the transition from -> to was reported n times (the
// callback runs on the Builder's notifier goroutine, after State changed),
// and fails if it was reported more often.
func (s *stateRecorder) expect(t testing.TB, from, to State, n int) {
	t.Helper()
	testkit.WaitFor(t, fmt.Sprintf("OnStateChange(%v, %v) called %d times", from, to, n), func() bool { return s.count(from, to) >= n })
	if got := s.count(from, to); got != n {
		t.Errorf("OnStateChange(%v, %v) called %d times, want %d: %v", from, to, got, n, s)
	}
}

// watch gives every server a Builder builds its own state and log recorder,
// in build order.
type watch struct {
	mu     sync.Mutex
	states []*stateRecorder
	logs   []*logRecorder
}

// configure is an Options hook (see modeWith) that attaches the next
// recorders.
func (w *watch) configure(o *Options) {
	st, lg := &stateRecorder{}, &logRecorder{}
	w.mu.Lock()
	w.states, w.logs = append(w.states, st), append(w.logs, lg)
	w.mu.Unlock()
	o.OnStateChange = st.record
	o.Logger = slog.New(lg)
}

// newWatch returns a watch whose recorded logs are printed when the test
// fails.
func newWatch(t testing.TB) *watch {
	w := &watch{}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		for i, lg := range w.logs {
			lg.mu.Lock()
			for _, r := range lg.records {
				line := fmt.Sprintf("server %d: %s %s %s", i, r.Time.Format("15:04:05.000"), r.Level, r.Message)
				r.Attrs(func(a slog.Attr) bool {
					line += " " + a.String()
					return true
				})
				t.Log(line)
			}
			lg.mu.Unlock()
			t.Logf("server %d: transitions %v", i, w.states[i])
		}
	})
	return w
}

func (w *watch) state(i int) *stateRecorder {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.states[i]
}

func (w *watch) log(i int) *logRecorder {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.logs[i]
}

// modeWith returns the mode of allModes named like m, with configure applied
// to the Options of every server it builds, after testOptions.
func modeWith(t testing.TB, m testkit.Mode, configure ...func(*Options)) testkit.Mode {
	t.Helper()
	streams := func(o *StreamsOptions) {
		for _, c := range configure {
			c(&o.Options)
		}
	}
	for _, c := range []testkit.Mode{
		modeClassic(configure...),
		modeRooms(configure...),
		modeSharded(SubscriptionModeStatic, configure...),
		modeSharded(SubscriptionModeDynamic, configure...),
		modeSharded(SubscriptionModeDynamicPrivate, configure...),
		modeStreams(streams),
	} {
		if c.Name == m.Name {
			return c
		}
	}
	t.Fatalf("no mode named %s", m.Name)
	return testkit.Mode{}
}

// flakyRedis is a Redis the test takes away and brings back on the same
// address: an embedded miniredis for the modes that run on it (so that these
// tests also run where redis-server is not installed), a redis-server
// process for the others and the streams transport.
type flakyRedis struct {
	addr        string
	start, stop func()
	real        bool
}

// newFlakyRedis returns the Redis of mode m, running or not.
func newFlakyRedis(t *testing.T, m testkit.Mode, running bool) *flakyRedis {
	t.Helper()
	// A server started again during the test is stopped by a cleanup
	// registered then, which runs before the leak checks registered
	// earlier.
	// miniredis answers no blocking command (the streams transport's XREAD
	// BLOCK) once restarted: its context stays cancelled.
	if m.NeedsRealRedis || m.Name == "streams" {
		p := testkit.NewRedisProc(t)
		if running {
			p.Start()
		}
		return &flakyRedis{addr: p.Addr(), stop: p.Kill, real: true, start: func() {
			p.Start()
			t.Cleanup(p.Kill)
		}}
	}
	mr := miniredis.RunT(t)
	r := &flakyRedis{addr: mr.Addr(), stop: mr.Close, start: func() {
		if err := mr.Restart(); err != nil {
			t.Fatalf("restart miniredis: %v", err)
		}
		t.Cleanup(mr.Close)
	}}
	if !running {
		mr.Close()
	}
	return r
}

// options returns client options for the Redis: no retries, so that a
// dead server is seen at once, and a short dial timeout.
func (r *flakyRedis) options() *redis.Options {
	return &redis.Options{Addr: r.addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond}
}

// env returns the Redis as a fixture environment.
func (r *flakyRedis) env() *testkit.Env {
	client := func(t testing.TB) *redis.Client {
		c := redis.NewClient(r.options())
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	return &testkit.Env{
		Name: "flaky", Ordered: true, Real: r.real,
		Client:  func(t testing.TB) redis.UniversalClient { return client(t) },
		Masters: func(t testing.TB) []*redis.Client { return []*redis.Client{client(t)} },
	}
}

// crossUntilDelivered emits numbered events named event from nsp until cl
// receives one (publishes made before the other server resubscribed are
// lost: pub/sub is at-most-once), and returns the time elapsed since start.
func crossUntilDelivered(t testing.TB, nsp socket.Namespace, cl *sioclient.Client, event string, start time.Time, within time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(within)
	for seq := 0; ; seq++ {
		nsp.Emit(event, seq)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := cl.WaitFor(ctx, event, 1)
		cancel()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q event crossed instances within %v (%d emitted)", event, within, seq+1)
		}
	}
}

// TestRedisDownAtStart: the constructor returns at once, the server delivers
// locally and answers from local state, one warning names the address,
// reconnection backs off (a handful of dials, not a hot loop, and no log
// line per attempt), and the adapter joins the cluster when Redis appears.
func TestRedisDownAtStart(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		testkit.VerifyNoLeaks(t)
		r := newFlakyRedis(t, m, false)
		var dials atomic.Int64
		o := r.options()
		o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
		rdb := redis.NewClient(o)
		t.Cleanup(func() { _ = rdb.Close() })
		w := newWatch(t)
		mode := modeWith(t, m, w.configure, func(o *Options) { o.MaxReconnectDelay = 400 * time.Millisecond })
		key := testkit.UniqueKey(t)
		start := time.Now()
		b := mode.New(rdb, key).(*Builder)
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Logf("constructor took %v", d)
		}
		nd := testkit.NewNode(t, b)
		testkit.WaitFor(t, "degraded", func() bool { return b.State() == StateDegraded })
		cl, _ := nd.Connect(t, "/")
		nd.Ns("/").Emit("local", 1)
		testkit.WaitEvents(t, cl, "local", 1)
		if got := nd.Ns("/").Adapter().ServerCount(); got != 1 {
			t.Errorf("ServerCount while degraded = %d, want 1", got)
		}
		if b.Stats().SkippedDegraded == 0 {
			t.Error("remote publish not counted as skipped while degraded")
		}

		// Watch the reconnection for one second (a measurement window, not a
		// wait): the backoff (100ms doubling, capped at 400ms here) allows a
		// few dials per second for each connection the mode keeps. A hot loop
		// makes thousands.
		before := dials.Load()
		window := time.NewTimer(time.Second)
		<-window.C
		n := dials.Load() - before
		t.Logf("%d connection attempts in 1s while Redis is down", n)
		if n > 30 {
			t.Errorf("%d connection attempts in 1s while Redis is down: not backing off", n)
		}
		lg := w.log(0)
		warns := lg.at(slog.LevelWarn)
		if len(warns) != 1 {
			t.Errorf("%d warnings while Redis is down, want exactly 1", len(warns))
		} else if a := attr(warns[0], "addr"); a != r.addr {
			t.Errorf("the warning names address %q, want %q", a, r.addr)
		}

		r.start()
		up := time.Now()
		testkit.WaitFor(t, "connected after Redis appeared", func() bool { return b.State() == StateConnected })
		t.Logf("connected %v after Redis appeared", time.Since(up).Round(time.Millisecond))
		st := w.state(0)
		st.expect(t, StateConnecting, StateDegraded, 1)
		st.expect(t, StateDegraded, StateConnected, 1)
		if n := lg.count(slog.LevelInfo); n != 1 {
			t.Errorf("%d info lines, want 1 (redis is back)", n)
		}
		if n := lg.count(slog.LevelWarn); n != 1 {
			t.Errorf("%d warnings in all, want 1", n)
		}

		// It is a cluster member again: a second server reaches its client,
		// and it reaches the second server's.
		rdb2 := redis.NewClient(r.options())
		t.Cleanup(func() { _ = rdb2.Close() })
		nd2 := testkit.NewNode(t, modeWith(t, m).New(rdb2, key))
		cl2, _ := nd2.Connect(t, "/")
		crossUntilDelivered(t, nd2.Ns("/"), cl, "to-first", time.Now(), testkit.WaitTimeout)
		crossUntilDelivered(t, nd.Ns("/"), cl2, "to-second", time.Now(), testkit.WaitTimeout)
	})
}

// TestRedisLostAndBackMidTraffic: with Redis gone, local delivery goes on in
// order and remote publishes are skipped and counted; when it is back, both
// servers resubscribe by themselves and broadcasts cross instances again;
// what was emitted meanwhile is not delivered remotely. Each server reports
// connected -> degraded and degraded -> connected once.
func TestRedisLostAndBackMidTraffic(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		r := newFlakyRedis(t, m, true)
		w := newWatch(t)
		mode := modeWith(t, m, w.configure, func(o *Options) {
			o.MaxReconnectDelay = 300 * time.Millisecond
			o.HealthCheckInterval = 200 * time.Millisecond
		})
		c := testkit.StartCluster(t, testkit.ClusterConfig{Env: r.env(), N: 2, Mode: mode})
		cls, _ := c.ConnectEach("/")
		b0, b1 := builderOf(c, 0), builderOf(c, 1)
		c.Ns(0, "/").Emit("before", 1)
		testkit.WaitEvents(t, cls[1], "before", 1)

		r.stop()
		lost := time.Now()
		for i, b := range []*Builder{b0, b1} {
			testkit.WaitFor(t, fmt.Sprintf("server %d degraded", i), func() bool { return b.State() == StateDegraded })
		}
		t.Logf("both degraded %v after Redis went away", time.Since(lost).Round(time.Millisecond))
		// Local delivery goes on: every message of a burst arrives, in order.
		for i := 0; i < 50; i++ {
			c.Ns(0, "/").Emit("during", i)
		}
		evs := testkit.WaitEvents(t, cls[0], "during", 50)
		for i, ev := range evs {
			if ev.Args[0] != float64(i) {
				t.Fatalf("local delivery out of order during the outage: %v at %d", ev.Args[0], i)
			}
		}
		if n := b0.Stats().SkippedDegraded; n < 50 {
			t.Errorf("SkippedDegraded = %d, want >= 50", n)
		}

		r.start()
		back := time.Now()
		for i, b := range []*Builder{b0, b1} {
			testkit.WaitFor(t, fmt.Sprintf("server %d connected again", i), func() bool { return b.State() == StateConnected })
		}
		t.Logf("both connected %v after Redis came back", time.Since(back).Round(time.Millisecond))
		// Connected means every subscription is confirmed again: the
		// first broadcast crosses.
		c.Ns(0, "/").Emit("after", 1)
		testkit.WaitEvents(t, cls[1], "after", 1)
		c.Ns(1, "/").Emit("after", 2)
		testkit.WaitEvents(t, cls[0], "after", 1)
		for i := range 2 {
			w.state(i).expect(t, StateConnected, StateDegraded, 1)
			w.state(i).expect(t, StateDegraded, StateConnected, 1)
			if n := builderOf(c, i).Stats().Reconnects; n != 1 {
				t.Errorf("server %d: Reconnects = %d, want 1", i, n)
			}
			if n := w.log(i).count(slog.LevelWarn); n != 1 {
				t.Errorf("server %d: %d warnings for one outage, want 1", i, n)
			}
		}
		c.Fence("/", cls...)
		if n := len(cls[1].Received("during")); n != 0 {
			t.Errorf("%d messages published during the outage were delivered remotely", n)
		}
	})
}

// TestBroadcastNeverWaitsOnRedis points the adapter at a server that accepts
// connections and never answers: while the adapter still waits for Redis
// (connecting, a publish in flight), broadcasts reach the local client at
// once and in order, and nothing has been published.
func TestBroadcastNeverWaitsOnRedis(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		testkit.VerifyNoLeaks(t)
		addr := testkit.SilentListener(t)
		rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 10 * time.Second})
		t.Cleanup(func() { _ = rdb.Close() })
		// Bounds long enough for the adapter to be still waiting on Redis
		// (not degraded) when the broadcasts are made, and short enough for
		// Close (which lets a publish in flight finish within
		// PublishTimeout); a short join wait, since no subscription will
		// ever be confirmed.
		b := modeWith(t, m, func(o *Options) {
			o.PublishTimeout = 1500 * time.Millisecond
			o.RequestsTimeout = 10 * time.Second
			o.JoinTimeout = 100 * time.Millisecond
		}).New(rdb, testkit.UniqueKey(t)).(*Builder)
		nd := testkit.NewNode(t, b)
		cl, _ := nd.Connect(t, "/")
		start := time.Now()
		var slowest time.Duration
		for i := 0; i < 100; i++ {
			s := time.Now()
			nd.Ns("/").Emit("n", i)
			slowest = max(slowest, time.Since(s))
		}
		evs := testkit.WaitEvents(t, cl, "n", 100)
		t.Logf("100 broadcasts delivered locally in %v (slowest Emit %v)", time.Since(start).Round(time.Microsecond), slowest)
		for i, ev := range evs {
			if ev.Args[0] != float64(i) {
				t.Fatalf("event %d carries %v", i, ev.Args[0])
			}
		}
		if s := b.Stats(); s.State != StateConnecting || s.Published != 0 || s.PublishErrors != 0 {
			t.Fatalf("stats %+v: the adapter stopped waiting on Redis, so the test did not prove anything", s)
		}
	})
}
