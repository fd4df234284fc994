package redisadapter

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// The sharded suite runs on a private redis-server (miniredis has no sharded
// pub/sub: no SSUBSCRIBE, SPUBLISH or PUBSUB SHARDNUMSUB), started by each
// top-level test, and again on a Redis Cluster of three masters
// (rediscluster_test.go). Both skip without redis-server, unless CI=true.

// shTestBuilder is what the fixtures need of a Builder or a ShardedBuilder.
type shTestBuilder interface {
	socket.AdapterConstructor
	Close() error
	State() State
	Stats() Stats
}

var (
	_ shTestBuilder = (*Builder)(nil)
	_ shTestBuilder = (*ShardedBuilder)(nil)
)

// shEnv is the Redis deployment a suite runs on.
type shEnv struct {
	name string
	// client returns a new client, closed at the end of the test.
	client func(t testing.TB) redis.UniversalClient
	// masters returns one client per master (one on a standalone server).
	masters func(t testing.TB) []*redis.Client
	// ordered: every server reads all channels on one connection, so frames
	// arrive in the order they were published (true on a standalone
	// server). On a cluster, channels on different masters are not ordered.
	ordered bool
}

// standaloneEnv starts a private redis-server for the test.
func standaloneEnv(t testing.TB) *shEnv {
	t.Helper()
	p := startRedis(t)
	newClient := func(t testing.TB) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: p.Addr()})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	return &shEnv{
		name:    "standalone",
		ordered: true,
		client:  func(t testing.TB) redis.UniversalClient { return newClient(t) },
		masters: func(t testing.TB) []*redis.Client { return []*redis.Client{newClient(t)} },
	}
}

// shardNumSub returns PUBSUB SHARDNUMSUB of channel summed over the masters.
func (e *shEnv) shardNumSub(t testing.TB, masters []*redis.Client, channel string) int64 {
	t.Helper()
	var n int64
	for _, m := range masters {
		r, err := m.PubSubShardNumSub(context.Background(), channel).Result()
		if err != nil {
			return -1
		}
		n += r[channel]
	}
	return n
}

// shNode is one Socket.IO server of a sharded test cluster.
type shNode struct {
	io      *socket.Server
	http    *httptest.Server
	b       shTestBuilder
	sockets map[string]chan *socket.Socket
}

// shCluster is a set of Socket.IO servers sharing one Redis deployment.
type shCluster struct {
	t       *testing.T
	env     *shEnv
	prefix  string
	masters []*redis.Client
	nodes   []*shNode
	nsps    []string
	// clients[i] is connected to server i on "/", socks[i] is its socket.
	clients []*sioclient.Client
	socks   []*socket.Socket
}

// shBuilderFunc makes the adapter constructor of one server.
type shBuilderFunc func(rdb redis.UniversalClient, prefix string) shTestBuilder

// mkSharded returns a shBuilderFunc for NewSharded with opts (nil: defaults).
func mkSharded(opts *ShardedOptions) shBuilderFunc {
	return func(rdb redis.UniversalClient, prefix string) shTestBuilder {
		o := ShardedOptions{}
		if opts != nil {
			o = *opts
		}
		o.ChannelPrefix = prefix
		if o.RequestsTimeout == 0 {
			o.RequestsTimeout = time.Second
		}
		// Generous bounds: the suite also runs on loaded 2-core machines,
		// where a 500ms publish deadline degrades a starved sender.
		if o.PublishTimeout == 0 {
			o.PublishTimeout = 2 * time.Second
		}
		if o.JoinTimeout == 0 {
			o.JoinTimeout = 3 * time.Second
		}
		return NewSharded(rdb, &o)
	}
}

// mkClassic returns a shBuilderFunc for New.
func mkClassic(opts *Options) shBuilderFunc {
	return func(rdb redis.UniversalClient, prefix string) shTestBuilder {
		o := Options{}
		if opts != nil {
			o = *opts
		}
		o.Key = prefix
		if o.RequestsTimeout == 0 {
			o.RequestsTimeout = time.Second
		}
		if o.PublishTimeout == 0 {
			o.PublishTimeout = 2 * time.Second
		}
		return New(rdb, &o)
	}
}

// newShCluster starts n servers with namespaces "/" and nsps, each with its
// own client and builder, waits until every server counts n servers on
// every namespace, and connects one client per server to "/".
func newShCluster(t *testing.T, env *shEnv, n int, mk shBuilderFunc, nsps ...string) *shCluster {
	t.Helper()
	verifyNoLeaks(t)
	c := &shCluster{t: t, env: env, prefix: uniqueKey(t), nsps: append([]string{"/"}, nsps...), masters: env.masters(t)}
	for i := 0; i < n; i++ {
		c.nodes = append(c.nodes, c.startNode(mk))
	}
	t.Cleanup(c.close)
	c.waitServers(n)
	for i := range c.nodes {
		cl, s := c.connect(i, "/")
		c.clients = append(c.clients, cl)
		c.socks = append(c.socks, s)
	}
	return c
}

func (c *shCluster) startNode(mk shBuilderFunc) *shNode {
	nd := &shNode{sockets: map[string]chan *socket.Socket{}}
	nd.b = mk(c.env.client(c.t), c.prefix)
	so := socket.DefaultServerOptions()
	// The connect timeout runs until the namespace connection completes,
	// which includes the join of the socket's own room (and, in the dynamic
	// modes, the wait for its subscription).
	so.SetConnectTimeout(10 * time.Second)
	so.SetAdapter(nd.b)
	nd.io = socket.NewServer(nil, so)
	for _, nsp := range c.nsps {
		ch := make(chan *socket.Socket, 64)
		nd.sockets[nsp] = ch
		nd.io.Of(nsp, func(args ...any) { ch <- args[0].(*socket.Socket) })
	}
	nd.http = httptest.NewServer(nd.io.ServeHandler(nil))
	return nd
}

func (c *shCluster) close() {
	for _, nd := range c.nodes {
		nd.close()
	}
}

func (nd *shNode) close() {
	done := make(chan struct{})
	nd.io.Close(func(error) { close(done) })
	select {
	case <-done:
	case <-time.After(waitTimeout):
	}
	nd.http.Close()
	_ = nd.b.Close()
}

// waitServers waits until every server counts n servers on every namespace
// and, for sharded servers, its response channel is subscribed.
func (c *shCluster) waitServers(n int) {
	c.t.Helper()
	for i, nd := range c.nodes {
		for _, nsp := range c.nsps {
			a := nd.io.Of(nsp, nil).Adapter()
			waitFor(c.t, fmt.Sprintf("server %d counts %d servers on %s", i, n, nsp), func() bool { return a.ServerCount() == int64(n) })
			if sa, ok := a.(*ShardedAdapter); ok {
				waitFor(c.t, fmt.Sprintf("response channel of server %d on %s", i, nsp), func() bool {
					return c.env.shardNumSub(c.t, c.masters, sa.response) == 1
				})
			}
		}
	}
}

func (c *shCluster) connect(i int, nsp string) (*sioclient.Client, *socket.Socket) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cl, err := sioclient.Dial(ctx, c.nodes[i].http.URL, nsp)
	if err != nil {
		c.t.Fatalf("connect to server %d %s: %v", i, nsp, err)
	}
	c.t.Cleanup(func() { _ = cl.Close() })
	for {
		select {
		case s := <-c.nodes[i].sockets[nsp]:
			if string(s.Id()) == cl.ID() {
				return cl, s
			}
		case <-ctx.Done():
			c.t.Fatalf("server %d never saw the connection on %s", i, nsp)
			return nil, nil
		}
	}
}

func (c *shCluster) ns(i int, nsp string) socket.Namespace { return c.nodes[i].io.Of(nsp, nil) }

