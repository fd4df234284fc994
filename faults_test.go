package redisadapter

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// Faults of a real Redis under traffic, in every mode, on redis-server
// processes the tests own: kill -9 and restart, a frozen server (CLIENT
// PAUSE, DEBUG SLEEP) and a frozen link (a TCP proxy that stops forwarding),
// a subscriber Redis disconnects for its output buffer, and Close under load
// and during an outage.

// faultCluster is n servers of one mode on a redis-server process, each with
// a client in room "stream" and its own state and log recorder.
type faultCluster struct {
	*testkit.Cluster
	proc  *testkit.RedisProc
	w     *watch
	cls   []*sioclient.Client
	socks []*socket.Socket
}

// newFaultCluster starts the servers on env (a process environment) with
// mode m and the options configure sets.
func newFaultCluster(t *testing.T, m testkit.Mode, env *testkit.Env, n int, configure func(*Options)) *faultCluster {
	t.Helper()
	w := newWatch(t)
	mode := modeWith(t, m, w.configure, configure)
	c := testkit.StartCluster(t, testkit.ClusterConfig{Env: env, N: n, Mode: mode})
	fc := &faultCluster{Cluster: c, proc: env.Proc, w: w}
	fc.cls, fc.socks = c.ConnectEach("/")
	for _, s := range fc.socks {
		s.Join("stream")
	}
	return fc
}

func (fc *faultCluster) waitAll(t *testing.T, st State, within time.Duration) {
	t.Helper()
	for i := range fc.Nodes {
		b := builderOf(fc.Cluster, i)
		testkit.WaitForWithin(t, within, fmt.Sprintf("server %d %v", i, st), func() bool { return b.State() == st })
	}
}

// restartRedis starts p again; a cleanup registered now stops it before the
// leak check registered when the cluster started.
func restartRedis(t *testing.T, p *testkit.RedisProc) {
	t.Helper()
	p.Restart()
	t.Cleanup(p.Kill)
}

// traffic emits numbered "s" events to room "stream" from one server until
// halted, and records the slowest Emit call.
type traffic struct {
	next    atomic.Int64
	slowest atomic.Int64
	stop    chan struct{}
	done    chan struct{}
}

func startTraffic(nsp socket.Namespace, every time.Duration) *traffic {
	tr := &traffic{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-tr.stop:
				return
			case <-tk.C:
			}
			n := tr.next.Add(1) - 1
			start := time.Now()
			nsp.To("stream").Emit("s", n)
			if d := int64(time.Since(start)); d > tr.slowest.Load() {
				tr.slowest.Store(d)
			}
		}
	}()
	return tr
}

// halt stops the traffic and returns the number of events emitted.
func (tr *traffic) halt() int64 {
	close(tr.stop)
	<-tr.done
	return tr.next.Load()
}

// seqsOf returns the sequence numbers cl received, checking that they
// strictly increase (no duplicate, no reordering).
func seqsOf(t *testing.T, who string, cl *sioclient.Client) []int64 {
	t.Helper()
	var out []int64
	for _, ev := range cl.Received("s") {
		n := int64(ev.Args[0].(float64))
		if len(out) > 0 && n <= out[len(out)-1] {
			t.Fatalf("%s: %d after %d: duplicate or out of order", who, n, out[len(out)-1])
		}
		out = append(out, n)
	}
	return out
}

// lastSeq returns the last sequence number cl received, or -1.
func lastSeq(cl *sioclient.Client) int64 {
	evs := cl.Received("s")
	if len(evs) == 0 {
		return -1
	}
	return int64(evs[len(evs)-1].Args[0].(float64))
}

