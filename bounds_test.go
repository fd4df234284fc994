package redisadapter

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// The time bounds the README promises ("ServerCount at most PublishTimeout",
// "a publish batch at most PublishTimeout", "Builder.Close at most about
// PublishTimeout", "an emit with acknowledgements ... at most
// PublishTimeout", AllRooms within its context) must hold with go-redis'
// DEFAULT client options: ContextTimeoutEnabled off and ReadTimeout 3s, under
// which a context deadline alone does not bound a socket read (issue 11,
// item 3). Every mode is measured against three dead Redis servers, all on
// loopback:
//
//   - frozen: a real Redis behind a testkit.Proxy, frozen once the servers
//     are up (connections stay open, nothing is forwarded);
//   - silent: a listener that accepts and never answers;
//   - hanging dial: an address where a TCP connect never completes.
//
// On the old code (9e907aa) every command ran on the caller's client, so
// with ReadTimeout 3s: ServerCount took 3.0s, a publish batch 3.0s, Close up
// to 7.0s (2.7s/5.8s against a silent listener, 4.7s with a hanging dial),
// AllRooms ignored its context during NUMSUB (3s), and an emit with
// acknowledgements paid the NUMSUB wait twice (6s, past its 5s timeout).
// Each of those exceeds the bounds asserted here.

const (
	boundsPublishTimeout = 500 * time.Millisecond
	// boundsMargin is added to every bound but the ack emit's and Close's
	// with frames queued (those are under two PublishTimeouts): the bound is
	// a promise, the margin absorbs scheduling on a loaded 2-core machine
	// running the race detector and 36 measurements concurrently (measured
	// overshoot: tens of milliseconds). It stays well under the 3s that
	// go-redis' default ReadTimeout would impose.
	boundsMargin = time.Second
	// boundsAllRoomsDeadline is the deadline of AllRooms' context, shorter
	// than PublishTimeout so that honouring it is visible.
	boundsAllRoomsDeadline = 200 * time.Millisecond
	// boundsAckTimeout is the emit's own timeout (io.Timeout).
	boundsAckTimeout = 5 * time.Second
	// boundsRuns is the number of runs per mode and dead Redis.
	boundsRuns = 2
)

// boundsModes are the modes of the table, with PublishTimeout 500ms and the
// other options at their defaults (no join wait: the joins of the test's
// client are not what is measured). HealthCheckInterval is 5s so that the
// frozen link is not detected (which would make calls answer from local
// state at once) before the measurements are done.
func boundsModes(log *slog.Logger) []testkit.Mode {
	conf := func(o *Options) {
		o.Logger = log
		o.PublishTimeout = boundsPublishTimeout
		o.RequestsTimeout = DefaultRequestsTimeout
		o.HealthCheckInterval = 5 * time.Second
		o.JoinTimeout, o.NoJoinWait = 0, true
	}
	return []testkit.Mode{
		modeClassic(conf),
		modeRooms(conf),
		modeSharded(SubscriptionModeStatic, conf),
		modeSharded(SubscriptionModeDynamic, conf),
		modeSharded(SubscriptionModeDynamicPrivate, conf),
		modeStreams(func(o *StreamsOptions) { conf(&o.Options) }),
	}
}

// boundsFigures collects the measured durations, by dead Redis and measure.
type boundsFigures struct {
	mu sync.Mutex
	d  map[string][]time.Duration
}

func (f *boundsFigures) add(key string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.d[key] = append(f.d[key], d)
}