// fence makes every server broadcast "fence" to every client of nsp and
// waits until each client in cls has the fence of every server. Frames of one
// server on an ordered deployment arrive in order, so every frame published
// before has then been delivered; on a cluster, room channels can live on
// other masters, so it also fences every room (roomFence). A fence a degraded
// server could not publish is emitted again.
func (c *shCluster) fence(nsp string, cls ...*sioclient.Client) {
	c.t.Helper()
	token := uniqueKey(c.t)
	has := func(cl *sioclient.Client, i int) bool {
		for _, ev := range cl.Received("fence") {
			if len(ev.Args) == 2 && ev.Args[0] == float64(i) && ev.Args[1] == token {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		var missing []int
		for i := range c.nodes {
			for _, cl := range cls {
				if !has(cl, i) {
					missing = append(missing, i)
					break
				}
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("fence on %s: servers %v never reached every client", nsp, missing)
		}
		for _, i := range missing {
			c.ns(i, nsp).Emit("fence", i, token)
		}
		for wait := time.Now().Add(time.Second); time.Now().Before(wait); time.Sleep(5 * time.Millisecond) {
			done := true
			for _, i := range missing {
				for _, cl := range cls {
					done = done && has(cl, i)
				}
			}
			if done {
				break
			}
		}
	}
	if !c.env.ordered {
		c.roomFence(nsp, token, cls)
	}
}

// roomFence completes fence on a Redis Cluster, where a room's channel may
// live on another master than the namespace channel: frames to a room are
// ordered only with frames to the same room. Every server emits a marker to
// every room of the clients in cls (their socket-id rooms included), and each
// client waits for the markers of all its rooms from every server. Markers
// that did not arrive (a degraded server) are emitted again.
func (c *shCluster) roomFence(nsp, token string, cls []*sioclient.Client) {
	c.t.Helper()
	rooms := map[socket.Room]bool{}
	want := map[*sioclient.Client][]socket.Room{}
	for _, cl := range cls {
		var s *socket.Socket
		for i := range c.nodes {
			if so, ok := c.ns(i, nsp).Sockets().Load(socket.SocketId(cl.ID())); ok {
				s = so
			}
		}
		if s == nil {
			c.t.Fatalf("room fence on %s: no server holds client %s", nsp, cl.ID())
		}
		for _, r := range s.Rooms().Keys() {
			rooms[r] = true
			want[cl] = append(want[cl], r)
		}
	}
	got := func(cl *sioclient.Client, i int, r socket.Room) bool {
		for _, ev := range cl.Received("room-fence") {
			if len(ev.Args) == 3 && ev.Args[0] == token && ev.Args[1] == float64(i) && ev.Args[2] == string(r) {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		missing := map[int]map[socket.Room]bool{}
		for cl, rs := range want {
			for _, r := range rs {
				for i := range c.nodes {
					if !got(cl, i, r) {
						if missing[i] == nil {
							missing[i] = map[socket.Room]bool{}
						}
						missing[i][r] = true
					}
				}
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("room fence on %s: markers %v never arrived", nsp, missing)
		}
		for i, rs := range missing {
			for r := range rs {
				c.ns(i, nsp).To(r).Emit("room-fence", token, i, string(r))
			}
		}
		for wait := time.Now().Add(time.Second); time.Now().Before(wait); time.Sleep(5 * time.Millisecond) {
			done := true
			for i, rs := range missing {
				for r := range rs {
					for cl, crs := range want {
						for _, cr := range crs {
							if cr == r {
								done = done && got(cl, i, r)
							}
						}
					}
				}
			}
			if done {
				break
			}
		}
	}
}

// shBroadcastCase is one cross-server broadcast (the classic suite's cases,
// plus rooms that matter to the sharded channel choice).
type shBroadcastCase struct {
	name  string
	nsp   string
	setup func(c *shCluster, socks []*socket.Socket)
	emit  func(c *shCluster, socks []*socket.Socket)
	want  []int
}

func shardedBroadcastCases() []shBroadcastCase {
	return []shBroadcastCase{
		{
			name: "to all clients, with binary",
			nsp:  "/",
			emit: func(c *shCluster, _ []*socket.Socket) { c.nodes[0].io.Emit("test", payload...) },
			want: []int{0, 1, 2},
		},
		{
			name: "to all clients in a namespace",
			nsp:  "/custom",
			emit: func(c *shCluster, _ []*socket.Socket) { c.ns(0, "/custom").Emit("test", payload...) },
			want: []int{0, 1, 2},
		},
		{
			name:  "to a room joined on another server",
			nsp:   "/",
			setup: func(_ *shCluster, s []*socket.Socket) { s[1].Join("room1") },
			emit:  func(c *shCluster, _ []*socket.Socket) { c.nodes[0].io.To("room1").Emit("test", payload...) },
			want:  []int{1},
		},
		{
			name:  "to a room in a custom namespace",
			nsp:   "/custom",
			setup: func(_ *shCluster, s []*socket.Socket) { s[2].Join("room1") },
			emit:  func(c *shCluster, _ []*socket.Socket) { c.ns(1, "/custom").To("room1").Emit("test", payload...) },
			want:  []int{2},
		},
		{
			name:  "to all clients except a room",
			nsp:   "/",
			setup: func(_ *shCluster, s []*socket.Socket) { s[1].Join("room1") },
			emit:  func(c *shCluster, _ []*socket.Socket) { c.nodes[0].io.Except("room1").Emit("test", payload...) },
			want:  []int{0, 2},
		},
		{
			name: "to one room except another",
			nsp:  "/",
			setup: func(_ *shCluster, s []*socket.Socket) {
				s[0].Join("room1")
				s[1].Join("room1", "muted")
				s[2].Join("room1")
			},
			emit: func(c *shCluster, _ []*socket.Socket) {
				c.nodes[2].io.To("room1").Except("muted").Emit("test", payload...)
			},
			want: []int{0, 2},
		},
		{
			name: "to several rooms, each client once",
			nsp:  "/",
			setup: func(_ *shCluster, s []*socket.Socket) {
				s[0].Join("room1")
				s[1].Join("room1", "room2")
				s[2].Join("room2", "room3")
			},
			emit: func(c *shCluster, _ []*socket.Socket) {
				c.nodes[0].io.To("room1").To("room2").Except("room3").Emit("test", payload...)
			},
			want: []int{0, 1},
		},
		{
			name: "local flag stays on its server",
			nsp:  "/",
			emit: func(c *shCluster, _ []*socket.Socket) { c.nodes[0].io.Local().Emit("test", payload...) },
			want: []int{0},
		},
		{
			name: "private message to a Go socket id on another server",
			nsp:  "/",
			emit: func(c *shCluster, s []*socket.Socket) {
				c.nodes[0].io.To(socket.Room(s[1].Id())).Emit("test", payload...)
			},
			want: []int{1},
		},
		{
			name:  "to a numeric room",
			nsp:   "/",
			setup: func(_ *shCluster, s []*socket.Socket) { s[0].Join("123") },
			emit:  func(c *shCluster, _ []*socket.Socket) { c.nodes[1].io.To("123").Emit("test", payload...) },
			want:  []int{0},
		},
		{
			name:  "to a public room of 20 characters (Node sends it on the main channel)",
			nsp:   "/",
			setup: func(_ *shCluster, s []*socket.Socket) { s[2].Join("abcdefghijklmnopqrst") },
			emit: func(c *shCluster, _ []*socket.Socket) {
				c.nodes[0].io.To("abcdefghijklmnopqrst").Emit("test", payload...)
			},
			want: []int{2},
		},
		{
			name: "compress and volatile flags",
			nsp:  "/",
			emit: func(c *shCluster, _ []*socket.Socket) { c.nodes[0].io.Compress(true).Emit("test", payload...) },
			want: []int{0, 1, 2},
		},
		{
			name: "from a socket to its room, excluding itself",
			nsp:  "/",
			setup: func(_ *shCluster, s []*socket.Socket) {
				for _, so := range s {
					so.Join("chat")
				}
			},
			emit: func(_ *shCluster, s []*socket.Socket) { s[2].Broadcast().To("chat").Emit("test", payload...) },
			want: []int{0, 1},
		},
	}
}

// testShardedBroadcasts runs every broadcast case on three servers, with one
// client per server in the case's namespace and one in the other namespace,
// and asserts exactly-once delivery to the intended clients only.
func testShardedBroadcasts(t *testing.T, env *shEnv, mk shBuilderFunc) {
	for _, tc := range shardedBroadcastCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := newShCluster(t, env, 3, mk, "/custom")
			other := "/custom"
			clients, socks := c.clients, c.socks
			var bystanders []*sioclient.Client
			if tc.nsp == "/custom" {
				other = "/"
				bystanders = clients
				clients, socks = nil, nil
				for i := range c.nodes {
					cl, s := c.connect(i, "/custom")
					clients, socks = append(clients, cl), append(socks, s)
				}
			} else {
				for i := range c.nodes {
					cl, _ := c.connect(i, "/custom")
					bystanders = append(bystanders, cl)
				}
			}
			if tc.setup != nil {
				tc.setup(c, socks)
			}
			tc.emit(c, socks)
			want := map[int]bool{}
			for _, i := range tc.want {
				want[i] = true
				waitEvents(t, clients[i], "test", 1)
			}
			c.fence(tc.nsp, clients...)
			c.fence(other, bystanders...)
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

// testShardedRequests runs the cross-server requests on three servers.
// binary: socket data and serverSideEmit arguments carry binary (the sharded
// protocol switches to msgpack; the classic one sends JSON).
func testShardedRequests(t *testing.T, env *shEnv, mk shBuilderFunc, binary bool) {
	t.Run("broadcast with acks from the clients of every server", func(t *testing.T) {
		c := newShCluster(t, env, 3, mk)
		for i, cl := range c.clients {
			n := i + 1
			cl.OnAck("test", func([]any) []any { return []any{n} })
		}
		done := make(chan result, 1)
		c.nodes[0].io.Timeout(2*time.Second).Emit("test", 1, func(args []any, err error) { done <- result{args, err} })
		r := waitResult(t, done)
		if r.err != nil {
			t.Fatalf("err = %v", r.err)
		}
		if got := asNumbers(t, r.args); !reflect.DeepEqual(got, []float64{1, 2, 3}) {
			t.Fatalf("responses = %v, want 1, 2, 3", got)
		}
		waitFor(t, "ack requests cleaned up", func() bool { return c.nodes[0].b.Stats().PendingRequests == 0 })
	})
	t.Run("broadcast with binary acks to a room", func(t *testing.T) {
		c := newShCluster(t, env, 3, mk)
		c.socks[1].Join("acked")
		c.socks[2].Join("acked")
		for _, cl := range c.clients {
			cl.OnAck("test", func([]any) []any { return []any{[]byte{1, 2}} })
		}
		done := make(chan result, 1)
		c.nodes[0].io.To("acked").Timeout(2*time.Second).Emit("test", []byte{9}, func(args []any, err error) { done <- result{args, err} })
		r := waitResult(t, done)
		if r.err != nil || len(r.args) != 2 {
			t.Fatalf("err = %v, %d responses", r.err, len(r.args))
		}
		for _, v := range r.args {
			var b []byte
			switch x := v.(type) {
			case []byte:
				b = x
			case types.BufferInterface:
				b = x.Bytes()
			default:
				t.Fatalf("response %#v (%T) is not binary", v, v)
			}
			if !bytes.Equal(b, []byte{1, 2}) {
				t.Fatalf("response bytes %v", b)
			}
		}
		if n := len(c.clients[0].Received("test")); n != 0 {
			t.Fatalf("client outside the room received %d events", n)
		}
	})
	t.Run("broadcast with acks and no matching client completes at once", func(t *testing.T) {
		c := newShCluster(t, env, 3, mk)
		done := make(chan result, 1)
		start := time.Now()
		c.nodes[0].io.To("nobody").Timeout(5*time.Second).Emit("test", func(args []any, err error) { done <- result{args, err} })
		r := waitResult(t, done)
		if r.err != nil || len(r.args) != 0 || time.Since(start) > 2*time.Second {
			t.Fatalf("err = %v, responses = %v after %v", r.err, r.args, time.Since(start))
		}
	})
	t.Run("a silent client gives the timeout error with the other acks", func(t *testing.T) {
		c := newShCluster(t, env, 3, mk)
		for i, cl := range c.clients[:2] {
			n := i + 1
			cl.OnAck("test", func([]any) []any { return []any{n} })
		}
		done := make(chan result, 1)
		c.nodes[0].io.Timeout(500*time.Millisecond).Emit("test", func(args []any, err error) { done <- result{args, err} })
		r := waitResult(t, done)
		if r.err == nil {
			t.Fatal("no timeout error")
		}
		if got := asNumbers(t, r.args); !reflect.DeepEqual(got, []float64{1, 2}) {
			t.Fatalf("responses = %v, want 1, 2", got)
		}
	})
	joinCases := []struct {
		name   string
		setup  func(c *shCluster)
		act    func(c *shCluster)
		expect func(c *shCluster) bool
		stable func(c *shCluster) bool
	}{
		{
			name: "socketsJoin on all servers",
			act:  func(c *shCluster) { c.nodes[0].io.SocketsJoin("room1") },
			expect: func(c *shCluster) bool {
				return hasRoom(c.socks[0], "room1") && hasRoom(c.socks[1], "room1") && hasRoom(c.socks[2], "room1")
			},
		},
		{
			name:   "socketsJoin on matching sockets",
			setup:  func(c *shCluster) { c.socks[1].Join("room1") },
			act:    func(c *shCluster) { c.nodes[0].io.In("room1").SocketsJoin("room2") },
			expect: func(c *shCluster) bool { return hasRoom(c.socks[1], "room2") },
			stable: func(c *shCluster) bool { return !hasRoom(c.socks[0], "room2") && !hasRoom(c.socks[2], "room2") },
		},
		{
			name:   "socketsJoin on a given socket",
			act:    func(c *shCluster) { c.nodes[0].io.In(socket.Room(c.socks[1].Id())).SocketsJoin("room3") },
			expect: func(c *shCluster) bool { return hasRoom(c.socks[1], "room3") },
			stable: func(c *shCluster) bool { return !hasRoom(c.socks[0], "room3") && !hasRoom(c.socks[2], "room3") },
		},
		{
			name: "socketsLeave on matching sockets",
			setup: func(c *shCluster) {
				c.socks[0].Join("room1", "room2")
				c.socks[1].Join("room2")
				c.socks[2].Join("room1", "room2")
			},
			act:    func(c *shCluster) { c.nodes[1].io.In("room1").SocketsLeave("room2") },
			expect: func(c *shCluster) bool { return !hasRoom(c.socks[0], "room2") && !hasRoom(c.socks[2], "room2") },
			stable: func(c *shCluster) bool { return hasRoom(c.socks[1], "room2") },
		},
		{
			name: "socketsLeave on a given socket",
			setup: func(c *shCluster) {
				for _, s := range c.socks {
					s.Join("room3")
				}
			},
			act:    func(c *shCluster) { c.nodes[0].io.In(socket.Room(c.socks[1].Id())).SocketsLeave("room3") },
			expect: func(c *shCluster) bool { return !hasRoom(c.socks[1], "room3") },
			stable: func(c *shCluster) bool { return hasRoom(c.socks[0], "room3") && hasRoom(c.socks[2], "room3") },
		},
	}
	for _, tc := range joinCases {
		t.Run(tc.name, func(t *testing.T) {
			c := newShCluster(t, env, 3, mk)
			if tc.setup != nil {
				tc.setup(c)
			}
			tc.act(c)
			waitFor(t, tc.name, func() bool { return tc.expect(c) })
			c.fence("/", c.clients...)
			if tc.stable != nil && !tc.stable(c) {
				t.Fatal("sockets outside the selection were changed")
			}
		})
	}
	t.Run("a room joined through socketsJoin receives broadcasts", func(t *testing.T) {
		c := newShCluster(t, env, 3, mk)
		c.nodes[0].io.In(socket.Room(c.socks[2].Id())).SocketsJoin("joined-remotely")
		waitFor(t, "joined", func() bool { return hasRoom(c.socks[2], "joined-remotely") })
		// The subscription of the new room is asynchronous on the remote
		// side: emit until the client gets one.
		waitFor(t, "a broadcast to the remotely joined room arrives", func() bool {
			c.nodes[1].io.To("joined-remotely").Emit("rj", 1)
			time.Sleep(20 * time.Millisecond)
			return len(c.clients[2].Received("rj")) > 0
		})
	})
	t.Run("disconnectSockets on all servers", func(t *testing.T) {
		c := newShCluster(t, env, 3, mk)
		c.nodes[0].io.DisconnectSockets(false)
		for i, cl := range c.clients {
			select {
			case <-cl.Disconnected():
			case <-time.After(waitTimeout):
				t.Fatalf("client on server %d not disconnected", i)
			}
			if r := cl.DisconnectReason(); r != "io server disconnect" {
				t.Errorf("client on server %d: reason %q", i, r)
			}
		}
	})
	t.Run("disconnectSockets on a room", func(t *testing.T) {
		c := newShCluster(t, env, 3, mk)
		c.socks[2].Join("kick")
		c.nodes[0].io.In("kick").DisconnectSockets(true)
		select {
		case <-c.clients[2].Disconnected():
		case <-time.After(waitTimeout):
			t.Fatal("client on server 2 not disconnected")
		}
		c.fence("/", c.clients[:2]...)
		for i, cl := range c.clients[:2] {
			select {
			case <-cl.Disconnected():
				t.Errorf("client on server %d disconnected", i)
			default:
			}
		}
	})
	t.Run("fetchSockets of every server", func(t *testing.T) {
		c := newShCluster(t, env, 3, mk)
		got, err := fetch(t, c.nodes[0].io)
		if err != nil || len(got) != 3 {
			t.Fatalf("%d sockets, err %v", len(got), err)
		}
		if n := c.nodes[0].b.Stats().PendingRequests; n != 0 {
			t.Fatalf("%d requests still pending", n)
		}
	})
	t.Run("fetchSockets of a remote socket: handshake, rooms and binary data", func(t *testing.T) {
		c := newShCluster(t, env, 3, mk)
		data := map[string]any{"user": "ada", "n": float64(2)}
		if binary {
			data["avatar"] = []byte{7, 8}
		}
		c.socks[1].SetData(data)
		c.socks[1].Join("r1")
		got, err := fetch(t, c.nodes[0].io.In(socket.Room(c.socks[1].Id())))
		if err != nil || len(got) != 1 {
			t.Fatalf("%d sockets, err %v", len(got), err)
		}
		rs, orig := got[0], c.socks[1]
		if rs.Id() != orig.Id() {
			t.Fatalf("id %s, want %s", rs.Id(), orig.Id())
		}
		d, _ := rs.Data().(map[string]any)
		if d["user"] != "ada" || d["n"] == nil || (binary && !bytes.Equal(shAsBytes(d["avatar"]), []byte{7, 8})) {
			t.Errorf("data = %#v", rs.Data())
		}
		if rs.Rooms().Len() != 2 || !rs.Rooms().Has(socket.Room(orig.Id())) || !rs.Rooms().Has("r1") {
			t.Errorf("rooms = %v", rs.Rooms().Keys())
		}
		h, oh := rs.Handshake(), orig.Handshake()
		if h.Address != oh.Address || h.Time != oh.Time || h.Issued != oh.Issued || h.Url != oh.Url ||
			!reflect.DeepEqual(h.Headers, oh.Headers) || !reflect.DeepEqual(h.Query, oh.Query) {
			t.Errorf("handshake = %+v\nwant %+v", h, oh)
		}
	})
	t.Run("fetchSockets local only and in a room held by one server", func(t *testing.T) {
		c := newShCluster(t, env, 3, mk)
		got, err := fetch(t, c.nodes[0].io.Local())
		if err != nil || len(got) != 1 || got[0].Id() != c.socks[0].Id() {
			t.Fatalf("local: %d sockets, err %v", len(got), err)
		}
		c.socks[2].Join("only-here")
		got, err = fetch(t, c.nodes[0].io.In("only-here"))
		if err != nil || len(got) != 1 || got[0].Id() != c.socks[2].Id() {
			t.Fatalf("room: %d sockets, err %v", len(got), err)
		}
	})
	t.Run("AllRooms", func(t *testing.T) {
		c := newShCluster(t, env, 3, mk)
		// Both adapters have AllRooms.
		sa := c.ns(0, "/").Adapter().(interface {
			AllRooms(context.Context) ([]socket.Room, error)
		})
		c.socks[1].Join("woot1")
		rooms, err := sa.AllRooms(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		want := map[socket.Room]bool{"woot1": true}
		for _, s := range c.socks {
			want[socket.Room(s.Id())] = true
		}
		gotRooms := map[socket.Room]bool{}
		for _, r := range rooms {
			gotRooms[r] = true
		}
		if !reflect.DeepEqual(gotRooms, want) {
			t.Fatalf("rooms = %v, want %v", gotRooms, want)
		}
	})
	t.Run("serverSideEmit reaches every other server", func(t *testing.T) {
		c := newShCluster(t, env, 3, mk)
		var mu sync.Mutex
		got := map[int][]any{}
		for i := range c.nodes {
			i := i
			c.ns(i, "/").On("hello", func(args ...any) {
				mu.Lock()
				got[i] = args
				mu.Unlock()
			})
		}
		var last any = "5"
		if binary {
			last = []byte{5}
		}
		if err := c.nodes[0].io.ServerSideEmit("hello", "world", 1, last); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "servers 1 and 2 received it", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got[1]) > 0 && len(got[2]) > 0
		})
		c.fence("/", c.clients...)
		mu.Lock()
		defer mu.Unlock()
		for _, i := range []int{1, 2} {
			if len(got[i]) != 3 || got[i][0] != "world" || (binary && !bytes.Equal(shAsBytes(got[i][2]), []byte{5})) || (!binary && got[i][2] != "5") {
				t.Errorf("server %d got %#v", i, got[i])
			}
		}
		if _, ok := got[0]; ok {
			t.Error("the sender received its own serverSideEmit")
		}
	})
	sseWithAck := func(c *shCluster, answer map[int]any) chan result {
		for i := range c.nodes {
			v, ok := answer[i]
			if !ok {
				continue
			}
			c.ns(i, "/").On("hello", func(args ...any) {
				ack := args[len(args)-1].(socket.Ack)
				ack([]any{v}, nil)
			})
		}
		done := make(chan result, 1)
		if err := c.nodes[0].io.ServerSideEmitWithAck("hello", "x")(func(args []any, err error) { done <- result{args, err} }); err != nil {
			panic(err)
		}
		return done
	}
	t.Run("serverSideEmit with ack: one response per other server", func(t *testing.T) {
		c := newShCluster(t, env, 3, mk)
		r := waitResult(t, sseWithAck(c, map[int]any{1: 2, 2: "3"}))
		if r.err != nil {
			t.Fatal(r.err)
		}
		if got := fmt.Sprint(r.args); got != "[2 3]" && got != "[3 2]" {
			t.Fatalf("responses = %#v", r.args)
		}
		if n := c.nodes[0].b.Stats().PendingRequests; n != 0 {
			t.Fatalf("%d requests still pending", n)
		}
	})
	t.Run("serverSideEmit with ack: a silent server gives Node's timeout error", func(t *testing.T) {
		c := newShCluster(t, env, 3, mk)
		r := waitResult(t, sseWithAck(c, map[int]any{1: 2}))
		if r.err == nil || r.err.Error() != "timeout reached: only 1 responses received out of 2" {
			t.Fatalf("err = %v", r.err)
		}
		if len(r.args) != 1 || r.args[0] != float64(2) {
			t.Fatalf("responses = %#v", r.args)
		}
	})
	t.Run("serverCount", func(t *testing.T) {
		c := newShCluster(t, env, 3, mk, "/other")
		for i := range c.nodes {
			for _, nsp := range c.nsps {
				if got := c.ns(i, nsp).Adapter().ServerCount(); got != 3 {
					t.Errorf("server %d %s: ServerCount = %d, want 3", i, nsp, got)
				}
			}
		}
		c.nodes[2].close()
		waitFor(t, "server count drops to 2", func() bool { return c.ns(0, "/").Adapter().ServerCount() == 2 })
	})
}

func shAsBytes(v any) []byte {
	switch b := v.(type) {
	case []byte:
		return b
	case types.BufferInterface:
		return b.Bytes()
	}
	return nil
}

var shAllModes = []SubscriptionMode{SubscriptionModeStatic, SubscriptionModeDynamic, SubscriptionModeDynamicPrivate}

// TestShardedStandalone is the behaviour suite of sharded mode in each
// subscription mode, on a standalone Redis 7.
func TestShardedStandalone(t *testing.T) {
	env := standaloneEnv(t)
	for _, mode := range shAllModes {
		t.Run(string(mode), func(t *testing.T) {
			mk := mkSharded(&ShardedOptions{SubscriptionMode: mode})
			t.Run("broadcasts", func(t *testing.T) { testShardedBroadcasts(t, env, mk) })
			t.Run("requests", func(t *testing.T) { testShardedRequests(t, env, mk, true) })
		})
	}
}

// shSpy subscribes to sharded channels and records what arrives.
type shSpy struct {
	ps *redis.PubSub
	ch <-chan *redis.Message
}

func newShSpy(t *testing.T, rdb *redis.Client, channels ...string) *shSpy {
	t.Helper()
	ps := rdb.SSubscribe(context.Background(), channels...)
	t.Cleanup(func() { _ = ps.Close() })
	for range channels {
		if _, err := ps.Receive(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return &shSpy{ps: ps, ch: ps.Channel()}
}

func (s *shSpy) next(t *testing.T) *redis.Message {
	t.Helper()
	select {
	case m := <-s.ch:
		return m
	case <-time.After(waitTimeout):
		t.Fatal("shSpy: nothing received")
		return nil
	}
}

// TestShardedPrivateMessagesToGoSockets: Go socket ids have 24 characters,
// so in dynamic mode Node sends a private message to a Go socket on the
// socket's room channel. A Go server in dynamic mode subscribes to that
// channel (Node would not: it is a socket id), and a Go sender applies Node's
// rule. Covered: Go→Go, Node-shaped→Go (hand-written frames as Node's
// adapter writes them), and Go→Node 20-character ids on the main channel.
func TestShardedPrivateMessagesToGoSockets(t *testing.T) {
	env := standaloneEnv(t)
	for _, mode := range shAllModes {
		t.Run(string(mode), func(t *testing.T) {
			c := newShCluster(t, env, 2, mkSharded(&ShardedOptions{SubscriptionMode: mode}))
			target := c.socks[1]
			sid := string(target.Id())
			if len(sid) == 20 {
				t.Fatalf("Go socket id %q has 20 characters", sid)
			}
			main := c.prefix + "#/#"
			private := main + sid + "#"
			admin := c.masters[0]
			// The receiver's own-id channel is subscribed in the dynamic
			// modes, before the client even got its CONNECT packet.
			wantSubs := int64(1)
			if mode == SubscriptionModeStatic {
				wantSubs = 0
			}
			if n := env.shardNumSub(t, c.masters, private); n != wantSubs {
				t.Fatalf("SHARDNUMSUB %s = %d, want %d", private, n, wantSubs)
			}
			// Go → Go, and the channel the sender picks.
			sp := newShSpy(t, admin, main, private)
			c.nodes[0].io.To(socket.Room(sid)).Emit("pm", "go")
			waitEvents(t, c.clients[1], "pm", 1)
			m := sp.next(t)
			wantChannel := private
			if mode == SubscriptionModeStatic {
				wantChannel = main
			}
			if m.Channel != wantChannel {
				t.Errorf("Go sender published on %s, want %s", m.Channel, wantChannel)
			}
			// Node → Go: the frame Node's sharded adapter publishes for
			// io.to(goSocketId).emit("pm", "node"): on the room channel in
			// the dynamic modes, on the main channel in static mode.
			frame := fmt.Sprintf(`{"type":3,"data":{"packet":{"type":2,"data":["pm","node"]},"opts":{"rooms":[%q],"except":[],"flags":{}}},"uid":"0123456789abcdef","nsp":"/"}`, sid)
			if err := admin.SPublish(context.Background(), wantChannel, frame).Err(); err != nil {
				t.Fatal(err)
			}
			evs := waitEvents(t, c.clients[1], "pm", 2)
			if evs[1].Args[0] != "node" {
				t.Errorf("second private message = %#v", evs[1].Args)
			}
			// Node → Go in binary (msgpack, whole message).
			bin := nodeBinaryBroadcast(t, sid)
			if err := admin.SPublish(context.Background(), wantChannel, bin).Err(); err != nil {
				t.Fatal(err)
			}
			evs = waitEvents(t, c.clients[1], "pm", 3)
			if !evs[2].Binary || !bytes.Equal(shAsBytes(evs[2].Args[0]), []byte{1, 2, 3}) {
				t.Errorf("binary private message = %#v", evs[2])
			}
			// Go → a Node socket id (20 characters): Node's rule, the main
			// channel, except in dynamic-private mode (every single room
			// goes to its room channel).
			nodeSid := "ABCDEFGHIJ0123456789"
			wantNode := main
			if mode == SubscriptionModeDynamicPrivate {
				wantNode = main + nodeSid + "#"
			}
			sp2 := newShSpy(t, admin, wantNode)
			c.nodes[0].io.To(socket.Room(nodeSid)).Emit("pm", "to-node")
			for {
				m := sp2.next(t)
				if strings.Contains(m.Payload, "to-node") {
					if m.Channel != wantNode {
						t.Errorf("a 20-character room went to %s, want %s", m.Channel, wantNode)
					}
					break
				}
			}
			c.fence("/", c.clients...)
			if n := len(c.clients[0].Received("pm")); n != 0 {
				t.Errorf("the sender's client received %d private messages", n)
			}
			if n := len(c.clients[1].Received("pm")); n != 3 {
				t.Errorf("the target received %d private messages, want 3", n)
			}
		})
	}
}

// nodeBinaryBroadcast returns the msgpack frame Node writes for
// io.to(room).emit("pm", Buffer.from([1,2,3])) in sharded mode.
func nodeBinaryBroadcast(t *testing.T, room string) []byte {
	t.Helper()
	msg := omap{
		{"type", 3},
		{"data", omap{
			{"packet", omap{{"type", 2}, {"data", []any{"pm", []byte{1, 2, 3}}}}},
			{"opts", omap{{"rooms", []string{room}}, {"except", []string{}}, {"flags", omap{}}}},
		}},
		{"uid", "0123456789abcdef"},
		{"nsp", "/"},
	}
	e := getEncoder()
	defer putEncoder(e)
	if err := e.enc.Encode(msg); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), e.buf.Bytes()...)
}

// TestShardedWireFormat pins the bytes of the sharded messages to the Node
// captures (anchors §1.7): JSON key order type, data, uid, nsp; msgpack for
// the whole message when the data holds binary.
func TestShardedWireFormat(t *testing.T) {
	pkt := &parser.Packet{Type: parser.EVENT, Data: []any{"hello", "world", 1}}
	e, err := encodeShardMessage(shBroadcast, broadcastData(pkt, "", nil, nil, wireFlags{}), "5fd6b57a7c5a9a23", "/")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":3,"data":{"packet":{"type":2,"data":["hello","world",1]},"opts":{"rooms":[],"except":[],"flags":{}}},"uid":"5fd6b57a7c5a9a23","nsp":"/"}`
	if got := e.buf.String(); got != want {
		t.Errorf("broadcast:\n got %s\nwant %s", got, want)
	}
	putEncoder(e)

	tm := 1000 * time.Millisecond
	e, _ = encodeShardMessage(shBroadcast, broadcastData(pkt, "1a90699bea317cba", []socket.Room{"room1"}, nil, wireFlags{Timeout: &tm}), "u", "/")
	want = `{"type":3,"data":{"packet":{"type":2,"data":["hello","world",1]},"requestId":"1a90699bea317cba","opts":{"rooms":["room1"],"except":[],"flags":{"timeout":1000}}},"uid":"u","nsp":"/"}`
	if got := e.buf.String(); got != want {
		t.Errorf("broadcast with ack:\n got %s\nwant %s", got, want)
	}
	putEncoder(e)

	e, _ = encodeShardMessage(shSocketsJoin, omap{{"opts", optsOmap([]socket.Room{"room1"}, nil, wireFlags{})}, {"rooms", []string{"room2"}}}, "u", "/")
	want = `{"type":4,"data":{"opts":{"rooms":["room1"],"except":[],"flags":{}},"rooms":["room2"]},"uid":"u","nsp":"/"}`
	if got := e.buf.String(); got != want {
		t.Errorf("socketsJoin:\n got %s\nwant %s", got, want)
	}
	putEncoder(e)

	e, _ = encodeShardMessage(shServerSideEmitResponse, omap{{"requestId", "r"}, {"packet", map[string]any{"from": "B"}}}, "u", "/")
	want = `{"type":10,"data":{"requestId":"r","packet":{"from":"B"}},"uid":"u","nsp":"/"}`
	if got := e.buf.String(); got != want {
		t.Errorf("serverSideEmit response:\n got %s\nwant %s", got, want)
	}
	putEncoder(e)

	// Binary: the capture starts 84 a4 "type" 03 a4 "data" 82 a6 "packet" 82
	// a4 "type" 02 … and ends a3 "uid" b0 <16 chars> a3 "nsp" a1 "/".
	bpkt := &parser.Packet{Type: parser.EVENT, Data: []any{"bin", []byte{1, 2}}}
	e, _ = encodeShardMessage(shBroadcast, broadcastData(bpkt, "", nil, nil, wireFlags{}), "5fd6b57a7c5a9a23", "/")
	got := hex.EncodeToString(e.buf.Bytes())
	putEncoder(e)
	if !strings.HasPrefix(got, "84a47479706503a46461746182a67061636b657482a47479706502") {
		t.Errorf("binary broadcast prefix: %s", got)
	}
	if !strings.HasSuffix(got, "a3756964b0"+hex.EncodeToString([]byte("5fd6b57a7c5a9a23"))+"a36e7370a12f") {
		t.Errorf("binary broadcast suffix: %s", got)
	}
	m, err := decodeMessage(mustHex(t, got))
	if err != nil {
		t.Fatal(err)
	}
	d := dataOf(m)
	p, err := d.packetOf("/")
	if err != nil || !reflect.DeepEqual(p.Data, []any{"bin", []byte{1, 2}}) {
		t.Errorf("binary round trip: %#v %v", p, err)
	}

	// Types that never carry binary stay JSON.
	e, _ = encodeShardMessage(shSocketsJoin, omap{{"opts", optsOmap(nil, nil, wireFlags{})}, {"rooms", []string{"a"}}}, "u", "/")
	if e.buf.Bytes()[0] != '{' {
		t.Error("socketsJoin not JSON")
	}
	putEncoder(e)
}

// TestShardedChannelChoice checks Node's computeChannel rule.
func TestShardedChannelChoice(t *testing.T) {
	goID := socket.Room("abcdefghijklmnopqrstuvwx") // 24 characters
	nodeID := socket.Room("ABCDEFGHIJ0123456789")   // 20 characters
	cases := []struct {
		mode    SubscriptionMode
		rooms   []socket.Room
		withAck bool
		room    bool
	}{
		{SubscriptionModeDynamic, []socket.Room{"room1"}, false, true},
		{SubscriptionModeDynamic, []socket.Room{goID}, false, true},
		{SubscriptionModeDynamic, []socket.Room{nodeID}, false, false},
		{SubscriptionModeDynamic, []socket.Room{"éééééééééééééééééééé"}, false, false}, // 20 UTF-16 units, 40 bytes
		{SubscriptionModeDynamic, []socket.Room{"room1", "room2"}, false, false},
		{SubscriptionModeDynamic, nil, false, false},
		{SubscriptionModeDynamic, []socket.Room{"room1"}, true, false},
		{SubscriptionModeDynamicPrivate, []socket.Room{nodeID}, false, true},
		{SubscriptionModeDynamicPrivate, []socket.Room{"room1"}, true, false},
		{SubscriptionModeStatic, []socket.Room{"room1"}, false, false},
	}
	for _, tc := range cases {
		a := &ShardedAdapter{b: &ShardedBuilder{opts: ShardedOptions{SubscriptionMode: tc.mode}}, main: "p#/#"}
		got := a.channelFor(tc.rooms, tc.withAck)
		want := "p#/#"
		if tc.room {
			want = "p#/#" + string(tc.rooms[0]) + "#"
		}
		if got != want {
			t.Errorf("%s %v ack=%v: channel %s, want %s", tc.mode, tc.rooms, tc.withAck, got, want)
		}
	}
}

// TestShardedRoomSubscriptions: a room channel is subscribed when the first
// local socket joins (confirmed before Join returns), kept while a socket is
// in the room, and unsubscribed when the last one leaves or disconnects.
func TestShardedRoomSubscriptions(t *testing.T) {
	env := standaloneEnv(t)
	c := newShCluster(t, env, 2, mkSharded(nil))
	ch := c.prefix + "#/#lobby#"
	count := func() int64 { return env.shardNumSub(t, c.masters, ch) }
	c.socks[1].Join("lobby")
	if n := count(); n != 1 {
		t.Fatalf("right after Join: SHARDNUMSUB = %d, want 1 (the join waits for the confirmation)", n)
	}
	cl2, s2 := c.connect(1, "/")
	s2.Join("lobby")
	c.socks[1].Leave("lobby")
	c.fence("/", c.clients...)
	if n := count(); n != 1 {
		t.Fatalf("with one member left: SHARDNUMSUB = %d, want 1", n)
	}
	_ = cl2.Close()
	waitFor(t, "room channel unsubscribed after the last member disconnected", func() bool { return count() == 0 })
	// Own-id channels follow their socket.
	own := c.prefix + "#/#" + string(c.socks[0].Id()) + "#"
	if n := env.shardNumSub(t, c.masters, own); n != 1 {
		t.Fatalf("own-id channel: %d", n)
	}
	_ = c.clients[0].Close()
	waitFor(t, "own-id channel unsubscribed", func() bool { return env.shardNumSub(t, c.masters, own) == 0 })
}

// TestShardedBroadcastRightAfterJoin: with the default JoinTimeout, a
// broadcast from another server right after Join returns is never lost.
// With JoinTimeout < 0 (Node's behaviour) it may be: that window is shown.
func TestShardedBroadcastRightAfterJoin(t *testing.T) {
	env := standaloneEnv(t)
	c := newShCluster(t, env, 2, mkSharded(nil))
	const rounds = 50
	start := time.Now()
	for i := 0; i < rounds; i++ {
		room := socket.Room(fmt.Sprintf("fresh-%d", i))
		c.socks[1].Join(room)
		c.nodes[0].io.To(room).Emit("fresh", i)
	}
	perJoin := time.Since(start) / rounds
	c.fence("/", c.clients...)
	if n := len(c.clients[1].Received("fresh")); n != rounds {
		t.Fatalf("%d of %d broadcasts arrived; sender %+v, receiver %+v", n, rounds, c.nodes[0].b.Stats(), c.nodes[1].b.Stats())
	}
	t.Logf("join + emit: %v per round (the join waits for SSUBSCRIBE's confirmation)", perJoin)

	c2 := newShCluster(t, env, 2, mkSharded(&ShardedOptions{JoinTimeout: -1}))
	for i := 0; i < rounds; i++ {
		room := socket.Room(fmt.Sprintf("fresh-%d", i))
		c2.socks[1].Join(room)
		c2.nodes[0].io.To(room).Emit("fresh", i)
	}
	c2.fence("/", c2.clients...)
	t.Logf("without the wait (JoinTimeout < 0): %d of %d broadcasts sent right after the join arrived", len(c2.clients[1].Received("fresh")), rounds)
}

// shPubSubClients returns the subscriber connections of one Redis node, by
// their subscription counts.
func shPubSubClients(t testing.TB, rdb *redis.Client) []string {
	t.Helper()
	list, err := rdb.Do(context.Background(), "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}

// TestShardedOneConnectionPerServer: on a standalone server each server holds
// all its namespaces and rooms on one subscriber connection.
func TestShardedOneConnectionPerServer(t *testing.T) {
	env := standaloneEnv(t)
	c := newShCluster(t, env, 3, mkSharded(&ShardedOptions{SubscriptionMode: SubscriptionModeDynamicPrivate}), "/a", "/b")
	for i, s := range c.socks {
		for r := 0; r < 40; r++ {
			s.Join(socket.Room(fmt.Sprintf("room-%d-%d", i, r)))
		}
	}
	conns := shPubSubClients(t, c.masters[0])
	if len(conns) != 3 {
		t.Fatalf("%d subscriber connections, want 3 (one per server):\n%s", len(conns), strings.Join(conns, "\n"))
	}
	// Each: 3 namespaces × (main + response) + 1 own id + 40 rooms.
	for _, line := range conns {
		if !strings.Contains(line, " ssub=47 ") {
			t.Errorf("connection does not hold 47 sharded channels: %s", line)
		}
	}
}

// TestShardedOptions: defaults are Node's, invalid values fall back.
func TestShardedOptions(t *testing.T) {
	o, _ := (*ShardedOptions)(nil).withDefaults()
	if o.ChannelPrefix != "socket.io" || o.SubscriptionMode != SubscriptionModeDynamic || o.RequestsTimeout != 5*time.Second ||
		o.JoinTimeout != time.Second || o.Logger == nil {
		t.Fatalf("defaults: %+v", o)
	}
	bad := &ShardedOptions{SubscriptionMode: "sometimes", ChannelPrefix: "a#b", RequestsTimeout: -1}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "SubscriptionMode") || !strings.Contains(err.Error(), "ChannelPrefix") {
		t.Fatalf("Validate = %v", err)
	}
	o, _ = bad.withDefaults()
	if o.SubscriptionMode != SubscriptionModeDynamic || o.ChannelPrefix != "socket.io" || o.RequestsTimeout != 5*time.Second {
		t.Fatalf("invalid fields not replaced: %+v", o)
	}
	if (&ShardedOptions{JoinTimeout: -1}).Validate() != nil {
		t.Fatal("a negative JoinTimeout (no wait) is valid")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("NewSharded(nil) did not panic")
			}
		}()
		NewSharded(nil, nil)
	}()
	func() {
		defer func() {
			if recover() == nil {
				t.Error("NewSharded(ring) did not panic")
			}
		}()
		NewSharded(redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}}), nil)
	}()
}

// TestShardedCloseLeavesNothingBehind: Close stops every goroutine and
// connection, is idempotent, and leaves the user's client usable.
func TestShardedCloseLeavesNothingBehind(t *testing.T) {
	verifyNoLeaks(t)
	env := standaloneEnv(t)
	rdb := env.masters(t)[0]
	b := NewSharded(rdb, &ShardedOptions{ChannelPrefix: uniqueKey(t)})
	so := socket.DefaultServerOptions()
	so.SetAdapter(b)
	io := socket.NewServer(nil, so)
	io.Of("/x", nil)
	waitFor(t, "connected", func() bool { return b.State() == StateConnected })
	io.Emit("hello", 1)
	done := make(chan struct{})
	io.Close(func(error) { close(done) })
	<-done
	_ = b.Close()
	_ = b.Close()
	if b.State() != StateClosed {
		t.Fatalf("state after Close = %v", b.State())
	}
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("user's client closed: %v", err)
	}
	waitFor(t, "no subscriber connection left", func() bool { return len(shPubSubClients(t, rdb)) == 0 })
}