// checkTraffic stops the traffic, fences, and checks that the local client
// got every event in order and that the others got theirs in order without
// duplicates; it returns the total emitted.
func (fc *faultCluster) checkTraffic(t *testing.T, tr *traffic) int64 {
	t.Helper()
	total := tr.halt()
	fc.Fence("/", fc.cls...)
	if local := seqsOf(t, "client 0 (local)", fc.cls[0]); int64(len(local)) != total {
		t.Fatalf("local client got %d of %d broadcasts: local delivery lost messages", len(local), total)
	}
	for i := 1; i < len(fc.cls); i++ {
		got := seqsOf(t, fmt.Sprintf("client %d (remote)", i), fc.cls[i])
		t.Logf("remote client %d: %d of %d, in order, no duplicate (the rest was emitted while Redis was unreachable)", i, len(got), total)
	}
	t.Logf("slowest Emit call: %v", time.Duration(tr.slowest.Load()))
	return total
}

// broadcastChannel returns the pub/sub channel the broadcasts of b to one
// room go through, and whether it is sharded; "" for a streams server
// (stream entries).
func broadcastChannel(b *Builder, nsp, room string) (string, bool) {
	k := kindOf(b)
	switch {
	case k.streams:
		return "", false
	case k.sharded && k.mode == SubscriptionModeStatic:
		ch := wire.NewClusterChannels(b.opts.Key, nsp, b.uid)
		return ch.Main, true
	}
	return roomChannel(b, nsp, room)
}

// TestKillRedisMidTraffic kills redis-server (SIGKILL) under a steady stream
// of room broadcasts, then restarts it on the same port: local delivery is
// never interrupted and stays in order, every server reports one transition
// to degraded, remote delivery resumes by itself, nothing arrives twice, and
// the goroutines return to their level.
func TestKillRedisMidTraffic(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		fc := newFaultCluster(t, m, testkit.ProcessEnv(t), 3, func(o *Options) {
			o.HealthCheckInterval = 500 * time.Millisecond
			o.MaxReconnectDelay = time.Second
		})
		fc.waitAll(t, StateConnected, testkit.WaitTimeout)
		goroutinesBefore := runtime.NumGoroutine()

		tr := startTraffic(fc.Ns(0, "/"), 2*time.Millisecond)
		testkit.WaitFor(t, "remote deliveries flowing", func() bool { return len(fc.cls[1].Received("s")) > 20 })

		fc.proc.Kill()
		killedAt := time.Now()
		fc.waitAll(t, StateDegraded, testkit.WaitTimeout)
		t.Logf("all servers degraded %v after the kill", time.Since(killedAt).Round(time.Millisecond))
		during := tr.next.Load()
		testkit.WaitFor(t, "local deliveries during the outage", func() bool { return lastSeq(fc.cls[0]) > during+50 })

		restartRedis(t, fc.proc)
		restartedAt := time.Now()
		fc.waitAll(t, StateConnected, testkit.WaitTimeout)
		connectedAfter := time.Since(restartedAt)
		after := tr.next.Load()
		for i := 1; i < 3; i++ {
			testkit.WaitFor(t, fmt.Sprintf("remote deliveries resumed on client %d", i), func() bool { return lastSeq(fc.cls[i]) > after })
		}
		t.Logf("cross-instance delivery resumed %v after the restart (every server connected after %v)",
			time.Since(restartedAt).Round(time.Millisecond), connectedAfter.Round(time.Millisecond))

		fc.checkTraffic(t, tr)
		for i := range fc.Nodes {
			fc.w.state(i).expect(t, StateConnected, StateDegraded, 1)
			fc.w.state(i).expect(t, StateDegraded, StateConnected, 1)
			if n := fc.w.log(i).count(slog.LevelWarn); n != 1 {
				t.Errorf("server %d logged %d warnings for one outage, want 1", i, n)
			}
		}
		testkit.WaitFor(t, "goroutines back to their level before the fault", func() bool {
			return runtime.NumGoroutine() <= goroutinesBefore+5
		})
	})
}

