package redisadapter

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// faultCluster is a cluster on a redis-server process the test owns, with a
// state and log recorder per server.
type faultCluster struct {
	*cluster
	proc    *redisProc
	states  []*stateRecorder
	logs    []*logRecorder
	clients []*sioclient.Client
	socks   []*socket.Socket
}

func newFaultCluster(t *testing.T, n int, opts Options, extra ...string) *faultCluster {
	t.Helper()
	return newFaultClusterWith(t, n, opts, &redis.Options{}, extra...)
}

// newFaultClusterWith is newFaultCluster with go-redis client options (Addr
// is filled in).
func newFaultClusterWith(t *testing.T, n int, opts Options, client *redis.Options, extra ...string) *faultCluster {
	t.Helper()
	verifyNoLeaks(t)
	proc := startRedis(t, extra...)
	fc := &faultCluster{proc: proc}
	co := *client
	co.Addr = proc.Addr()
	c := &cluster{t: t, redis: &testRedis{opts: &co}, key: uniqueKey(t), nsps: []string{"/"}}
	for i := 0; i < n; i++ {
		st, lg := &stateRecorder{}, &logRecorder{}
		o := opts
		o.OnStateChange = st.record
		o.Logger = slog.New(lg)
		fc.states, fc.logs = append(fc.states, st), append(fc.logs, lg)
		c.nodes = append(c.nodes, c.startNode(&o))
	}
	t.Cleanup(c.close)
	c.waitSubscribed("/", n)
	fc.cluster = c
	for i := range c.nodes {
		cl, s := c.connect(i, "/")
		s.Join("stream")
		fc.clients, fc.socks = append(fc.clients, cl), append(fc.socks, s)
	}
	return fc
}

func (fc *faultCluster) waitAll(t *testing.T, st State) {
	t.Helper()
	for i, nd := range fc.nodes {
		waitFor(t, "server "+string(rune('0'+i))+" "+st.String(), func() bool { return nd.b.State() == st })
	}
}

// emitter emits numbered "s" events to room "stream" from one server until
// stopped, and records the largest Emit duration.
type emitter struct {
	next    atomic.Int64
	maxCall atomic.Int64
	stop    chan struct{}
	done    chan struct{}
}

func startEmitter(io *socket.Server, every time.Duration) *emitter {
	e := &emitter{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(e.done)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-e.stop:
				return
			case <-tk.C:
			}
			n := e.next.Add(1) - 1
			start := time.Now()
			io.To("stream").Emit("s", n)
			if d := int64(time.Since(start)); d > e.maxCall.Load() {
				e.maxCall.Store(d)
			}
		}
	}()
	return e
}

func (e *emitter) halt() int64 {
	close(e.stop)
	<-e.done
	return e.next.Load()
}

