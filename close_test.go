package redisadapter

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// Builder.Close: it leaves nothing subscribed even when it races a
// replacement of a subscriber connection (issue 11, item 2), and it may be
// called from anywhere, pending requests failing at once with ErrClosed
// (item 9).

// Iterations of TestCloseRacingSubscriberRebuilds: per mode and per way of
// forcing a rebuild, closeRaceWorkers workers (each with its own proxy) run
// closeRaceIterations iterations each.
const (
	closeRaceWorkers    = 4
	closeRaceIterations = 25
	// closeRaceWindow spreads Close over the rebuild: the reader sleeps
	// its first backoff step (100ms ±20%), then dials, pings and
	// subscribes again.
	closeRaceWindow = 250 * time.Millisecond
)

// envOptions returns client options of env's Redis (address and
// credentials, go-redis defaults otherwise).
func envOptions(env *testkit.Env) *redis.Options {
	if env.Proc != nil {
		return env.Proc.Options()
	}
	return env.Redis.Options()
}

// TestCloseRacingSubscriberRebuilds closes a Builder while its subscriber
// connection is being replaced, many times in every mode, two ways: the
// proxy between the Builder and Redis cuts every connection (a reset link),
// or it freezes until a health ping goes unanswered (HealthCheckInterval
// 25ms) and thaws. Close comes at a random moment of the following 250ms,
// before, during or after the rebuild. After each Close every connection the
// Builder opened is closed (the proxy counts none), and Redis counts no
// subscriber on any channel of the closed server (PUBSUB NUMSUB and
// SHARDNUMSUB) and no pattern matching its broadcast channels (PUBLISH on
// one returns 0: PUBSUB NUMPAT counts the patterns of every client of a
// shared Redis).
//
// On the old code (9e907aa) a rebuild queued by an unanswered ping was
// applied after Close had closed the PubSub it knew: the new PubSub stayed
// connected and subscribed for good (199 of 200 tries in the issue), and the
// proxy's connection count never returned to 0.
func TestCloseRacingSubscriberRebuilds(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	type worker struct {
		m       testkit.Mode
		variant string
		opts    *redis.Options
		proxy   *testkit.Proxy
		admin   *redis.Client
		real    bool
	}
	var workers []*worker
	for _, m := range allModes() {
		for _, variant := range []string{"cut", "unanswered-ping"} {
			mode := m
			if variant == "unanswered-ping" {
				mode = closeRaceMode(m)
			}
			env := envFor(t, m)
			if m.NeedsRealRedis && !env.Real {
				t.Logf("%s: skipped on %s", m.Name, env.Name)
				continue
			}
			for i := 0; i < closeRaceWorkers; i++ {
				o := envOptions(env)
				proxy := testkit.NewProxy(t, o.Addr)
				o.Addr = proxy.Addr()
				workers = append(workers, &worker{m: mode, variant: variant, opts: o, proxy: proxy, admin: env.Masters(t)[0], real: env.Real})
			}
		}
	}
	type tally struct {
		n, beforeRebuild, afterRebuild int
		worst                          time.Duration
	}
	var mu sync.Mutex
	tallies := map[string]*tally{}
	var wg sync.WaitGroup
	start := time.Now()
	for wi, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(wi), uint64(time.Now().UnixNano())))
			name := w.m.Name + "/" + w.variant
			for i := 0; i < closeRaceIterations; i++ {
				r, err := closeRaceIteration(w.m, w.variant, w.opts, w.proxy, w.admin, w.real, rng)
				if err != nil {
					t.Errorf("%s, iteration %d: %v", name, i, err)
					return
				}
				mu.Lock()
				tl := tallies[name]
				if tl == nil {
					tl = &tally{}
					tallies[name] = tl
				}
				tl.n++
				if r.rebuilt {
					tl.afterRebuild++
				} else {
					tl.beforeRebuild++
				}
				tl.worst = max(tl.worst, r.close)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for name, tl := range tallies {
		t.Logf("%-40s %d closes: %d before the adapter was connected again, %d after; slowest Close %v",
			name, tl.n, tl.beforeRebuild, tl.afterRebuild, tl.worst.Round(time.Millisecond))
	}
	t.Logf("%d iterations in %v", len(workers)*closeRaceIterations, time.Since(start).Round(time.Millisecond))
}

// closeRaceMode is m with a 25ms HealthCheckInterval, so that a frozen link
// is detected (and the connection replaced) within about 50ms.
func closeRaceMode(m testkit.Mode) testkit.Mode { return closeModeWith(m, closeRaceHealth) }

func closeRaceHealth(o *Options) { o.HealthCheckInterval = 25 * time.Millisecond }

type closeRaceResult struct {
	rebuilt bool          // the adapter was connected again before Close
	close   time.Duration // how long Close took
}