// freezes are the ways a test freezes Redis for d: the whole server (CLIENT
// PAUSE, DEBUG SLEEP: what was sent meanwhile runs when it wakes up), or the
// link (a proxy that stops forwarding in both directions; what was sent on a
// connection the client gave up on is never delivered).
var freezes = []struct {
	name   string
	freeze func(t *testing.T, p *testkit.RedisProc, proxy *testkit.Proxy, d time.Duration) (thawed <-chan error)
}{
	{"frozen link", func(t *testing.T, _ *testkit.RedisProc, proxy *testkit.Proxy, d time.Duration) <-chan error {
		proxy.Freeze()
		res := make(chan error, 1)
		time.AfterFunc(d, func() {
			proxy.Thaw()
			res <- nil
		})
		return res
	}},
	{"CLIENT PAUSE", func(t *testing.T, p *testkit.RedisProc, _ *testkit.Proxy, d time.Duration) <-chan error {
		p.Pause(t, d)
		res := make(chan error, 1)
		time.AfterFunc(d, func() { res <- nil })
		return res
	}},
	{"DEBUG SLEEP", func(t *testing.T, p *testkit.RedisProc, _ *testkit.Proxy, d time.Duration) <-chan error {
		return p.DebugSleep(d)
	}},
}

// TestFrozenRedis freezes Redis under traffic: the idle ping degrades every
// server, local delivery never waits on the frozen link, ServerCount and
// fetchSockets answer from local state, and when Redis answers again the
// cluster recovers by itself: nothing is delivered twice, and Redis never
// ran a publish twice (a spy that keeps its own connection sees every frame
// Redis published, or the stream holds every entry).
//
// The servers' clients have a ReadTimeout (100ms) shorter than
// PublishTimeout: a retried PUBLISH or XADD whose reply timed out would run
// twice after the freeze.
//
// The frozen link runs in every mode; the server freezes, which the same
// idle ping detects, in one mode per transport (classic, sharded dynamic,
// streams), to keep the suite's run time sane.
func TestFrozenRedis(t *testing.T) {
	onePerTransport := map[string]bool{"classic": true, "sharded-dynamic": true, "streams": true}
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		for i, fz := range freezes {
			if i > 0 && !onePerTransport[m.Name] {
				continue
			}
			t.Run(strings.ReplaceAll(fz.name, " ", "_"), func(t *testing.T) {
				testFrozenRedis(t, m, fz.freeze)
			})
		}
	})
}

func testFrozenRedis(t *testing.T, m testkit.Mode, freeze func(*testing.T, *testkit.RedisProc, *testkit.Proxy, time.Duration) <-chan error) {
	p := testkit.StartRedis(t, "--enable-debug-command", "yes")
	proxy := testkit.NewProxy(t, p.Addr())
	env := p.Env(func(o *redis.Options) {
		o.Addr = proxy.Addr()
		o.ReadTimeout = 100 * time.Millisecond
	})
	fc := newFaultCluster(t, m, env, 2, func(o *Options) {
		o.HealthCheckInterval = 300 * time.Millisecond
		o.MaxReconnectDelay = 500 * time.Millisecond
		o.PublishTimeout = 300 * time.Millisecond
	})
	fc.waitAll(t, StateConnected, testkit.WaitTimeout)
	spy := newFrameSpy(t, p, builderOf(fc.Cluster, 0))

	tr := startTraffic(fc.Ns(0, "/"), 2*time.Millisecond)
	testkit.WaitFor(t, "remote deliveries flowing", func() bool { return len(fc.cls[1].Received("s")) > 20 })

	const pause = time.Second
	frozeAt := time.Now()
	thawed := freeze(t, p, proxy, pause)
	fc.waitAll(t, StateDegraded, testkit.WaitTimeout)
	t.Logf("degraded %v after the freeze began", time.Since(frozeAt).Round(time.Millisecond))
	start := time.Now()
	if n := fc.Ns(0, "/").Adapter().ServerCount(); n != 1 {
		t.Errorf("ServerCount while frozen = %d, want 1", n)
	}
	got := make(chan int, 1)
	fc.Ns(0, "/").Except().FetchSockets()(func(s []*socket.RemoteSocket, err error) {
		if err != nil {
			t.Errorf("fetchSockets while frozen: %v", err)
		}
		got <- len(s)
	})
	if n := <-got; n != 1 {
		t.Errorf("fetchSockets while frozen found %d sockets, want the local one", n)
	}
	t.Logf("ServerCount and fetchSockets while frozen answered in %v", time.Since(start).Round(time.Microsecond))
	if err := <-thawed; err != nil {
		t.Fatal(err)
	}
	thawedAt := time.Now()
	fc.waitAll(t, StateConnected, testkit.WaitTimeout)
	t.Logf("connected again %v after the freeze ended (freeze: %v)", time.Since(thawedAt).Round(time.Millisecond), pause)
	resumeFrom := tr.next.Load()
	testkit.WaitFor(t, "remote deliveries resumed", func() bool { return lastSeq(fc.cls[1]) > resumeFrom })
	t.Logf("remote delivery resumed %v after the freeze ended", time.Since(thawedAt).Round(time.Millisecond))
	fc.checkTraffic(t, tr)
	spy.checkNoDuplicate(t)
}

