package redisadapter

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/redis/go-redis/v9"
)

// What the streams transport does beyond the behaviours every mode shares
// (the table tests run those in modeStreams): offsets in emit order, replay
// after a blip, readers that respect Redis, Node's stream keys, hostile
// entries.

// streamsCluster starts n servers of m on env with a key known in advance,
// and deletes the cluster's streams and sessions from a real Redis after
// the servers closed (a stream outlives its servers, unlike pub/sub).
func streamsCluster(t *testing.T, env *testkit.Env, n int, m testkit.Mode, nsps ...string) *testkit.Cluster {
	t.Helper()
	key := testkit.UniqueKey(t)
	if env.Real {
		t.Cleanup(func() {
			for _, rdb := range env.Masters(t) {
				ctx := context.Background()
				keys, _ := rdb.Keys(ctx, key+"*").Result()
				if len(keys) > 0 {
					rdb.Del(ctx, keys...)
				}
				_ = rdb.Close()
			}
		})
	}
	c := testkit.StartCluster(t, testkit.ClusterConfig{Env: env, N: n, Mode: m, Nsps: nsps, Key: key})
	// A reader starts after the last entry of its stream: wait until every
	// reader has read once (the state is connected only then).
	for i := range c.Nodes {
		b := builderOf(c, i)
		testkit.WaitFor(t, "server connected", func() bool { return b.State() == StateConnected })
	}
	return c
}