// TestShardedHostileFrames: garbage on the main, response and room channels
// is dropped and counted, never a panic, and the server keeps working.
func TestShardedHostileFrames(t *testing.T) {
	env := standaloneEnv(t)
	c := newShCluster(t, env, 2, mkSharded(nil))
	c.socks[1].Join("room1")
	sa := c.ns(1, "/").Adapter().(*ShardedAdapter)
	frames := []string{
		"", "{", "[]", "null", `{"type":3}`, `{"type":3,"data":{},"uid":"x","nsp":"/"}`,
		`{"type":3,"data":{"packet":{"type":99,"data":["a"]},"opts":{}},"uid":"x","nsp":"/"}`,
		`{"type":3,"data":{"packet":{"type":2,"data":"notarray"},"opts":{}},"uid":"x","nsp":"/"}`,
		`{"type":4,"data":{"opts":{"rooms":[{}]},"rooms":["x"]},"uid":"x","nsp":"/"}`,
		`{"type":8,"data":{"requestId":"nope","sockets":"x"},"uid":"x","nsp":"/"}`,
		`{"type":11,"data":{"requestId":"nope","clientCount":-1},"uid":"x","nsp":"/"}`,
		`{"type":9,"data":{"packet":[]},"uid":"x","nsp":"/"}`,
		"\xdd\xff\xff\xff\xff", "\x84\xa4type\x03",
	}
	frames = append(frames, hostileFrames(t)...)
	before := c.nodes[1].b.Stats()
	for _, ch := range []string{sa.main, sa.response, sa.roomChannel("room1")} {
		for _, f := range frames {
			if err := c.masters[0].SPublish(context.Background(), ch, f).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.nodes[0].io.To("room1").Emit("after", 1)
	waitEvents(t, c.clients[1], "after", 1)
	after := c.nodes[1].b.Stats()
	if after.DroppedMalformed-before.DroppedMalformed < uint64(len(frames)) {
		t.Errorf("DroppedMalformed grew by %d for %d×3 hostile frames", after.DroppedMalformed-before.DroppedMalformed, len(frames))
	}
	if c.nodes[1].b.State() != StateConnected {
		t.Errorf("state %v", c.nodes[1].b.State())
	}
}

// TestShardedKeySlot checks the slot function against known values of
// CLUSTER KEYSLOT.
func TestShardedKeySlot(t *testing.T) {
	for key, slot := range map[string]int{"foo": 12182, "bar": 5061, "somekey": 11058, "{user1000}.following": 3443, "{user1000}.followers": 3443, "foo{}{bar}": 8363, "": 0} {
		if got := keySlot(key); got != slot {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, slot)
		}
	}
	g := groupBySlot([]string{"{a}1", "{b}1", "{a}2"}, true, 512)
	if len(g) != 2 {
		t.Errorf("groups %v", g)
	}
	if g := groupBySlot([]string{"x", "y", "z"}, false, 2); len(g) != 2 {
		t.Errorf("standalone groups %v", g)
	}
}

// shardedSingle is one sharded server, with one client, on addr.
func shardedSingle(t *testing.T, addr string, opts ShardedOptions) (*ShardedBuilder, *socket.Server, *sioclient.Client, *stateRecorder, *logRecorder) {
	t.Helper()
	st, lg := &stateRecorder{}, &logRecorder{}
	opts.OnStateChange = st.record
	opts.Logger = slog.New(lg)
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	b := NewSharded(rdb, &opts)
	io, cl := shSingleServer(t, b)
	t.Cleanup(func() {
		done := make(chan struct{})
		io.Close(func(error) { close(done) })
		<-done
		_ = b.Close()
	})
	return b, io, cl, st, lg
}

// shSingleServer is singleServer for any adapter constructor.
func shSingleServer(t *testing.T, b socket.AdapterConstructor) (*socket.Server, *sioclient.Client) {
	t.Helper()
	so := socket.DefaultServerOptions()
	so.SetConnectTimeout(10 * time.Second)
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

// TestShardedRedisDownAtStart: NewSharded returns at once, local delivery
// works while degraded, reconnection backs off, and the adapter connects
// and subscribes when Redis appears.
func TestShardedRedisDownAtStart(t *testing.T) {
	verifyNoLeaks(t)
	requireRedisServer(t)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	prefix := uniqueKey(t)
	b, io, cl, st, lg := shardedSingle(t, addr, ShardedOptions{ChannelPrefix: prefix, MaxReconnectDelay: 300 * time.Millisecond, HealthCheckInterval: 300 * time.Millisecond})
	waitFor(t, "degraded", func() bool { return b.State() == StateDegraded })
	io.Emit("local", 1)
	waitEvents(t, cl, "local", 1)
	if n := lg.count(slog.LevelWarn); n != 1 {
		t.Errorf("%d warnings while down, want 1", n)
	}
	p := &redisProc{t: t, port: port, dir: t.TempDir()}
	p.args = []string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", p.dir, "--daemonize", "no", "--loglevel", "warning"}
	p.start()
	t.Cleanup(p.stop)
	waitFor(t, "connected", func() bool { return b.State() == StateConnected })
	st.expect(t, StateDegraded, StateConnected, 1)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() })
	waitFor(t, "main channel subscribed", func() bool {
		m, err := rdb.PubSubShardNumSub(context.Background(), prefix+"#/#").Result()
		return err == nil && m[prefix+"#/#"] == 1
	})
	frame := `{"type":3,"data":{"packet":{"type":2,"data":["remote",1]},"opts":{"rooms":[],"except":[],"flags":{}}},"uid":"0123456789abcdef","nsp":"/"}`
	if err := rdb.SPublish(context.Background(), prefix+"#/#", frame).Err(); err != nil {
		t.Fatal(err)
	}
	waitEvents(t, cl, "remote", 1)
}