// frameSpy sees every broadcast frame Redis published for room "stream" of
// a server's namespace "/" (and the fences), on a connection of its own that
// no freeze of the servers' links touches; for a streams server it reads
// the stream.
type frameSpy struct {
	admin  *redis.Client
	stream string // streams mode: the stream key
	mu     sync.Mutex
	seen   []string
}

func newFrameSpy(t *testing.T, p *testkit.RedisProc, b *Builder) *frameSpy {
	t.Helper()
	o := p.Options()
	o.ReadTimeout = -1
	s := &frameSpy{admin: redis.NewClient(o)}
	t.Cleanup(func() { _ = s.admin.Close() })
	ctx := context.Background()
	k := kindOf(b)
	if k.streams {
		s.stream = b.t.(*streamsTransport).ns("/").stream
		return s
	}
	var ps *redis.PubSub
	if k.sharded {
		room, _ := broadcastChannel(b, "/", "stream")
		main := wire.NewClusterChannels(b.opts.Key, "/", "").Main
		ps = s.admin.SSubscribe(ctx, main, room)
	} else {
		ps = s.admin.PSubscribe(ctx, wire.NewClassicChannels(b.opts.Key, "/", "").Pattern)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = ps.Close()
		<-done
	})
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(done)
		for {
			msg, err := ps.ReceiveMessage(ctx)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.seen = append(s.seen, msg.Payload)
			s.mu.Unlock()
		}
	}()
	return s
}

// checkNoDuplicate waits until the spy has seen the fence (the servers' last
// frames), then fails if Redis published a frame twice.
func (s *frameSpy) checkNoDuplicate(t *testing.T) {
	t.Helper()
	var frames []string
	if s.stream != "" {
		entries, err := s.admin.XRange(context.Background(), s.stream, "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			d, _ := e.Values["data"].(string)
			frames = append(frames, d)
		}
	} else {
		testkit.WaitFor(t, "the spy saw the fence", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, f := range s.seen {
				if strings.Contains(f, "fence") {
					return true
				}
			}
			return false
		})
		s.mu.Lock()
		frames = append(frames, s.seen...)
		s.mu.Unlock()
	}
	seen := map[string]bool{}
	n := 0
	for _, f := range frames {
		if strings.Contains(f, "fence") {
			continue
		}
		if seen[f] {
			t.Fatalf("Redis published one broadcast frame twice (a retried write): %q", f)
		}
		seen[f] = true
		n++
	}
	t.Logf("Redis published %d distinct broadcast frames, none twice", n)
}