// log writes min/median/max of every measure.
func (f *boundsFigures) log(t *testing.T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, 0, len(f.d))
	for k := range f.d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "measured bounds (PublishTimeout %v, go-redis default options), over every mode and run:\n", boundsPublishTimeout)
	for _, k := range keys {
		ds := slices.Clone(f.d[k])
		slices.Sort(ds)
		fmt.Fprintf(&b, "  %-34s n=%-3d min %-8v median %-8v max %v\n", k, len(ds),
			ds[0].Round(time.Millisecond), ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
	t.Log(b.String())
}

// boundsDead is one kind of dead Redis: setup returns the options of a
// client of it (go-redis defaults but the address and credentials) and a
// function to call once the servers are up.
type boundsDead struct {
	name  string
	setup func(t *testing.T, m testkit.Mode) (opts *redis.Options, env *testkit.Env, kill func())
}

func boundsDeadRedis() []boundsDead {
	return []boundsDead{
		{"frozen", func(t *testing.T, m testkit.Mode) (*redis.Options, *testkit.Env, func()) {
			env := envFor(t, m)
			var o *redis.Options
			if env.Proc != nil {
				o = env.Proc.Options()
			} else {
				o = env.Redis.Options()
			}
			proxy := testkit.NewProxy(t, o.Addr)
			o.Addr = proxy.Addr()
			return o, env, proxy.Freeze
		}},
		{"silent", func(t *testing.T, _ testkit.Mode) (*redis.Options, *testkit.Env, func()) {
			return &redis.Options{Addr: testkit.SilentListener(t)}, nil, func() {}
		}},
		{"hanging-dial", func(t *testing.T, _ testkit.Mode) (*redis.Options, *testkit.Env, func()) {
			return &redis.Options{Addr: testkit.HangingDialAddr(t)}, nil, func() {}
		}},
	}
}

// TestTimeBoundsWithDefaultClientOptions measures, in every mode against
// every dead Redis, with a client built from go-redis' default options:
// ServerCount, AllRooms with a context deadline, an emit with
// acknowledgements answered by a local client, the time from a broadcast to
// its failed publish batch (Stats().PublishErrors), and Builder.Close with
// frames in flight and queued, then without. The servers are set up one
// after the other; the measurements, which are waits, run concurrently
// (-parallel would allow only GOMAXPROCS subtests at a time). The figures
// are logged at the end.
func TestTimeBoundsWithDefaultClientOptions(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	figs := &boundsFigures{d: map[string][]time.Duration{}}
	t.Cleanup(func() { figs.log(t) })
	var cases []*boundsCase
	for run := 0; run < boundsRuns; run++ {
		for _, dead := range boundsDeadRedis() {
			for i := range boundsModes(nil) {
				m := boundsModes(nil)[i]
				if dead.name == "frozen" && m.NeedsRealRedis && os.Getenv("REDIS_URL") == "" && os.Getenv("CI") == "" {
					if _, err := exec.LookPath("redis-server"); err != nil {
						t.Logf("%s: skipped against a frozen Redis: no redis-server and no REDIS_URL", m.Name)
						continue
					}
				}
				name := dead.name + "/" + m.Name
				log := slog.New(slog.NewTextHandler(boundsLogWriter{t, name}, &slog.HandlerOptions{Level: slog.LevelWarn}))
				cases = append(cases, &boundsCase{t: t, name: name, dead: dead, m: boundsModes(log)[i], figs: figs})
			}
		}
	}
	// Frozen first: their setup is the longest, and the other dead Redis
	// degrade the stream readers of their servers within PublishTimeout.
	for _, c := range cases {
		c.setup()
	}
	for _, c := range cases {
		c.kill()
	}
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(2)
		go func() { defer wg.Done(); c.measureQ() }()
		go func() { defer wg.Done(); c.measureP() }()
	}
	wg.Wait()
}

// boundsCase is one measurement of every bound in one mode against one dead
// Redis. Server Q, with a client that acks, measures ServerCount, AllRooms,
// the ack emit and a Close with frames in flight and queued; server P the
// publish batch and a plain Close. Against a frozen Redis both are up (and
// count each other) before the freeze. Against the other dead Redis, P is
// created when its measurement starts, so that its broadcast is published
// rather than skipped (a streams server degrades once its first stream read
// fails, PublishTimeout after its start). The measure functions run on
// goroutines of their own: they report with Errorf, never FailNow.
type boundsCase struct {
	t    *testing.T
	name string
	dead boundsDead
	m    testkit.Mode
	figs *boundsFigures

	opts *redis.Options
	key  string
	kill func()
	q, p *testkit.Node
}