// TestShardedRedisRestart: killed mid-traffic, the adapter degrades (local
// delivery goes on), then resubscribes every channel, rooms included, when
// Redis is back.
func TestShardedRedisRestart(t *testing.T) {
	verifyNoLeaks(t)
	p := startRedis(t)
	opts := ShardedOptions{MaxReconnectDelay: 300 * time.Millisecond, HealthCheckInterval: 300 * time.Millisecond}
	env := &shEnv{name: "restartable", ordered: true,
		client: func(t testing.TB) redis.UniversalClient {
			c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
			t.Cleanup(func() { _ = c.Close() })
			return c
		},
		masters: func(t testing.TB) []*redis.Client {
			c := redis.NewClient(&redis.Options{Addr: p.Addr()})
			t.Cleanup(func() { _ = c.Close() })
			return []*redis.Client{c}
		},
	}
	c := newShCluster(t, env, 2, mkSharded(&opts))
	c.socks[1].Join("stream")
	c.nodes[0].io.To("stream").Emit("s", 0)
	waitEvents(t, c.clients[1], "s", 1)
	p.Kill()
	for i, nd := range c.nodes {
		waitFor(t, fmt.Sprintf("server %d degraded", i), func() bool { return nd.b.State() == StateDegraded })
	}
	c.nodes[1].io.To("stream").Emit("s", 1) // local delivery goes on
	waitEvents(t, c.clients[1], "s", 2)
	downAt := time.Now()
	p.Restart()
	// Stopped before the leak check (cleanups run last-in first-out).
	t.Cleanup(p.stop)
	for i, nd := range c.nodes {
		waitFor(t, fmt.Sprintf("server %d connected", i), func() bool { return nd.b.State() == StateConnected })
	}
	t.Logf("reconnected %v after the restart", time.Since(downAt))
	waitFor(t, "room channel resubscribed", func() bool {
		return env.shardNumSub(t, c.masters, c.prefix+"#/#stream#") == 1
	})
	c.nodes[0].io.To("stream").Emit("s", 2)
	evs := waitEvents(t, c.clients[1], "s", 3)
	var seq []float64
	for _, e := range evs {
		seq = append(seq, e.Args[0].(float64))
	}
	if !sort.Float64sAreSorted(seq) || len(seq) != 3 {
		t.Errorf("sequence %v", seq)
	}
	if r := c.nodes[0].b.Stats().Reconnects; r != 1 {
		t.Errorf("Reconnects = %d", r)
	}
}

