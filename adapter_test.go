package redisadapter

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/zishang520/socket.io/v2/socket"
	"go.uber.org/goleak"
)

// broadcastCase is one cross-instance broadcast behaviour, ported from the Node
// adapter's test suite (anchors §3, C1-C7 and S1).
type broadcastCase struct {
	name string
	// nsp is the namespace the clients connect to.
	nsp string
	// setup runs after every client is connected; socks[i] is the server-side
	// socket of the client connected to server i.
	setup func(c *cluster, socks []*socket.Socket)
	// emit performs the broadcast under test, from server 0 unless it says
	// otherwise.
	emit func(c *cluster, socks []*socket.Socket)
	// want lists the servers whose client must receive the event exactly
	// once; the others must not receive it.
	want []int
}

func ns(c *cluster, i int, nsp string) socket.Namespace {
	return c.nodes[i].io.Of(nsp, nil)
}

var payload = []any{1, "2", []byte{3, 4}}

func broadcastCases() []broadcastCase {
	return []broadcastCase{
		{
			name: "C1 to all clients, with binary",
			nsp:  "/",
			emit: func(c *cluster, _ []*socket.Socket) { c.nodes[0].io.Emit("test", payload...) },
			want: []int{0, 1, 2},
		},
		{
			name: "C2 to all clients in a namespace",
			nsp:  "/custom",
			emit: func(c *cluster, _ []*socket.Socket) { ns(c, 0, "/custom").Emit("test", payload...) },
			want: []int{0, 1, 2},
		},
		{
			name:  "C3 to a room joined on another instance",
			nsp:   "/",
			setup: func(_ *cluster, s []*socket.Socket) { s[1].Join("room1") },
			emit:  func(c *cluster, _ []*socket.Socket) { c.nodes[0].io.To("room1").Emit("test", payload...) },
			want:  []int{1},
		},
		{
			name:  "C4 to all clients except a room",
			nsp:   "/",
			setup: func(_ *cluster, s []*socket.Socket) { s[1].Join("room1") },
			emit:  func(c *cluster, _ []*socket.Socket) { c.nodes[0].io.Except("room1").Emit("test", payload...) },
			want:  []int{0, 2},
		},
		{
			name: "C5 to several rooms, each client once",
			nsp:  "/",
			setup: func(_ *cluster, s []*socket.Socket) {
				s[0].Join("room1")
				s[1].Join("room1", "room2")
				s[2].Join("room2", "room3")
			},
			emit: func(c *cluster, _ []*socket.Socket) {
				c.nodes[0].io.To("room1").To("room2").Except("room3").Emit("test", payload...)
			},
			want: []int{0, 1},
		},
		{
			name: "C6 local flag stays on its instance",
			nsp:  "/",
			emit: func(c *cluster, _ []*socket.Socket) { c.nodes[0].io.Local().Emit("test", payload...) },
			want: []int{0},
		},
		{
			name: "C7 to a single socket id on another instance",
			nsp:  "/",
			emit: func(c *cluster, s []*socket.Socket) {
				c.nodes[0].io.To(socket.Room(s[1].Id())).Emit("test", payload...)
			},
			want: []int{1},
		},
		{
			name:  "S1 to a numeric room",
			nsp:   "/",
			setup: func(_ *cluster, s []*socket.Socket) { s[0].Join("123") },
			emit:  func(c *cluster, _ []*socket.Socket) { c.nodes[1].io.To("123").Emit("test", payload...) },
			want:  []int{0},
		},
		{
			name: "compress flag",
			nsp:  "/",
			emit: func(c *cluster, _ []*socket.Socket) { c.nodes[0].io.Compress(true).Emit("test", payload...) },
			want: []int{0, 1, 2},
		},
		{
			name: "from a socket to its room, excluding itself",
			nsp:  "/",
			setup: func(_ *cluster, s []*socket.Socket) {
				for _, so := range s {
					so.Join("chat")
				}
			},
			emit: func(_ *cluster, s []*socket.Socket) { s[2].Broadcast().To("chat").Emit("test", payload...) },
			want: []int{0, 1},
		},
	}
}