// nthClientEnv returns env whose i-th client (from 0) gets adjusted by
// configure; the others are env's.
func nthClientEnv(env *testkit.Env, configure func(i int, o *redis.Options)) *testkit.Env {
	e := *env
	var n atomic.Int32
	e.Client = func(t testing.TB) redis.UniversalClient {
		var o *redis.Options
		switch {
		case env.Redis != nil:
			o = env.Redis.Options()
		case env.Proc != nil:
			o = env.Proc.Options()
		default:
			t.Fatalf("nthClientEnv: %s has no single address", env.Name)
		}
		configure(int(n.Add(1)-1), o)
		c := redis.NewClient(o)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	return &e
}

// TestStreamsOffsetsInEmitOrder: with recovery, the sending server's own
// clients get every recoverable packet with its entry id, after the XADD
// reply, in emit order; the other servers' clients get the same ids.
func TestStreamsOffsetsInEmitOrder(t *testing.T) {
	m := modeRecovery(time.Minute)
	c := streamsCluster(t, envFor(t, m), 2, m)
	clA, sA := c.Connect(0, "/")
	clB, _ := c.Connect(1, "/")
	nsA := c.Ns(0, "/")

	// A burst from one goroutine, with local packets (never written to the
	// stream) among the recoverable ones: all reach the local client in
	// emit order.
	const n = 300
	for i := range n {
		if i%50 == 25 {
			nsA.Local().Emit("burst", i)
		} else {
			nsA.Emit("burst", i)
		}
	}
	sA.Emit("direct", "to-the-socket") // socket.Emit is a broadcast to its room
	local := testkit.WaitEvents(t, clA, "burst", n)
	remote := testkit.WaitEvents(t, clB, "burst", n-n/50) // local ones stay on A
	direct := testkit.WaitEvents(t, clA, "direct", 1)

	prev := "0-0"
	offsets := map[int]string{}
	for i, ev := range local {
		if got := int(ev.Args[0].(float64)); got != i {
			t.Fatalf("local delivery out of order: event %d is %d", i, got)
		}
		off := offsetOf(ev)
		if i%50 == 25 {
			if off != "" || len(ev.Args) != 1 {
				t.Errorf("local packet %d carries %v", i, ev.Args)
			}
			continue
		}
		if off == "" {
			t.Fatalf("packet %d has no offset: %v", i, ev.Args)
		}
		if cmpOffsets(off, prev) <= 0 {
			t.Errorf("offset of %d (%s) not after %s", i, off, prev)
		}
		prev, offsets[i] = off, off
	}
	for _, ev := range remote {
		i := int(ev.Args[0].(float64))
		if want, ok := offsets[i]; ok && offsetOf(ev) != want {
			t.Errorf("packet %d: offset %q on B, %q on A", i, offsetOf(ev), want)
		}
	}
	if off := offsetOf(direct[0]); off == "" || cmpOffsets(off, prev) <= 0 {
		t.Errorf("socket.Emit: %v, want an offset after %s", direct[0].Args, prev)
	}
	if clA.LastOffset() != offsetOf(direct[0]) {
		t.Errorf("the client's last offset is %q", clA.LastOffset())
	}
	// Volatile packets carry no offset (a client that missed one does not
	// get it back). One may be dropped for a client whose transport is busy:
	// sent again until both clients got one.
	testkit.WaitFor(t, "volatile packets", func() bool {
		if len(clA.Received("volatile")) > 0 && len(clB.Received("volatile")) > 0 {
			return true
		}
		nsA.Volatile().Emit("volatile", "v")
		time.Sleep(20 * time.Millisecond)
		return false
	})
	for _, cl := range []*sioclient.Client{clA, clB} {
		if ev := cl.Received("volatile")[0]; !reflect.DeepEqual(ev.Args, []any{"v"}) {
			t.Errorf("volatile packet: %v, want no offset", ev.Args)
		}
	}
}

// TestStreamsDegradedNoOffset: while Redis is unreachable, packets are
// delivered locally at once, without an id; with Redis back, with one.
func TestStreamsDegradedNoOffset(t *testing.T) {
	m := modeRecovery(time.Minute)
	proc := testkit.StartRedis(t)
	// The restarted process is not one the leak check of the cluster knew.
	defer proc.Kill()
	c := streamsCluster(t, proc.Env(nil), 1, m)
	cl, _ := c.Connect(0, "/")
	b := builderOf(c, 0)
	ns := c.Ns(0, "/")

	ns.Emit("m", "up")
	if off := offsetOf(testkit.WaitEvents(t, cl, "m", 1)[0]); off == "" {
		t.Fatal("no offset while connected")
	}
	proc.Kill()
	testkit.WaitFor(t, "degraded", func() bool { return b.State() == StateDegraded })
	for i := range 5 {
		ns.Emit("m", fmt.Sprint("down-", i))
	}
	evs := testkit.WaitEvents(t, cl, "m", 6)
	for i, ev := range evs[1:] {
		if !reflect.DeepEqual(ev.Args, []any{fmt.Sprint("down-", i)}) {
			t.Errorf("while degraded: %v, want [down-%d] without offset", ev.Args, i)
		}
	}
	proc.Restart()
	testkit.WaitFor(t, "connected again", func() bool { return b.State() == StateConnected })
	ns.Emit("m", "back")
	if off := offsetOf(testkit.WaitEvents(t, cl, "m", 7)[6]); off == "" {
		t.Error("no offset once Redis is back")
	}
}

// TestStreamsBlip: a receiving server's connections to Redis are cut while
// traffic flows. The streams transport resumes reading from its last entry:
// nothing lost, nothing twice. The classic transport loses what was
// published meanwhile. Same scenario, both transports: the frames published
// while the proxy in front of the receiver is frozen sit in socket buffers
// when the connections are cut, so the classic loss is deterministic.
func TestStreamsBlip(t *testing.T) {
	results := map[string][2]int{}
	for _, m := range []testkit.Mode{modeClassic(), modeStreams()} {
		t.Run(m.Name, func(t *testing.T) {
			base := envFor(t, m)
			var proxy *testkit.Proxy
			target := ""
			if base.Redis != nil {
				target = base.Redis.Addr()
			}
			proxy = testkit.NewProxy(t, target)
			env := nthClientEnv(base, func(i int, o *redis.Options) {
				if i == 1 {
					o.Addr = proxy.Addr() // server B, the receiver
				}
			})
			c := streamsCluster(t, env, 2, m)
			cl, _ := c.Connect(1, "/")
			a, b := builderOf(c, 0), builderOf(c, 1)
			ns := c.Ns(0, "/")
			const phase = 100
			published := func(n uint64) func() bool {
				return func() bool { s := a.Stats(); return s.Published >= n && s.QueueLength == 0 }
			}

			for i := range phase {
				ns.Emit("n", i)
			}
			testkit.WaitEvents(t, cl, "n", phase)

			// The blip, mid-traffic.
			pub0 := a.Stats().Published
			proxy.Freeze()
			for i := phase; i < 2*phase; i++ {
				ns.Emit("n", i)
				time.Sleep(time.Millisecond)
			}
			testkit.WaitFor(t, "A published the second phase", published(pub0+phase))
			reconnects := b.Stats().Reconnects
			proxy.Cut()
			proxy.Thaw()
			testkit.WaitFor(t, "B reconnected", func() bool {
				return b.Stats().Reconnects > reconnects && b.State() == StateConnected
			})
			for i := 2 * phase; i < 3*phase; i++ {
				ns.Emit("n", i)
			}
			last := 3*phase - 1
			testkit.WaitFor(t, "the last message arrives", func() bool {
				evs := cl.Received("n")
				return len(evs) > 0 && int(evs[len(evs)-1].Args[0].(float64)) == last
			})
			// Anything still in flight for B.
			ns.Emit("end")
			testkit.WaitEvents(t, cl, "end", 1)

			seen := map[int]int{}
			evs := cl.Received("n")
			for _, ev := range evs {
				seen[int(ev.Args[0].(float64))]++
			}
			lost, dups := 3*phase-len(seen), len(evs)-len(seen)
			results[m.Name] = [2]int{lost, dups}
			t.Logf("%s: %d published, %d lost, %d duplicates (B reconnected %d time(s))", m.Name, 3*phase, lost, dups, b.Stats().Reconnects-reconnects)
			switch m.Name {
			case "streams":
				if lost != 0 || dups != 0 {
					t.Errorf("streams: %d lost, %d duplicates; want none", lost, dups)
				}
				for i, ev := range evs {
					if int(ev.Args[0].(float64)) != i {
						t.Errorf("streams: event %d is %v: out of order", i, ev.Args[0])
						break
					}
				}
			case "classic":
				if lost == 0 {
					t.Errorf("classic: nothing lost; the scenario did not cut anything")
				}
				if dups != 0 {
					t.Errorf("classic: %d duplicates", dups)
				}
			}
		})
	}
	t.Logf("lost/duplicates: %v", results)
}

// xreadCounter is a client whose XREAD calls are counted. Not being a
// *redis.Client, the Builder runs its commands on it directly.
type xreadCounter struct {
	*redis.Client
	xreads atomic.Int64
}

func (c *xreadCounter) XRead(ctx context.Context, a *redis.XReadArgs) *redis.XStreamSliceCmd {
	c.xreads.Add(1)
	return c.Client.XRead(ctx, a)
}

// TestStreamsReaderBackoff: with Redis down, a reader retries with capped
// exponential backoff (Node's reader loops at once), and resumes when Redis
// is back.
func TestStreamsReaderBackoff(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	proc := testkit.StartRedis(t)
	o := proc.Options()
	o.MaxRetries = -1
	rdb := &xreadCounter{Client: redis.NewClient(o)}
	t.Cleanup(func() { _ = rdb.Close() })
	key := testkit.UniqueKey(t)
	b := NewStreams(rdb, &StreamsOptions{Options: testOptions(key), StreamName: key, BlockTime: time.Second})
	testkit.NewNode(t, b, "/chat", "/admin")
	testkit.WaitFor(t, "connected", func() bool { return b.State() == StateConnected })

	proc.Kill()
	testkit.WaitFor(t, "degraded", func() bool { return b.State() == StateDegraded })
	const window = 3 * time.Second
	before := rdb.xreads.Load()
	time.Sleep(window)
	attempts := rdb.xreads.Load() - before
	t.Logf("XREAD attempts in %v with Redis down: %d (one reader for 3 namespaces; MaxReconnectDelay %v)", window, attempts, DefaultMaxReconnectDelay)
	// 100ms doubling, ±20%: about 5 in 3s.
	if attempts < 2 || attempts > 10 {
		t.Errorf("%d XREAD attempts in %v, want a handful", attempts, window)
	}
	proc.Restart()
	testkit.WaitForWithin(t, 2*DefaultMaxReconnectDelay, "connected again", func() bool { return b.State() == StateConnected })
}

// blockedReaders samples CLIENT LIST for d and returns, per client name, the
// largest number of connections seen blocked in XREAD at once.
func blockedReaders(t *testing.T, admin *redis.Client, d time.Duration) map[string]int {
	t.Helper()
	most := map[string]int{}
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		list, err := admin.ClientList(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		now := map[string]int{}
		for _, line := range strings.Split(list, "\n") {
			f := map[string]string{}
			for _, kv := range strings.Fields(line) {
				k, v, _ := strings.Cut(kv, "=")
				f[k] = v
			}
			if f["cmd"] == "xread" && strings.Contains(f["flags"], "b") {
				now[f["name"]]++
			}
		}
		for name, n := range now {
			most[name] = max(most[name], n)
		}
	}
	return most
}

// TestStreamsOneReaderPerStream: one blocking reader per stream per process,
// however many namespaces share the stream.
func TestStreamsOneReaderPerStream(t *testing.T) {
	for _, tc := range []struct {
		name    string
		count   int
		streams int
	}{
		{"one stream", 1, 1},
		// "/" and "/chat" hash to stream 3, "/custom" to stream 0.
		{"four streams", 4, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proc := testkit.StartRedis(t)
			env := nthClientEnv(proc.Env(nil), func(i int, o *redis.Options) { o.ClientName = fmt.Sprint("srv-", i) })
			m := modeStreams(func(o *StreamsOptions) { o.StreamCount = tc.count })
			c := streamsCluster(t, env, 2, m, "/chat", "/custom")
			keys := map[string]bool{}
			for _, nsp := range c.Nsps {
				keys[wire.StreamName(c.Key, tc.count, nsp)] = true
			}
			if len(keys) != tc.streams {
				t.Fatalf("the namespaces map to %d streams: %v", len(keys), keys)
			}
			// BlockTime is 1s: every reader is blocked most of the time.
			got := blockedReaders(t, proc.Client(t), 1500*time.Millisecond)
			want := map[string]int{"srv-0": tc.streams, "srv-1": tc.streams}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("connections blocked in XREAD per server: %v, want %v", got, want)
			}
		})
	}
}

