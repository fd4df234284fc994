package testkit_test

import (
	"sync"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// memBuilder is the server's default in-memory adapter constructor (what
// socket.NewServer uses without SetAdapter) with a Close: a mode with no
// cluster at all.
type memBuilder struct{ socket.AdapterBuilder }

func (memBuilder) Close() error { return nil }

var memMode = testkit.Mode{
	Name: "memory",
	New:  func(redis.UniversalClient, string) testkit.Builder { return &memBuilder{} },
}

// bus joins the builders of one test in process: a broadcast reaches every
// builder's adapter of the same namespace, and ServerCount counts the open
// builders. It is the smallest mode that behaves as a cluster.
type bus struct {
	mu       sync.Mutex
	builders map[*busBuilder]bool
}

type busBuilder struct {
	bus      *bus
	mu       sync.Mutex
	adapters map[string]*busAdapter
}

type busAdapter struct {
	socket.Adapter
	b *busBuilder
}

func busMode() testkit.Mode {
	bs := &bus{builders: map[*busBuilder]bool{}}
	return testkit.Mode{Name: "bus", New: func(redis.UniversalClient, string) testkit.Builder {
		b := &busBuilder{bus: bs, adapters: map[string]*busAdapter{}}
		bs.mu.Lock()
		bs.builders[b] = true
		bs.mu.Unlock()
		return b
	}}
}

func (b *busBuilder) New(nsp socket.Namespace) socket.Adapter {
	a := &busAdapter{Adapter: socket.MakeAdapter(), b: b}
	a.Prototype(a)
	a.Construct(nsp)
	b.mu.Lock()
	b.adapters[nsp.Name()] = a
	b.mu.Unlock()
	return a
}

func (b *busBuilder) Close() error {
	b.bus.mu.Lock()
	delete(b.bus.builders, b)
	b.bus.mu.Unlock()
	return nil
}

func (a *busAdapter) ServerCount() int64 {
	a.b.bus.mu.Lock()
	defer a.b.bus.mu.Unlock()
	return int64(len(a.b.bus.builders))
}

func (a *busAdapter) Broadcast(p *parser.Packet, opts *socket.BroadcastOptions) {
	a.deliver(p, opts)
	if opts != nil && opts.Flags != nil && opts.Flags.Local {
		return
	}
	var peers []*busAdapter
	a.b.bus.mu.Lock()
	for b := range a.b.bus.builders {
		if b == a.b {
			continue
		}
		b.mu.Lock()
		if pa := b.adapters[a.Nsp().Name()]; pa != nil {
			peers = append(peers, pa)
		}
		b.mu.Unlock()
	}
	a.b.bus.mu.Unlock()
	for _, pa := range peers {
		pa.deliver(p, opts)
	}
}

// deliver writes p to the adapter's sockets that opts selects. It does not
// call the in-memory adapter's Broadcast: that attaches a pre-encoded
// WebSocket frame to the packet, and engine.io v2.5.0 writes only the first
// of several queued packets carrying one (see the README), so two broadcasts
// in a row to one client would lose the second.
func (a *busAdapter) deliver(p *parser.Packet, opts *socket.BroadcastOptions) {
	if opts == nil {
		opts = &socket.BroadcastOptions{}
	}
	ids := a.Sockets(opts.Rooms)
	if opts.Except != nil && opts.Except.Len() > 0 {
		ids.Delete(a.Sockets(opts.Except).Keys()...)
	}
	p.Nsp = a.Nsp().Name()
	encoded := a.Nsp().Server().Encoder().Encode(p)
	for _, id := range ids.Keys() {
		if s, ok := a.Nsp().Sockets().Load(id); ok {
			s.Client().WriteToEngine(encoded, &socket.WriteOptions{})
		}
	}
}

// TestClusterMemoryMode runs the fixture with the default in-memory adapter
// on one server.
func TestClusterMemoryMode(t *testing.T) {
	c := testkit.NewCluster(t, testkit.EmbeddedOrURLEnv(t), 1, memMode, "/custom")
	cl, s := c.Connect(0, "/custom")
	if string(s.Id()) != cl.ID() {
		t.Fatalf("socket %s for client %s", s.Id(), cl.ID())
	}
	c.Ns(0, "/custom").Emit("hello", "world")
	if evs := testkit.WaitEvents(t, cl, "hello", 1); evs[0].Args[0] != "world" {
		t.Fatalf("got %v", evs[0].Args)
	}
	c.Fence("/custom", cl)
}

// TestClusterBusMode runs the fixture with three servers joined in process:
// broadcasts cross servers, rooms and fences work on an ordered and on an
// unordered environment, a server added later is counted, a closed one
// leaves the count.
func TestClusterBusMode(t *testing.T) {
	for _, ordered := range []bool{true, false} {
		name := "ordered"
		if !ordered {
			name = "unordered"
		}
		t.Run(name, func(t *testing.T) {
			env := testkit.EmbeddedOrURLEnv(t)
			env.Ordered = ordered
			c := testkit.NewCluster(t, env, 3, busMode(), "/custom")
			cls, socks := c.ConnectEach("/")
			if len(cls) != 3 {
				t.Fatalf("%d clients", len(cls))
			}
			socks[1].Join("room1")
			c.Nodes[0].IO.To("room1").Emit("r", 1)
			c.Nodes[2].IO.Emit("all", 2)
			c.Fence("/", cls...)
			for i, cl := range cls {
				if n := len(cl.Received("all")); n != 1 {
					t.Errorf("client %d got %d broadcasts", i, n)
				}
				want := 0
				if i == 1 {
					want = 1
				}
				if n := len(cl.Received("r")); n != want {
					t.Errorf("client %d got %d room broadcasts, want %d", i, n, want)
				}
			}
			if !ordered && len(cls[1].Received("room-fence")) == 0 {
				t.Error("no room fence on an unordered environment")
			}

			nd := c.AddNode()
			if nd.Index != 3 || c.Ns(0, "/custom").Adapter().ServerCount() != 4 {
				t.Fatalf("added node %d; count %d", nd.Index, c.Ns(0, "/custom").Adapter().ServerCount())
			}
			cl3, _ := c.Connect(3, "/custom")
			c.Ns(1, "/custom").Emit("late", 3)
			testkit.WaitEvents(t, cl3, "late", 1)

			c.Nodes[1].Close()
			c.WaitServers(3)
			if n := len(c.Live()); n != 3 {
				t.Fatalf("%d live nodes", n)
			}
			c.Fence("/", cls[0], cls[2])
		})
	}
}

// TestClusterSkipsRealRedisModeOnMiniredis: a mode that needs a real Redis
// is skipped on an embedded environment.
func TestClusterSkipsRealRedisModeOnMiniredis(t *testing.T) {
	env := testkit.EmbeddedOrURLEnv(t)
	env.Real = false
	mode := busMode()
	mode.NeedsRealRedis = true
	skipped := false
	t.Run("needs real Redis", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		testkit.NewCluster(t, env, 2, mode)
		t.Error("not skipped")
	})
	if !skipped {
		t.Error("a mode that needs a real Redis ran on miniredis")
	}
}

// TestClusterModeReady: WaitServers waits for the mode's Ready condition on
// every adapter.
func TestClusterModeReady(t *testing.T) {
	mode := busMode()
	var mu sync.Mutex
	asked := map[socket.Adapter]int{}
	readyAt := time.Now().Add(100 * time.Millisecond)
	mode.Ready = func(c *testkit.Cluster, a socket.Adapter) bool {
		mu.Lock()
		defer mu.Unlock()
		asked[a]++
		return time.Now().After(readyAt)
	}
	c := testkit.NewCluster(t, testkit.EmbeddedOrURLEnv(t), 2, mode, "/x")
	if time.Now().Before(readyAt) {
		t.Fatal("NewCluster returned before the mode was ready")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 4 {
		t.Fatalf("Ready asked of %d adapters, want 4 (2 servers × 2 namespaces)", len(asked))
	}
	_ = c
}

// TestNewNode: a lone server with the default adapter.
func TestNewNode(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	nd := testkit.NewNode(t, nil)
	cl, s := nd.Connect(t, "/")
	s.Emit("direct", "x")
	testkit.WaitEvents(t, cl, "direct", 1)
	nd.Close()
	nd.Close()
	if !nd.Closed() {
		t.Fatal("not closed")
	}
}