// TestBroadcastAcrossInstances runs every broadcast case on three servers
// with one real Socket.IO client each, and asserts exactly-once delivery to
// the intended clients and none to the others, in the case's namespace and
// not in the other one.
func TestBroadcastAcrossInstances(t *testing.T) {
	for _, tc := range broadcastCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 3, nil, "/custom")
			other := "/custom"
			if tc.nsp == "/custom" {
				other = "/"
			}
			var clients, bystanders []*sioclient.Client
			var socks []*socket.Socket
			for i := range c.nodes {
				cl, s := c.connect(i, tc.nsp)
				clients = append(clients, cl)
				socks = append(socks, s)
				by, _ := c.connect(i, other)
				bystanders = append(bystanders, by)
			}
			if tc.setup != nil {
				tc.setup(c, socks)
			}
			tc.emit(c, socks)
			// Fence: every sender emits "fence" to all clients of both
			// namespaces after the action. Frames of one server arrive in
			// order, so once a client has every fence it has everything the
			// action sent it.
			for i := range c.nodes {
				ns(c, i, tc.nsp).Emit("fence", i)
				ns(c, i, other).Emit("fence", i)
			}
			for _, cl := range append(clients, bystanders...) {
				waitEvents(t, cl, "fence", len(c.nodes))
			}
			want := map[int]bool{}
			for _, i := range tc.want {
				want[i] = true
			}
			for i, cl := range clients {
				got := cl.Received("test")
				if !want[i] {
					if len(got) != 0 {
						t.Errorf("client on server %d received %d events, want none", i, len(got))
					}
					continue
				}
				if len(got) != 1 {
					t.Errorf("client on server %d received %d events, want exactly 1", i, len(got))
					continue
				}
				checkPayload(t, i, got[0])
			}
			for i, by := range bystanders {
				if n := len(by.Received("test")); n != 0 {
					t.Errorf("client of namespace %s on server %d received %d events leaked from %s", other, i, n, tc.nsp)
				}
			}
		})
	}
}

func checkPayload(t *testing.T, server int, ev sioclient.Event) {
	t.Helper()
	if len(ev.Args) != 3 || ev.Args[0] != float64(1) || ev.Args[1] != "2" {
		t.Errorf("client on server %d got args %#v", server, ev.Args)
		return
	}
	b, ok := ev.Args[2].([]byte)
	if !ok || !bytes.Equal(b, []byte{3, 4}) || !ev.Binary {
		t.Errorf("client on server %d got %#v (binary packet: %v), want []byte{3, 4} as binary", server, ev.Args[2], ev.Binary)
	}
}

// TestOneSubscriberConnectionPerProcess checks that all namespaces share one
// subscriber: PUBSUB NUMSUB counts each server once per namespace, and there
// is one pattern per namespace per server.
func TestOneSubscriberConnectionPerProcess(t *testing.T) {
	c := newCluster(t, 2, nil, "/a", "/b")
	rdb := c.redis.client(t)
	ctx := context.Background()
	for _, nsp := range c.nsps {
		ch := newChannels(c.key, nsp, "")
		m, err := rdb.PubSubNumSub(ctx, ch.request, ch.response).Result()
		if err != nil {
			t.Fatal(err)
		}
		if m[ch.request] != 2 || m[ch.response] != 2 {
			t.Errorf("%s: NUMSUB = %v, want 2 subscribers each", nsp, m)
		}
	}
	if c.redis.mini != nil {
		// miniredis tells which connection holds which subscription.
		if got := c.redis.mini.PubSubNumPat(); got != 2*len(c.nsps) {
			t.Errorf("NUMPAT = %d, want %d (one pattern per namespace per server)", got, 2*len(c.nsps))
		}
	}
	if c.redis.mini == nil {
		// On real Redis, CLIENT LIST shows each connection's subscription
		// counts: each server holds all its namespaces on one connection
		// (3 namespaces = 3 patterns and 9 channels).
		list, err := rdb.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
		if err != nil {
			t.Fatal(err)
		}
		conns := 0
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(" "+line+" ", " sub=9 psub=3 ") {
				conns++
			}
		}
		if conns != 2 {
			t.Errorf("%d connections hold sub=9 psub=3, want 2 (one per server):\n%s", conns, list)
		}
	}
}

// TestNamespaceCloseUnsubscribesOnlyItself checks Adapter.Close: the closed
// namespace's channels lose this server, the others keep it.
func TestNamespaceCloseUnsubscribesOnlyItself(t *testing.T) {
	c := newCluster(t, 1, nil, "/a")
	rdb := c.redis.client(t)
	a := ns(c, 0, "/a").Adapter().(*Adapter)
	a.Close()
	a.Close() // idempotent
	chA := newChannels(c.key, "/a", c.nodes[0].b.UID())
	chRoot := newChannels(c.key, "/", "")
	waitFor(t, "/a unsubscribed", func() bool {
		m, err := rdb.PubSubNumSub(context.Background(), chA.request, chA.response, chA.specificResponse).Result()
		return err == nil && m[chA.request] == 0 && m[chA.response] == 0 && m[chA.specificResponse] == 0
	})
	if c.redis.mini != nil {
		waitFor(t, "pattern of /a removed", func() bool { return c.redis.mini.PubSubNumPat() == 1 })
	}
	m, err := rdb.PubSubNumSub(context.Background(), chRoot.request).Result()
	if err != nil || m[chRoot.request] != 1 {
		t.Fatalf("/ lost its subscription: %v %v", m, err)
	}
}