// TestStreamsNegativeHashNamespace: with 4 streams, "/orders-namespace" is
// in "<name>--2", where Node writes it (Node's readers never read that key;
// ours read the key their namespace maps to, so Go servers exchange it).
func TestStreamsNegativeHashNamespace(t *testing.T) {
	m := modeStreams(func(o *StreamsOptions) { o.StreamCount = 4 })
	c := streamsCluster(t, envFor(t, m), 2, m, "/orders-namespace")
	key := c.Key + "--2"
	if got := wire.StreamName(c.Key, 4, "/orders-namespace"); got != key {
		t.Fatalf("stream of /orders-namespace: %q, want %q", got, key)
	}
	clA, _ := c.Connect(0, "/orders-namespace")
	clB, _ := c.Connect(1, "/orders-namespace")
	c.Ns(0, "/orders-namespace").Emit("order", "from-A")
	c.Ns(1, "/orders-namespace").Emit("order", "from-B")
	for _, cl := range []*sioclient.Client{clA, clB} {
		if got := texts(testkit.WaitEvents(t, cl, "order", 2)); len(got) != 2 {
			t.Errorf("client got %v", got)
		}
	}
	if n := xlen(t, c, key); n != 2 {
		t.Errorf("XLEN %s = %d, want 2", key, n)
	}
	for _, other := range []string{"-0", "-1", "-2", "-3"} {
		if n := xlen(t, c, c.Key+other); n != 0 {
			t.Errorf("XLEN %s = %d, want 0", c.Key+other, n)
		}
	}
}