// closeRaceIteration starts a Builder behind proxy, forces a replacement of
// its subscriber connection, closes it at a random moment, and checks that
// nothing of it stays connected or subscribed. It runs on a worker
// goroutine: it returns errors instead of failing the test.
func closeRaceIteration(m testkit.Mode, variant string, opts *redis.Options, proxy *testkit.Proxy, admin *redis.Client, real bool, rng *rand.Rand) (closeRaceResult, error) {
	var res closeRaceResult
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	key := "close-" + newID()
	b := m.New(rdb, key).(*Builder)
	so := socket.DefaultServerOptions()
	so.SetAdapter(b)
	io := socket.NewServer(nil, so)
	defer io.Close(nil)
	io.Of("/", nil)
	if !closeWaitUntil(testkit.WaitTimeout, func() bool { return b.State() == StateConnected }) {
		_ = b.Close()
		return res, fmt.Errorf("never connected (state %v)", b.State())
	}
	reconnects := b.Stats().Reconnects
	switch variant {
	case "cut":
		proxy.Cut()
	default:
		proxy.Freeze()
		ok := closeWaitUntil(testkit.WaitTimeout, func() bool { return b.State() == StateDegraded })
		proxy.Thaw()
		if !ok {
			_ = b.Close()
			return res, errors.New("the unanswered ping was never detected")
		}
	}
	// A random moment of the rebuild window: the race under test.
	time.Sleep(time.Duration(rng.Int64N(int64(closeRaceWindow))))
	res.rebuilt = b.Stats().Reconnects > reconnects
	start := time.Now()
	_ = b.Close()
	res.close = time.Since(start)
	if !closeWaitUntil(3*time.Second, func() bool { return proxy.Conns() == 0 }) {
		return res, fmt.Errorf("%d connections of the closed server still open 3s after Close", proxy.Conns())
	}
	var counted string
	if !closeWaitUntil(3*time.Second, func() bool {
		counted = closedServerSubscriptions(admin, key, b.UID(), real)
		return counted == ""
	}) {
		return res, fmt.Errorf("3s after Close Redis still counts the closed server: %s", counted)
	}
	return res, nil
}

// closedServerSubscriptions describes what Redis still counts of server uid
// of key on namespace "/": subscribers of its channels in every protocol
// (NUMSUB, and SHARDNUMSUB on a real Redis), and the receivers of a frame
// published on one of its broadcast channels (a pattern subscription). It
// returns "" when there is none.
func closedServerSubscriptions(admin *redis.Client, key, uid string, real bool) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	cc := wire.NewClassicChannels(key, "/", uid)
	cl := wire.NewClusterChannels(key, "/", uid)
	channels := []string{cc.Broadcast, cc.Request, cc.Response, cc.SpecificResponse, cl.Main, cl.Private}
	out := ""
	if n, err := admin.PubSubNumSub(ctx, channels...).Result(); err != nil {
		return "NUMSUB: " + err.Error()
	} else {
		for _, c := range channels {
			if n[c] > 0 {
				out += fmt.Sprintf(" NUMSUB %s = %d;", c, n[c])
			}
		}
	}
	if real {
		if n, err := admin.PubSubShardNumSub(ctx, cl.Main, cl.Private).Result(); err != nil {
			return "SHARDNUMSUB: " + err.Error()
		} else {
			for c, v := range n {
				if v > 0 {
					out += fmt.Sprintf(" SHARDNUMSUB %s = %d;", c, v)
				}
			}
		}
	}
	if n, err := admin.Publish(ctx, cc.Room("probe"), "x").Result(); err != nil {
		return "PUBLISH: " + err.Error()
	} else if n > 0 {
		out += fmt.Sprintf(" PUBLISH %s reached %d subscribers (a pattern);", cc.Room("probe"), n)
	}
	return out
}

// closeWaitUntil polls cond until it holds or d has passed.
func closeWaitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// closeWithin runs fn on a goroutine of its own and fails the test when it
// has not returned within d (a deadlock).
func closeWithin(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v: deadlock", what, d)
	}
}

// closeDone reports whether every step of b's Close is over: its
// goroutines have exited and its pending requests have completed.
func closeDone(b *Builder) error {
	select {
	case <-b.closed:
	default:
		return errors.New("Close returned before the Builder was closed")
	}
	select {
	case <-b.pubDone:
	default:
		return errors.New("Close returned before the publisher stopped")
	}
	if st := b.State(); st != StateClosed {
		return fmt.Errorf("state %v after Close", st)
	}
	if n := b.Stats().PendingRequests; n != 0 {
		return fmt.Errorf("%d requests still pending after Close", n)
	}
	return nil
}