// TestSlowSubscriberDisconnectedByRedis: Redis drops a server's subscriber
// connection when its output buffer passes client-output-buffer-limit; the
// adapter counts it, resubscribes everything and goes on.
func TestSlowSubscriberDisconnectedByRedis(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		fc := newFaultCluster(t, m, testkit.ProcessEnv(t, "--client-output-buffer-limit", "pubsub 256kb 0 0"), 2, func(o *Options) {
			o.HealthCheckInterval = 500 * time.Millisecond
			o.MaxReconnectDelay = 500 * time.Millisecond
		})
		fc.waitAll(t, StateConnected, testkit.WaitTimeout)
		b1 := builderOf(fc.Cluster, 1)
		before := b1.Stats().Reconnects

		// A channel server 1 subscribes to: room "stream", or for streams
		// the namespace's public channel.
		ch, sharded := broadcastChannel(b1, "/", "stream")
		if ch == "" {
			ch = wire.NewClusterChannels(b1.opts.Key, "/", "").Main
		}
		// Stall server 1's readers (Builder.receive needs this lock) while
		// 6 MB arrive for it.
		b1.mu.Lock()
		flood := fc.proc.Client(t)
		big := make([]byte, 32<<10)
		pipe := flood.Pipeline()
		for i := 0; i < 200; i++ {
			if sharded {
				pipe.SPublish(context.Background(), ch, big)
			} else {
				pipe.Publish(context.Background(), ch, big)
			}
		}
		_, err := pipe.Exec(context.Background())
		b1.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, "server 1 reconnected after Redis dropped it", func() bool { return b1.Stats().Reconnects > before })
		fc.waitAll(t, StateConnected, testkit.WaitTimeout)
		testkit.WaitFor(t, "server 0 counts both servers", func() bool { return fc.Ns(0, "/").Adapter().ServerCount() == 2 })
		fc.Ns(0, "/").To("stream").Emit("after", 1)
		testkit.WaitEvents(t, fc.cls[1], "after", 1)
		t.Logf("server 1: %+v", b1.Stats())
	})
}

// TestCloseUnderLoadAndDuringOutage closes the Builders while eight
// goroutines broadcast, with Redis up and with Redis killed: Close returns
// (its duration is logged), nothing panics, and nothing is left behind (the
// fixture's leak check).
func TestCloseUnderLoadAndDuringOutage(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		for _, outage := range []bool{false, true} {
			name := "under_load"
			if outage {
				name = "during_an_outage"
			}
			t.Run(name, func(t *testing.T) {
				fc := newFaultCluster(t, m, testkit.ProcessEnv(t), 2, func(o *Options) { o.PublishTimeout = 300 * time.Millisecond })
				fc.waitAll(t, StateConnected, testkit.WaitTimeout)
				if outage {
					fc.proc.Kill()
					fc.waitAll(t, StateDegraded, testkit.WaitTimeout)
				}
				stop := make(chan struct{})
				var wg sync.WaitGroup
				for g := 0; g < 8; g++ {
					wg.Add(1)
					go func(g int) {
						defer wg.Done()
						for i := 0; ; i++ {
							select {
							case <-stop:
								return
							default:
							}
							fc.Ns(g%2, "/").To("stream").Emit("load", i)
						}
					}(g)
				}
				testkit.WaitFor(t, "load running", func() bool { return len(fc.cls[0].Received("load")) > 100 })
				start := time.Now()
				for i := range fc.Nodes {
					if err := builderOf(fc.Cluster, i).Close(); err != nil {
						t.Fatal(err)
					}
				}
				t.Logf("both Builders closed in %v", time.Since(start).Round(time.Microsecond))
				close(stop)
				wg.Wait()
				for i := range fc.Nodes {
					if st := builderOf(fc.Cluster, i).State(); st != StateClosed {
						t.Errorf("server %d: state %v after Close", i, st)
					}
				}
			})
		}
	})
}