// TestStreamsHostileEntries: entries no server wrote are dropped and
// counted as hostile frames are; the reader goes on.
func TestStreamsHostileEntries(t *testing.T) {
	m := modeStreams()
	c := streamsCluster(t, envFor(t, m), 1, m)
	cl, _ := c.Connect(0, "/")
	b := builderOf(c, 0)
	stream := streamOf(c, "/")
	ctx := context.Background()
	before := b.Stats()
	entries := hostileEntries()
	for _, e := range entries {
		if err := c.Masters[0].XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: e}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// An entry of a namespace this server does not serve, then a good one.
	good := `{"packet":{"type":2,"data":["m","good"]},"opts":{"rooms":[],"except":[],"flags":{}}}`
	c.Masters[0].XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"uid", "emitter", "nsp", "/elsewhere", "type", "3", "data", good}})
	c.Masters[0].XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"uid", "emitter", "nsp", "/", "type", "3", "data", good}})
	if got := texts(testkit.WaitEvents(t, cl, "m", 1)); !reflect.DeepEqual(got, []string{"good"}) {
		t.Errorf("received %v", got)
	}
	after := b.Stats()
	hostile := after.DroppedMalformed + after.DroppedOversized - before.DroppedMalformed - before.DroppedOversized
	t.Logf("malformed %d, oversized %d, unsupported %d", after.DroppedMalformed-before.DroppedMalformed,
		after.DroppedOversized-before.DroppedOversized, after.DroppedUnsupported-before.DroppedUnsupported)
	if hostile != uint64(len(entries)) {
		t.Errorf("%d hostile entries counted, want %d", hostile, len(entries))
	}
	if n := after.DroppedUnsupported - before.DroppedUnsupported; n != 1 {
		t.Errorf("%d entries of another namespace counted, want 1", n)
	}
	if n := after.Received - before.Received; n != uint64(len(entries)+2) {
		t.Errorf("Received grew by %d, want %d", n, len(entries)+2)
	}
}