// TestCloseFromAnywhere calls Builder.Close, in every mode, from each place
// user code runs: OnStateChange (the notifier goroutine), a client event
// handler (a Socket.IO server goroutine), a serverSideEmit listener (the
// subscriber's reader goroutine, which Close waits for), a FetchSockets
// callback and a ServerSideEmitWithAck acknowledgement (both run where the
// last answer is read). None may deadlock (each call is bounded) or panic;
// the Builder ends closed, and a Close from the test's goroutine, called
// meanwhile or after, returns once all of it is done.
func TestCloseFromAnywhere(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		t.Run("OnStateChange", func(t *testing.T) {
			testkit.VerifyNoLeaks(t)
			env := envFor(t, m)
			if m.NeedsRealRedis && !env.Real {
				t.Skipf("%s needs a real Redis", m.Name)
			}
			var self atomic.Pointer[Builder]
			called := make(chan State, 4)
			mode := closeModeWith(m, func(o *Options) {
				o.OnStateChange = func(_, to State, _ error) {
					if to != StateConnected {
						return
					}
					b := self.Load()
					_ = b.Close() // on the notifier goroutine
					called <- b.State()
				}
			})
			// The first transition to connected needs a namespace, which
			// the node creates after New returns: self is set by then.
			b := mode.New(env.Client(t), testkit.UniqueKey(t)).(*Builder)
			self.Store(b)
			testkit.NewNode(t, b)
			select {
			case st := <-called:
				if st != StateClosed {
					t.Errorf("state %v after Close from OnStateChange", st)
				}
			case <-time.After(testkit.WaitTimeout):
				t.Fatal("Close from OnStateChange never returned: deadlock")
			}
			closeWithin(t, testkit.WaitTimeout, "Close after Close from OnStateChange", func() { _ = b.Close() })
			if err := closeDone(b); err != nil {
				t.Error(err)
			}
		})
		t.Run("client-event", func(t *testing.T) {
			c := newModeCluster(t, m, 1)
			b := builderOf(c, 0)
			cl, s := c.Connect(0, "/")
			returned := make(chan error, 1)
			s.On("bye", func(...any) {
				_ = b.Close()
				returned <- closeDone(b)
			})
			if err := cl.Emit("bye"); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-returned:
				if err != nil {
					t.Error(err)
				}
			case <-time.After(testkit.WaitTimeout):
				t.Fatal("Close from a client event handler never returned: deadlock")
			}
		})
		t.Run("serverSideEmit-listener", func(t *testing.T) {
			c := newModeCluster(t, m, 2)
			b := builderOf(c, 1)
			returned := make(chan State, 1)
			c.Ns(1, "/").On("stop", func(...any) {
				_ = b.Close() // on b's subscriber goroutine: does not wait for itself
				returned <- b.State()
			})
			if err := c.Ns(0, "/").ServerSideEmit("stop"); err != nil {
				t.Fatal(err)
			}
			select {
			case st := <-returned:
				if st != StateClosed {
					t.Errorf("state %v after Close from a serverSideEmit listener", st)
				}
			case <-time.After(testkit.WaitTimeout):
				t.Fatal("Close from a serverSideEmit listener never returned: deadlock")
			}
			closeWithin(t, testkit.WaitTimeout, "Close after Close from a listener", func() { _ = b.Close() })
			if err := closeDone(b); err != nil {
				t.Error(err)
			}
		})
		t.Run("FetchSockets-callback", func(t *testing.T) {
			c := newModeCluster(t, m, 2)
			b := builderOf(c, 0)
			type result struct {
				n   int
				err error
			}
			returned := make(chan result, 1)
			c.Ns(0, "/").Except().FetchSockets()(func(ss []*socket.RemoteSocket, err error) {
				_ = b.Close() // where server 1's answer was read
				returned <- result{len(ss), err}
			})
			select {
			case r := <-returned:
				if r.err != nil {
					t.Errorf("FetchSockets: %v", r.err)
				}
			case <-time.After(testkit.WaitTimeout):
				t.Fatal("Close from a FetchSockets callback never returned: deadlock")
			}
			closeWithin(t, testkit.WaitTimeout, "Close after Close from a callback", func() { _ = b.Close() })
			if err := closeDone(b); err != nil {
				t.Error(err)
			}
		})
		t.Run("ServerSideEmitWithAck-ack", func(t *testing.T) {
			c := newModeCluster(t, m, 2)
			b := builderOf(c, 0)
			c.Ns(1, "/").On("ping", func(args ...any) {
				if ack, ok := args[len(args)-1].(socket.Ack); ok {
					ack([]any{"pong"}, nil)
				}
			})
			type result struct {
				args []any
				err  error
			}
			returned := make(chan result, 1)
			if err := c.Ns(0, "/").ServerSideEmitWithAck("ping")(func(args []any, err error) {
				_ = b.Close()
				returned <- result{args, err}
			}); err != nil {
				t.Fatal(err)
			}
			select {
			case r := <-returned:
				if r.err != nil || len(r.args) != 1 {
					t.Errorf("ServerSideEmitWithAck: %v, %v; want one answer", r.args, r.err)
				}
			case <-time.After(testkit.WaitTimeout):
				t.Fatal("Close from a ServerSideEmitWithAck acknowledgement never returned: deadlock")
			}
			closeWithin(t, testkit.WaitTimeout, "Close after Close from an ack", func() { _ = b.Close() })
			if err := closeDone(b); err != nil {
				t.Error(err)
			}
		})
	})
}