// TestShardedFrozenRedis freezes Redis (CLIENT PAUSE ALL) under a stream of
// room broadcasts: both servers degrade (the idle ping goes unanswered),
// answer from local state at once, replace their subscriber connection and
// resubscribe when Redis thaws; the remote client gets no duplicate and
// nothing out of order, the local one everything.
func TestShardedFrozenRedis(t *testing.T) {
	verifyNoLeaks(t)
	p := startRedis(t)
	env := &shEnv{name: "freezable", ordered: true,
		client: func(t testing.TB) redis.UniversalClient {
			c := redis.NewClient(&redis.Options{Addr: p.Addr(), ReadTimeout: 100 * time.Millisecond})
			t.Cleanup(func() { _ = c.Close() })
			return c
		},
		masters: func(t testing.TB) []*redis.Client {
			c := redis.NewClient(&redis.Options{Addr: p.Addr(), ReadTimeout: 10 * time.Second})
			t.Cleanup(func() { _ = c.Close() })
			return []*redis.Client{c}
		},
	}
	opts := ShardedOptions{HealthCheckInterval: 300 * time.Millisecond, MaxReconnectDelay: 500 * time.Millisecond, PublishTimeout: 300 * time.Millisecond}
	c := newShCluster(t, env, 2, mkSharded(&opts))
	for _, s := range c.socks {
		s.Join("stream")
	}
	admin := c.masters[0]
	em := startEmitter(c.nodes[0].io, 2*time.Millisecond)
	waitFor(t, "remote deliveries flowing", func() bool { return len(c.clients[1].Received("s")) > 20 })
	pause := 3 * time.Second
	frozeAt := time.Now()
	if err := admin.Do(context.Background(), "CLIENT", "PAUSE", pause.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	for i, nd := range c.nodes {
		waitFor(t, fmt.Sprintf("server %d degraded", i), func() bool { return nd.b.State() == StateDegraded })
	}
	t.Logf("degraded %v after CLIENT PAUSE", time.Since(frozeAt).Round(time.Millisecond))
	start := time.Now()
	if n := c.ns(0, "/").Adapter().ServerCount(); n != 1 {
		t.Errorf("ServerCount while frozen = %d", n)
	}
	if got, err := fetch(t, c.nodes[0].io); err != nil || len(got) != 1 {
		t.Errorf("fetchSockets while frozen: %d, %v", len(got), err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("public calls took %v while Redis was frozen", d)
	}
	for i, nd := range c.nodes {
		deadline := time.Now().Add(pause + waitTimeout)
		for nd.b.State() != StateConnected {
			if time.Now().After(deadline) {
				t.Fatalf("server %d still %v", i, nd.b.State())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("connected again %v after the freeze began (freeze: %v)", time.Since(frozeAt).Round(time.Millisecond), pause)
	resumeFrom := em.next.Load()
	waitFor(t, "remote deliveries resumed", func() bool {
		got := seqs(t, "client 1", c.clients[1])
		return len(got) > 0 && got[len(got)-1] > resumeFrom
	})
	total := em.halt()
	c.fence("/", c.clients...)
	if local := seqs(t, "client 0 (local)", c.clients[0]); int64(len(local)) != total {
		t.Fatalf("local client got %d of %d", len(local), total)
	}
	remote := seqs(t, "client 1 (remote)", c.clients[1]) // fails on a duplicate
	t.Logf("remote client: %d of %d broadcasts, in order, no duplicate; largest Emit call %v", len(remote), total, time.Duration(em.maxCall.Load()))
	if n := len(shPubSubClients(t, admin)); n != 2 {
		t.Errorf("%d subscriber connections after the freeze, want 2 (the frozen ones replaced)", n)
	}
}