// TestBuilderCloseLeavesNothingBehind checks that Close stops every goroutine
// the Builder started, is idempotent, and leaves the user's client usable.
func TestBuilderCloseLeavesNothingBehind(t *testing.T) {
	verifyNoLeaks(t)
	r := newTestRedis(t)
	rdb := r.client(t)
	b := New(rdb, &Options{Key: uniqueKey(t)})
	so := socket.DefaultServerOptions()
	so.SetAdapter(b)
	io := socket.NewServer(nil, so)
	io.Of("/x", nil)
	waitFor(t, "connected", func() bool { return b.State() == StateConnected })
	io.Emit("hello", 1)
	done := make(chan struct{})
	io.Close(func(error) { close(done) })
	<-done
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b.State() != StateClosed {
		t.Fatalf("state after Close = %v", b.State())
	}
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("user's client closed by Builder.Close: %v", err)
	}
}

func TestServerCount(t *testing.T) {
	c := newCluster(t, 3, nil)
	for i := range c.nodes {
		if got := ns(c, i, "/").Adapter().ServerCount(); got != 3 {
			t.Errorf("server %d: ServerCount = %d, want 3", i, got)
		}
	}
}

func TestOptionsDefaultsAndValidation(t *testing.T) {
	o := (*Options)(nil).withDefaults()
	if o.Key != "socket.io" || o.RequestsTimeout != DefaultRequestsTimeout || o.PublishTimeout != DefaultPublishTimeout ||
		o.PublishQueueSize != DefaultPublishQueueSize || o.Logger == nil {
		t.Fatalf("defaults: %+v", o)
	}
	bad := &Options{RequestsTimeout: -1, Key: "a#b", PublishQueueSize: -3}
	if err := bad.Validate(); err == nil {
		t.Fatal("invalid options validated")
	}
	if got := bad.withDefaults(); got.Key != DefaultKey || got.RequestsTimeout != DefaultRequestsTimeout {
		t.Fatalf("invalid fields not replaced by defaults: %+v", got)
	}
	defer func() {
		if r := recover(); r == nil {
			t.Fatal("New(nil) did not panic")
		} else if !reflect.DeepEqual(r, "redisadapter: New called with a nil redis client") {
			t.Fatalf("panic message %v", r)
		}
	}()
	New(nil, nil)
}

// verifyNoLeaks checks, after every cleanup of the test has run (servers,
// clients, miniredis), that no goroutine started during the test is left.
//
// Goroutines that are still winding down get a few seconds: the server's own
// connect timer can outlive a fast client briefly (a socket.io/v2 quirk).
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	// go-redis redials a client pool whose dials failed from a background
	// goroutine that exits up to a second after the pool closes; clients
	// belong to the tests (the adapter creates none), and a test that stopped
	// Redis can leave one behind for the next test to see.
	redial := goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial")
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := goleak.Find(ignore, redial)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("goroutines left behind: %v", err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// TestVolatileBroadcastAcrossInstances checks that volatile broadcasts cross
// instances. A volatile packet may be dropped for a client whose transport is
// busy, so the test emits numbered packets until every client has one, and
// asserts that none arrives twice.
func TestVolatileBroadcastAcrossInstances(t *testing.T) {
	c := newCluster(t, 3, nil)
	var clients []*sioclient.Client
	for i := range c.nodes {
		cl, _ := c.connect(i, "/")
		clients = append(clients, cl)
	}
	seq := 0
	waitFor(t, "every client received a volatile packet", func() bool {
		seq++
		c.nodes[0].io.Volatile().Emit("vol", seq)
		for _, cl := range clients {
			if len(cl.Received("vol")) == 0 {
				return false
			}
		}
		return true
	})
	for i := range c.nodes {
		c.nodes[i].io.Emit("fence", i)
	}
	for i, cl := range clients {
		waitEvents(t, cl, "fence", len(c.nodes))
		seen := map[float64]bool{}
		for _, ev := range cl.Received("vol") {
			n := ev.Args[0].(float64)
			if seen[n] {
				t.Errorf("client on server %d received volatile packet %v twice", i, n)
			}
			seen[n] = true
		}
	}
}