// closeModeWith is m with configure applied to its options.
func closeModeWith(m testkit.Mode, configure func(*Options)) testkit.Mode {
	switch m.Name {
	case "classic":
		return modeClassic(configure)
	case "classic-rooms":
		return modeRooms(configure)
	case "streams":
		return modeStreams(func(o *StreamsOptions) { configure(&o.Options) })
	}
	return modeSharded(SubscriptionMode(m.Name[len("sharded-"):]), configure)
}

// closeSilentServer subscribes, from a plain client, to the channel by
// which mode m counts the servers of namespace "/" of key: Redis counts one
// more server, which never answers a request.
func closeSilentServer(t *testing.T, c *testkit.Cluster) {
	t.Helper()
	ctx := context.Background()
	var ps *redis.PubSub
	switch {
	case c.Mode.Name == "classic" || c.Mode.Name == "classic-rooms":
		ps = c.Masters[0].Subscribe(ctx, wire.NewClassicChannels(c.Key, "/", "").Request)
	case c.Mode.Name == "streams":
		ps = c.Masters[0].Subscribe(ctx, wire.NewClusterChannels(c.Key, "/", "").Main)
	default:
		ps = c.Masters[0].SSubscribe(ctx, wire.NewClusterChannels(c.Key, "/", "").Main)
	}
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("silent server: %v", err)
	}
}

// TestClosePendingRequestsAndConcurrentCloses: requests waiting for a
// server that never answers (a plain client subscribed where the servers
// are counted) complete at Close with an error wrapping ErrClosed, at once
// rather than RequestsTimeout (5s) later; Close is called by eight
// goroutines at once, and each call returns only once the Builder is
// closed, its goroutines gone and its requests completed. A ninth call
// after them returns at once.
func TestClosePendingRequestsAndConcurrentCloses(t *testing.T) {
	const requestsTimeout = 5 * time.Second
	// closeMargin bounds how long after Close the callbacks may run: far
	// below RequestsTimeout, generous for a loaded machine.
	const closeMargin = time.Second
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		m = closeModeWith(m, func(o *Options) { o.RequestsTimeout = requestsTimeout })
		c := newModeCluster(t, m, 1)
		b := builderOf(c, 0)
		closeSilentServer(t, c)
		ns := c.Ns(0, "/")
		testkit.WaitFor(t, "the silent server counted", func() bool { return ns.Adapter().ServerCount() == 2 })

		type result struct {
			what string
			err  error
			at   time.Time
		}
		results := make(chan result, 3)
		ns.Except().FetchSockets()(func(_ []*socket.RemoteSocket, err error) {
			results <- result{"FetchSockets", err, time.Now()}
		})
		if err := ns.ServerSideEmitWithAck("ping")(func(_ []any, err error) {
			results <- result{"ServerSideEmitWithAck", err, time.Now()}
		}); err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := ns.Adapter().(*Adapter).AllRooms(context.Background())
			results <- result{"AllRooms", err, time.Now()}
		}()
		testkit.WaitFor(t, "three pending requests", func() bool { return b.Stats().PendingRequests == 3 })

		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = b.Close()
				errs <- closeDone(b)
			}()
		}
		closeWithin(t, testkit.WaitTimeout, "eight concurrent Close calls", wg.Wait)
		t.Logf("eight concurrent Close calls returned in %v", time.Since(start).Round(time.Millisecond))
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		closeWithin(t, 100*time.Millisecond, "Close after Close", func() { _ = b.Close() })
		for i := 0; i < 3; i++ {
			select {
			case r := <-results:
				d := r.at.Sub(start)
				t.Logf("%s completed %v after Close: %v", r.what, d.Round(time.Millisecond), r.err)
				if !errors.Is(r.err, ErrClosed) {
					t.Errorf("%s completed with %v, want an error wrapping ErrClosed", r.what, r.err)
				}
				if d > closeMargin {
					t.Errorf("%s completed %v after Close, want at once (RequestsTimeout is %v)", r.what, d, requestsTimeout)
				}
			case <-time.After(requestsTimeout + testkit.WaitTimeout):
				t.Fatal("a pending request never completed")
			}
		}
	})
}