func (c *boundsCase) client() *redis.Client {
	rdb := redis.NewClient(c.opts)
	c.t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// setup starts the servers, on the test's goroutine.
func (c *boundsCase) setup() {
	t := c.t
	t.Helper()
	var env *testkit.Env
	c.opts, env, c.kill = c.dead.setup(t, c.m)
	c.key = testkit.UniqueKey(t)
	c.q = testkit.NewNode(t, c.m.New(c.client(), c.key))
	if env != nil {
		c.p = testkit.NewNode(t, c.m.New(c.client(), c.key))
		c.p.Index = 1
		cl := &testkit.Cluster{T: t, Env: env, Mode: c.m, Key: c.key, Masters: env.Masters(t), Nodes: []*testkit.Node{c.q, c.p}, Nsps: []string{"/"}}
		cl.WaitServers(2)
	}
	cl, _ := c.q.Connect(t, "/")
	cl.OnAck("ev", func([]any) []any { return []any{"ok"} })
}

func (c *boundsCase) record(what string, d, bound time.Duration, st State) {
	c.figs.add(c.dead.name+" "+what, d)
	if d > bound {
		c.t.Errorf("%s: %s took %v (state %v at the call), over its bound %v", c.name, what, d, st, bound)
	}
}

func (c *boundsCase) measureQ() {
	t := c.t
	bq := c.q.B.(*Builder)
	ns := c.q.Ns("/")

	// ServerCount: at most PublishTimeout.
	st := bq.State()
	start := time.Now()
	n := ns.Adapter().ServerCount()
	c.record("ServerCount", time.Since(start), boundsPublishTimeout+boundsMargin, st)
	if n != 1 {
		t.Errorf("%s: ServerCount = %d, want 1 (this server alone)", c.name, n)
	}

	// AllRooms: returns at its context's deadline (with its error, or
	// without when NUMSUB failed fast).
	ctx, cancel := context.WithTimeout(context.Background(), boundsAllRoomsDeadline)
	st = bq.State()
	start = time.Now()
	_, _ = ns.Adapter().(*Adapter).AllRooms(ctx)
	cancel()
	c.record("AllRooms(ctx 200ms)", time.Since(start), boundsAllRoomsDeadline+boundsMargin, st)

	// An emit with acknowledgements answered by the local client: about one
	// PublishTimeout (the NUMSUB wait), neither two nor its 5s timeout. The
	// bound is under two PublishTimeouts: a margin of a whole second would
	// hide a second wait.
	type ackResult struct {
		args []any
		err  error
	}
	acked := make(chan ackResult, 1)
	st = bq.State()
	start = time.Now()
	if err := ns.Timeout(boundsAckTimeout).Emit("ev", socket.Ack(func(args []any, err error) {
		acked <- ackResult{args, err}
	})); err != nil {
		t.Errorf("%s: emit with ack: %v", c.name, err)
		return
	}
	select {
	case r := <-acked:
		c.record("emit with ack", time.Since(start), 2*boundsPublishTimeout, st)
		if r.err != nil || len(r.args) != 1 {
			t.Errorf("%s: emit with ack: %d acks, error %v; want the local client's ack", c.name, len(r.args), r.err)
		}
	case <-time.After(boundsAckTimeout + testkit.WaitTimeout):
		t.Errorf("%s: emit with ack never completed", c.name)
		return
	}

	// Close with a write in flight and frames queued: it flushes until
	// PublishTimeout after the call, the write in flight included. As for
	// the ack emit, the bound is under two PublishTimeouts: a flush given a
	// PublishTimeout of its own after the write in flight would take two.
	for i := 0; i < 3; i++ {
		ns.Emit("queued", i)
	}
	st = bq.State()
	start = time.Now()
	_ = bq.Close()
	c.record("Close (frames queued)", time.Since(start), 2*boundsPublishTimeout, st)
}

func (c *boundsCase) measureP() {
	t := c.t
	var bp *Builder
	var ns socket.Namespace
	if c.p != nil {
		bp, ns = c.p.B.(*Builder), c.p.Ns("/")
	} else {
		// A server without HTTP endpoint: Emit is all it does.
		bp = c.m.New(c.client(), c.key).(*Builder)
		so := socket.DefaultServerOptions()
		so.SetAdapter(bp)
		io := socket.NewServer(nil, so)
		t.Cleanup(func() { io.Close(nil); _ = bp.Close() })
		ns = io.Of("/", nil)
	}
	// A publish batch fails within PublishTimeout of the broadcast.
	before := bp.Stats()
	st := bp.State()
	start := time.Now()
	ns.Emit("b", 1)
	for {
		s := bp.Stats()
		if s.PublishErrors > before.PublishErrors {
			break
		}
		if s.SkippedDegraded > before.SkippedDegraded {
			t.Errorf("%s: the broadcast was skipped (state %v at the call): the publish bound was not exercised", c.name, st)
			return
		}
		if time.Since(start) > testkit.WaitTimeout {
			t.Errorf("%s: the publish batch never failed", c.name)
			return
		}
		time.Sleep(2 * time.Millisecond) // polling Stats
	}
	c.record("publish batch", time.Since(start), boundsPublishTimeout+boundsMargin, st)

	st = bp.State()
	start = time.Now()
	_ = bp.Close()
	c.record("Close", time.Since(start), boundsPublishTimeout+boundsMargin, st)
}

// boundsLogWriter writes the adapters' warnings to the test log.
type boundsLogWriter struct {
	t    *testing.T
	name string
}

func (w boundsLogWriter) Write(b []byte) (int, error) {
	w.t.Log(w.name + ": " + strings.TrimSpace(string(b)))
	return len(b), nil
}