// seqs returns the sequence numbers a client received, checking they are
// strictly increasing (no duplicate, no reordering).
func seqs(t *testing.T, who string, cl *sioclient.Client) []int64 {
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

// TestKillRedisMidTraffic kills redis-server with SIGKILL under a steady
// stream of room broadcasts, then restarts it on the same port.
func TestKillRedisMidTraffic(t *testing.T) {
	fc := newFaultCluster(t, 3, Options{HealthCheckInterval: 500 * time.Millisecond, MaxReconnectDelay: time.Second})
	fc.waitAll(t, StateConnected)
	goroutinesBefore := runtime.NumGoroutine()

	em := startEmitter(fc.nodes[0].io, 2*time.Millisecond)
	waitFor(t, "remote deliveries flowing", func() bool { return len(fc.clients[1].Received("s")) > 20 })

	fc.proc.Kill()
	killedAt := time.Now()
	fc.waitAll(t, StateDegraded)
	t.Logf("all servers degraded %v after the kill", time.Since(killedAt).Round(time.Millisecond))
	duringStart := em.next.Load()
	waitFor(t, "local deliveries during the outage", func() bool {
		return int64(len(fc.clients[0].Received("s"))) > duringStart+50
	})

	fc.proc.Restart()
	restartedAt := time.Now()
	fc.waitAll(t, StateConnected)
	connectedAfter := time.Since(restartedAt)
	afterRestart := em.next.Load()
	waitFor(t, "remote deliveries resumed", func() bool {
		got := seqs(t, "client 1", fc.clients[1])
		return len(got) > 0 && got[len(got)-1] > afterRestart
	})
	t.Logf("cross-instance delivery resumed %v after the restart (state connected after %v)",
		time.Since(restartedAt).Round(time.Millisecond), connectedAfter.Round(time.Millisecond))

	total := em.halt()
	t.Logf("largest Emit call: %v", time.Duration(em.maxCall.Load()))
	// Fence from server 0: everything it sent before has arrived.
	fc.nodes[0].io.Emit("fence", 0)
	for _, cl := range fc.clients {
		waitEvents(t, cl, "fence", 1)
	}
	local := seqs(t, "client 0 (local)", fc.clients[0])
	if int64(len(local)) != total {
		t.Fatalf("local client got %d of %d broadcasts: local delivery lost messages", len(local), total)
	}
	for i := 1; i < 3; i++ {
		got := seqs(t, "remote client", fc.clients[i])
		t.Logf("remote client %d: %d of %d (the rest were emitted while Redis was down)", i, len(got), total)
	}
	for i, st := range fc.states {
		st.expect(t, StateConnected, StateDegraded, 1)
		if n := fc.logs[i].count(slog.LevelWarn); n > 2 {
			t.Errorf("server %d logged %d warnings during one outage", i, n)
		}
	}
	waitFor(t, "goroutines back to their level before the fault", func() bool {
		return runtime.NumGoroutine() <= goroutinesBefore+5
	})
}

// TestFrozenRedis freezes Redis while it accepts bytes and answers nothing:
// with CLIENT PAUSE (commands wait, unanswered), and with DEBUG SLEEP (the
// whole server stops; commands sent meanwhile all run when it wakes up). The
// health check degrades the adapter, local delivery never waits on the frozen
// link, public calls stay bounded, and when Redis answers again the cluster
// recovers without delivering anything twice.
//
// The client's ReadTimeout (100ms) is shorter than PublishTimeout: go-redis
// retries a PUBLISH whose reply timed out while its context is alive, and
// after DEBUG SLEEP both copies run, reaching clients twice — unless the
// adapter's publish deadline never outlives the read timeout.
func TestFrozenRedis(t *testing.T) {
	for _, freeze := range []string{"CLIENT PAUSE", "DEBUG SLEEP"} {
		t.Run(freeze, func(t *testing.T) { testFrozenRedis(t, freeze) })
	}
}

func testFrozenRedis(t *testing.T, freeze string) {
	opts := Options{HealthCheckInterval: 300 * time.Millisecond, MaxReconnectDelay: 500 * time.Millisecond, PublishTimeout: 300 * time.Millisecond}
	fc := newFaultClusterWith(t, 2, opts, &redis.Options{ReadTimeout: 100 * time.Millisecond}, "--enable-debug-command", "yes")
	fc.waitAll(t, StateConnected)
	admin := redis.NewClient(&redis.Options{Addr: fc.proc.Addr(), ReadTimeout: 10 * time.Second})
	t.Cleanup(func() { _ = admin.Close() })

	// A plain subscriber that keeps its connection through the freeze sees
	// every PUBLISH Redis runs, including late ones: a retried PUBLISH shows
	// up here as a frame seen twice.
	spy := admin.PSubscribe(context.Background(), newChannels(fc.key, "/", "").pattern)
	t.Cleanup(func() { _ = spy.Close() })
	if _, err := spy.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	spied := make(chan string, 1<<16)
	go func() {
		for m := range spy.Channel(redis.WithChannelHealthCheckInterval(time.Hour)) {
			spied <- m.Payload
		}
		close(spied)
	}()

	em := startEmitter(fc.nodes[0].io, 2*time.Millisecond)
	waitFor(t, "remote deliveries flowing", func() bool { return len(fc.clients[1].Received("s")) > 20 })

	pause := 4 * time.Second
	frozeAt := time.Now()
	slept := make(chan error, 1)
	if freeze == "CLIENT PAUSE" {
		if err := admin.Do(context.Background(), "CLIENT", "PAUSE", pause.Milliseconds(), "ALL").Err(); err != nil {
			t.Fatal(err)
		}
		slept <- nil
	} else {
		go func() { slept <- admin.Do(context.Background(), "DEBUG", "SLEEP", pause.Seconds()).Err() }()
	}
	fc.waitAll(t, StateDegraded)
	t.Logf("degraded %v after %s", time.Since(frozeAt).Round(time.Millisecond), freeze)
	start := time.Now()
	if n := ns(fc.cluster, 0, "/").Adapter().ServerCount(); n != 1 {
		t.Errorf("ServerCount while frozen = %d", n)
	}
	got, err := fetch(t, fc.nodes[0].io)
	if err != nil || len(got) != 1 {
		t.Errorf("fetchSockets while frozen: %d, %v", len(got), err)
	}
	if d := time.Since(start); d > opts.PublishTimeout+time.Second {
		t.Errorf("public calls took %v while Redis was frozen", d)
	}
	if err := <-slept; err != nil {
		t.Fatal(err)
	}
	fc.waitAll(t, StateConnected)
	t.Logf("connected again %v after the freeze began (freeze: %v)", time.Since(frozeAt).Round(time.Millisecond), pause)
	resumeFrom := em.next.Load()
	waitFor(t, "remote deliveries resumed", func() bool {
		got := seqs(t, "client 1", fc.clients[1])
		return len(got) > 0 && got[len(got)-1] > resumeFrom
	})
	total := em.halt()
	fc.nodes[0].io.Emit("fence", 0)
	for _, cl := range fc.clients {
		waitEvents(t, cl, "fence", 1)
	}
	if local := seqs(t, "client 0 (local)", fc.clients[0]); int64(len(local)) != total {
		t.Fatalf("local client got %d of %d", len(local), total)
	}
	remote := seqs(t, "client 1 (remote)", fc.clients[1]) // fails on any duplicate
	// The fence is the last frame of server 0: read the spy up to it.
	seen := map[string]int{}
	for payload := range spied {
		f, err := decodeBroadcast([]byte(payload))
		if err != nil {
			t.Fatalf("spy: %v", err)
		}
		data := f.Packet.Data.([]any)
		if data[0] == "fence" {
			break
		}
		key := fmt.Sprint(data[1])
		seen[key]++
		if seen[key] > 1 {
			t.Fatalf("Redis ran the PUBLISH of broadcast %s twice (a retried publish)", key)
		}
	}
	t.Logf("spy saw %d distinct frames, none twice", len(seen))
	t.Logf("remote client: %d of %d, no duplicates; largest Emit call %v", len(remote), total, time.Duration(em.maxCall.Load()))
}

// TestSlowSubscriberDisconnectedByRedis: Redis drops our subscriber when its
// output buffer passes client-output-buffer-limit; the adapter counts it,
// resubscribes and goes on.
func TestSlowSubscriberDisconnectedByRedis(t *testing.T) {
	fc := newFaultCluster(t, 2, Options{HealthCheckInterval: 500 * time.Millisecond, MaxReconnectDelay: 500 * time.Millisecond},
		"--client-output-buffer-limit", "pubsub 256kb 0 0")
	fc.waitAll(t, StateConnected)
	b1 := fc.nodes[1].b
	before := b1.Stats().Reconnects

	// Stall server 1's subscriber: dispatch needs this lock.
	b1.mu.Lock()
	flood := redis.NewClient(&redis.Options{Addr: fc.proc.Addr()})
	t.Cleanup(func() { _ = flood.Close() })
	big := make([]byte, 32<<10)
	chs := newChannels(fc.key, "/", "")
	ch := chs.roomChannel("nobody-here")
	pipe := flood.Pipeline()
	for i := 0; i < 200; i++ {
		pipe.Publish(context.Background(), ch, big)
	}
	_, err := pipe.Exec(context.Background())
	b1.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "server 1 reconnected after Redis dropped it", func() bool { return b1.Stats().Reconnects > before })
	fc.waitAll(t, StateConnected)
	waitFor(t, "server 1 resubscribed", func() bool {
		m, err := flood.PubSubNumSub(context.Background(), newChannels(fc.key, "/", "").request).Result()
		return err == nil && m[newChannels(fc.key, "/", "").request] == 2
	})
	fc.nodes[0].io.To("stream").Emit("after", 1)
	waitEvents(t, fc.clients[1], "after", 1)
}

// TestCloseUnderLoadAndDuringOutage closes servers and Builders while many
// goroutines broadcast, and while Redis is down: Close returns promptly,
// nothing panics, and nothing is left behind (checked by verifyNoLeaks).
func TestCloseUnderLoadAndDuringOutage(t *testing.T) {
	for _, outage := range []bool{false, true} {
		name := "under load"
		if outage {
			name = "during an outage"
		}
		t.Run(name, func(t *testing.T) {
			fc := newFaultCluster(t, 2, Options{PublishTimeout: 300 * time.Millisecond})
			fc.waitAll(t, StateConnected)
			if outage {
				fc.proc.Kill()
				fc.waitAll(t, StateDegraded)
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
						fc.nodes[g%2].io.To("stream").Emit("load", i)
					}
				}(g)
			}
			waitFor(t, "load running", func() bool { return len(fc.clients[0].Received("load")) > 100 })
			start := time.Now()
			for _, nd := range fc.nodes {
				if err := nd.b.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Builder.Close took %v under load", d)
			}
			t.Logf("both Builders closed in %v", time.Since(start).Round(time.Microsecond))
			close(stop)
			wg.Wait()
		})
	}
}
