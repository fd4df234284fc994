package redisadapter

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io/v2/socket"
	"go.uber.org/goleak"
)

// The core behaviours of the adapter, each proven in every mode of
// allModes() by the same test: broadcasts across servers, the subscriber
// connections, Close, ServerCount, options, the channel of each message and
// room subscriptions. Requests are in requests_test.go, broadcasts with
// acknowledgements in acks_test.go.

// bind returns c with its helpers (Fence, Connect) failing t instead of the
// test that started the cluster: the cases of a table share one cluster per
// mode, and a subtest must not fail its parent.
func bind(c *testkit.Cluster, t *testing.T) *testkit.Cluster {
	cc := *c
	cc.T = t
	return &cc
}

// connectEach connects one client to every live server of c on nsp for the
// case t. When t ends the clients are closed and every server has forgotten
// their sockets (and so their rooms), so that the next case of a shared
// cluster starts clean.
func connectEach(t *testing.T, c *testkit.Cluster, nsp string) ([]*sioclient.Client, []*socket.Socket) {
	t.Helper()
	var socks []*socket.Socket
	// Registered before the clients' own cleanups, so that it runs after
	// them.
	t.Cleanup(func() {
		for _, s := range socks {
			a := s.Nsp().Adapter()
			testkit.WaitFor(t, fmt.Sprintf("socket %s forgotten", s.Id()), func() bool {
				_, inNsp := s.Nsp().Sockets().Load(s.Id())
				_, inAdapter := a.Sids().Load(s.Id())
				return !inNsp && !inAdapter
			})
		}
	})
	var cls []*sioclient.Client
	for _, nd := range c.Live() {
		cl, s := nd.Connect(t, nsp)
		cls, socks = append(cls, cl), append(socks, s)
	}
	return cls, socks
}

// payload is what the broadcast cases send: a number, a string and binary.
var payload = []any{1, "2", []byte{3, 4}}

// checkPayload checks that ev carries payload first, its binary part as
// binary.
func checkPayload(t *testing.T, server int, ev sioclient.Event) {
	t.Helper()
	if len(ev.Args) < 3 || ev.Args[0] != float64(1) || ev.Args[1] != "2" {
		t.Errorf("client on server %d got args %#v", server, ev.Args)
		return
	}
	b, ok := ev.Args[2].([]byte)
	if !ok || !bytes.Equal(b, []byte{3, 4}) || !ev.Binary {
		t.Errorf("client on server %d got %#v (binary packet: %v), want []byte{3, 4} as binary", server, ev.Args[2], ev.Binary)
	}
}

// asBytes returns the bytes of a binary value as the server hands it over.
func asBytes(v any) []byte {
	switch b := v.(type) {
	case []byte:
		return b
	case types.BufferInterface:
		return b.Bytes()
	}
	return nil
}

// broadcastCase is one cross-server broadcast: the cases of the Node
// adapter's suite (classic and sharded), and rooms that matter to the channel
// choice of the sharded and room-subscription modes.
type broadcastCase struct {
	name string
	// nsp is the namespace of the clients; the other one ("/" or
	// "/custom") has bystanders that must receive nothing.
	nsp string
	// setup runs once every client is connected; socks[i] is the socket of
	// the client of server i.
	setup func(socks []*socket.Socket)
	// emit sends "test" with payload.
	emit func(c *testkit.Cluster, socks []*socket.Socket)
	// want lists the servers whose client receives the event exactly once;
	// the others receive nothing.
	want []int
	// nested: payload is followed by {"b": [[]byte{5}]}.
	nested bool
}

func broadcastCases() []broadcastCase {
	io := func(c *testkit.Cluster, i int) *socket.Server { return c.Nodes[i].IO }
	return []broadcastCase{
		{
			name: "to all clients",
			nsp:  "/",
			emit: func(c *testkit.Cluster, _ []*socket.Socket) { io(c, 0).Emit("test", payload...) },
			want: []int{0, 1, 2},
		},
		{
			name: "to all clients of a namespace",
			nsp:  "/custom",
			emit: func(c *testkit.Cluster, _ []*socket.Socket) { c.Ns(0, "/custom").Emit("test", payload...) },
			want: []int{0, 1, 2},
		},
		{
			name:  "to a room joined on another server",
			nsp:   "/",
			setup: func(s []*socket.Socket) { s[1].Join("room1") },
			emit:  func(c *testkit.Cluster, _ []*socket.Socket) { io(c, 0).To("room1").Emit("test", payload...) },
			want:  []int{1},
		},
		{
			name:  "to a room of a custom namespace",
			nsp:   "/custom",
			setup: func(s []*socket.Socket) { s[2].Join("room1") },
			emit:  func(c *testkit.Cluster, _ []*socket.Socket) { c.Ns(1, "/custom").To("room1").Emit("test", payload...) },
			want:  []int{2},
		},
		{
			name:  "to all clients except a room",
			nsp:   "/",
			setup: func(s []*socket.Socket) { s[1].Join("room1") },
			emit:  func(c *testkit.Cluster, _ []*socket.Socket) { io(c, 0).Except("room1").Emit("test", payload...) },
			want:  []int{0, 2},
		},
		{
			name: "to a room except another room",
			nsp:  "/",
			setup: func(s []*socket.Socket) {
				s[0].Join("room1")
				s[1].Join("room1", "muted")
				s[2].Join("room1")
			},
			emit: func(c *testkit.Cluster, _ []*socket.Socket) {
				io(c, 2).To("room1").Except("muted").Emit("test", payload...)
			},
			want: []int{0, 2},
		},
		{
			name: "to several rooms, each client once",
			nsp:  "/",
			setup: func(s []*socket.Socket) {
				s[0].Join("room1")
				s[1].Join("room1", "room2")
				s[2].Join("room2", "room3")
			},
			emit: func(c *testkit.Cluster, _ []*socket.Socket) {
				io(c, 0).To("room1").To("room2").Except("room3").Emit("test", payload...)
			},
			want: []int{0, 1},
		},
		{
			name: "local flag stays on its server",
			nsp:  "/",
			emit: func(c *testkit.Cluster, _ []*socket.Socket) { io(c, 0).Local().Emit("test", payload...) },
			want: []int{0},
		},
		{
			name: "private message to a socket id on another server",
			nsp:  "/",
			emit: func(c *testkit.Cluster, s []*socket.Socket) {
				io(c, 0).To(socket.Room(s[1].Id())).Emit("test", payload...)
			},
			want: []int{1},
		},
		{
			name:  "to a numeric room",
			nsp:   "/",
			setup: func(s []*socket.Socket) { s[0].Join("123") },
			emit:  func(c *testkit.Cluster, _ []*socket.Socket) { io(c, 1).To("123").Emit("test", payload...) },
			want:  []int{0},
		},
		{
			// Node takes a room of 20 characters for one of its socket ids:
			// the sharded dynamic mode publishes it on the namespace channel.
			name:  "to a public room of 20 characters",
			nsp:   "/",
			setup: func(s []*socket.Socket) { s[2].Join("abcdefghijklmnopqrst") },
			emit: func(c *testkit.Cluster, _ []*socket.Socket) {
				io(c, 0).To("abcdefghijklmnopqrst").Emit("test", payload...)
			},
			want: []int{2},
		},
		{
			name: "compress flag",
			nsp:  "/",
			emit: func(c *testkit.Cluster, _ []*socket.Socket) { io(c, 0).Compress(true).Emit("test", payload...) },
			want: []int{0, 1, 2},
		},
		{
			name: "from a socket to its room, excluding itself",
			nsp:  "/",
			setup: func(s []*socket.Socket) {
				for _, so := range s {
					so.Join("chat")
				}
			},
			emit: func(_ *testkit.Cluster, s []*socket.Socket) { s[2].Broadcast().To("chat").Emit("test", payload...) },
			want: []int{0, 1},
		},
		{
			name: "binary nested in objects and arrays",
			nsp:  "/",
			emit: func(c *testkit.Cluster, _ []*socket.Socket) {
				io(c, 1).Emit("test", payload[0], payload[1], payload[2], map[string]any{"b": []any{[]byte{5}}})
			},
			want:   []int{0, 1, 2},
			nested: true,
		},
	}
}

// TestBroadcast runs every broadcast case on three servers, with one client
// per server in the case's namespace and one bystander per server in the
// other, and checks exactly-once delivery to the intended clients and
// nothing to the others: once every server's fence has reached every client
// (Cluster.Fence), everything sent before it has arrived. The cases of a
// mode share its cluster; each case has clients of its own.
func TestBroadcast(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		shared := newModeCluster(t, m, 3, "/custom")
		for _, tc := range broadcastCases() {
			t.Run(tc.name, func(t *testing.T) {
				c := bind(shared, t)
				other := "/custom"
				if tc.nsp == "/custom" {
					other = "/"
				}
				clients, socks := connectEach(t, c, tc.nsp)
				bystanders, _ := connectEach(t, c, other)
				if tc.setup != nil {
					tc.setup(socks)
				}
				tc.emit(c, socks)
				want := map[int]bool{}
				for _, i := range tc.want {
					want[i] = true
					testkit.WaitEvents(t, clients[i], "test", 1)
				}
				c.Fence(tc.nsp, clients...)
				c.Fence(other, bystanders...)
				for i, cl := range clients {
					got := cl.Received("test")
					switch {
					case !want[i] && len(got) != 0:
						t.Errorf("client on server %d received %d events, want none", i, len(got))
					case want[i] && len(got) != 1:
						t.Errorf("client on server %d received %d events, want exactly 1", i, len(got))
					case want[i]:
						checkPayload(t, i, got[0])
						args := got[0].Args
						switch {
						case !tc.nested && len(args) != 3:
							t.Errorf("client on server %d: %d arguments, want 3", i, len(args))
						case tc.nested:
							var inner []any
							if len(args) == 4 {
								obj, _ := args[3].(map[string]any)
								inner, _ = obj["b"].([]any)
							}
							if len(inner) != 1 || !bytes.Equal(asBytes(inner[0]), []byte{5}) {
								t.Errorf("client on server %d: arguments %#v, want the nested binary last", i, args)
							}
						}
					}
				}
				for i, by := range bystanders {
					if n := len(by.Received("test")); n != 0 {
						t.Errorf("client of %s on server %d received %d events leaked from %s", other, i, n, tc.nsp)
					}
				}
			})
		}
		// A volatile packet may be dropped for a client whose transport is
		// busy: numbered packets are emitted until every client has one,
		// and none may arrive twice.
		t.Run("volatile flag", func(t *testing.T) {
			c := bind(shared, t)
			clients, _ := connectEach(t, c, "/")
			seq := 0
			testkit.WaitFor(t, "every client received a volatile packet", func() bool {
				seq++
				c.Nodes[0].IO.Volatile().Emit("vol", seq)
				for _, cl := range clients {
					if len(cl.Received("vol")) == 0 {
						return false
					}
				}
				return true
			})
			c.Fence("/", clients...)
			for i, cl := range clients {
				seen := map[float64]bool{}
				for _, ev := range cl.Received("vol") {
					n := ev.Args[0].(float64)
					if seen[n] {
						t.Errorf("client on server %d received volatile packet %v twice", i, n)
					}
					seen[n] = true
				}
			}
		})
	})
}

// TestBroadcastBurst sends a fast burst of room broadcasts from two servers
// to many WebSocket clients, with the server's default engine options, and
// checks that every client gets every message, in each sender's order.
//
// engine.io v2.5.0's WebSocket transport writes only the first of several
// queued packets that carry a pre-encoded frame (transports/websocket.go,
// send returns instead of continuing); the server's in-memory adapter
// attaches one to every broadcast, so the same burst through it loses most
// messages. The adapter's local delivery attaches none (rooms.go, deliver),
// and must lose nothing.
func TestBroadcastBurst(t *testing.T) {
	const perServer = 25 // clients per server
	const messages = 300 // messages per sender
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		c := newModeCluster(t, m, 2)
		var clients []*sioclient.Client
		for i := range c.Nodes {
			for j := 0; j < perServer; j++ {
				cl, s := c.Connect(i, "/")
				s.Join("burst")
				clients = append(clients, cl)
			}
		}
		for i := 0; i < messages; i++ {
			c.Nodes[0].IO.To("burst").Emit("b", 0, i, "payload of a chat message")
			c.Nodes[1].IO.To("burst").Emit("b", 1, i, "payload of a chat message")
		}
		for k, cl := range clients {
			evs := testkit.WaitEvents(t, cl, "b", 2*messages)
			next := [2]float64{}
			for _, ev := range evs {
				from := int(ev.Args[0].(float64))
				if got := ev.Args[1].(float64); got != next[from] {
					t.Fatalf("client %d: from server %d got message %v, want %v (lost or out of order)", k, from, got, next[from])
				}
				next[from]++
			}
			if next != [2]float64{messages, messages} {
				t.Fatalf("client %d: %v messages per sender, want %d each", k, next, messages)
			}
		}
	})
}

// transportKind describes the transport of a Builder, for the expectations
// that differ between modes.
type transportKind struct {
	classic, rooms, sharded, streams bool
	// mode is the sharded subscription mode.
	mode SubscriptionMode
}

func kindOf(b *Builder) transportKind {
	switch t := b.t.(type) {
	case *classicTransport:
		return transportKind{classic: true, rooms: t.rooms}
	case *shardedTransport:
		return transportKind{sharded: true, mode: t.mode}
	case *streamsTransport:
		return transportKind{streams: true}
	}
	panic(fmt.Sprintf("unknown transport %T", b.t))
}

// perRoom reports whether the transport subscribes to the channel of each
// public room it holds.
func (k transportKind) perRoom() bool {
	return k.rooms || (k.sharded && k.mode != SubscriptionModeStatic)
}

// nsChannels returns the channels a server of b subscribes to for namespace
// nsp (besides rooms and patterns), and whether they are sharded channels.
func nsChannels(b *Builder, nsp string) (channels []string, sharded bool) {
	k := kindOf(b)
	if k.classic {
		ch := wire.NewClassicChannels(b.opts.Key, nsp, b.uid)
		channels = []string{ch.Request, ch.Response, ch.SpecificResponse}
		if k.rooms {
			channels = append(channels, ch.Broadcast)
		}
		return channels, false
	}
	ch := wire.NewClusterChannels(b.opts.Key, nsp, b.uid)
	return []string{ch.Main, ch.Private}, k.sharded
}

// roomChannel returns the channel of a room of nsp, and whether it is
// sharded.
func roomChannel(b *Builder, nsp, room string) (string, bool) {
	k := kindOf(b)
	if k.classic {
		ch := wire.NewClassicChannels(b.opts.Key, nsp, b.uid)
		return ch.Room(room), false
	}
	ch := wire.NewClusterChannels(b.opts.Key, nsp, b.uid)
	return ch.Room(room), k.sharded
}

// subscribers returns the number of subscribers of channel on masters.
func subscribers(masters []*redis.Client, channel string, sharded bool) int64 {
	if sharded {
		return testkit.ShardNumSub(masters, channel)
	}
	return testkit.NumSub(masters, channel)
}

// namedEnv returns env with every server's client named prefix-i (i in start
// order), so that CLIENT LIST tells which connections a server holds, even
// on a Redis that other tests share. It applies to a real standalone Redis.
func namedEnv(env *testkit.Env, prefix string) *testkit.Env {
	e := *env
	var n atomic.Int32
	e.Client = func(t testing.TB) redis.UniversalClient {
		var o *redis.Options
		if env.Proc != nil {
			o = env.Proc.Options()
		} else {
			o = env.Redis.Options()
		}
		o.ClientName = fmt.Sprintf("%s-%d", prefix, n.Add(1)-1)
		c := redis.NewClient(o)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	return &e
}

// pubsubConn is one subscriber connection of CLIENT LIST.
type pubsubConn struct {
	line            string
	sub, psub, ssub int
}

// subscriberConns returns the connections named name that hold
// subscriptions.
func subscriberConns(t *testing.T, admin *redis.Client, name string) []pubsubConn {
	t.Helper()
	list, err := admin.Do(context.Background(), "CLIENT", "LIST").Text()
	if err != nil {
		t.Fatal(err)
	}
	var out []pubsubConn
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		f := map[string]string{}
		for _, kv := range strings.Fields(line) {
			if k, v, ok := strings.Cut(kv, "="); ok {
				f[k] = v
			}
		}
		if f["name"] != name {
			continue
		}
		c := pubsubConn{line: line}
		c.sub, _ = strconv.Atoi(f["sub"])
		c.psub, _ = strconv.Atoi(f["psub"])
		c.ssub, _ = strconv.Atoi(f["ssub"])
		if c.sub+c.psub+c.ssub > 0 {
			out = append(out, c)
		}
	}
	return out
}

// TestOneSubscriberConnectionPerServer checks that a server holds every
// namespace and room on one subscriber connection (per master): on a real
// Redis, CLIENT LIST shows one connection per server with the channels and
// patterns of the mode; on miniredis, which does not list connections,
// PUBSUB NUMSUB counts each server once per channel and NUMPAT one pattern
// per namespace per server in classic mode (none in the others).
func TestOneSubscriberConnectionPerServer(t *testing.T) {
	const servers, rooms = 2, 3
	nsps := []string{"/a", "/b"}
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		env := envFor(t, m)
		key := testkit.UniqueKey(t)
		if env.Real {
			env = namedEnv(env, key)
		}
		c := testkit.StartCluster(t, testkit.ClusterConfig{Env: env, N: servers, Mode: m, Nsps: nsps, Key: key})
		for i := range c.Nodes {
			_, s := c.Connect(i, "/")
			for r := 0; r < rooms; r++ {
				s.Join(socket.Room(fmt.Sprintf("room-%d-%d", i, r)))
			}
		}
		k := kindOf(builderOf(c, 0))
		nns := len(c.Nsps)
		for _, nsp := range c.Nsps {
			chans, sharded := nsChannels(builderOf(c, 0), nsp)
			for _, ch := range chans[:1] { // the namespace's shared channel
				if n := subscribers(c.Masters, ch, sharded); n != servers {
					t.Errorf("%s: %d subscribers, want %d (one per server)", ch, n, servers)
				}
			}
		}
		if !env.Real {
			want := 0
			if k.classic && !k.rooms {
				want = servers * nns
			}
			if got := env.Redis.Mini().PubSubNumPat(); got != want {
				t.Errorf("NUMPAT = %d, want %d", got, want)
			}
			return
		}
		// Each server: the namespace channels (3 in classic, plus the
		// namespace's broadcast channel with room subscriptions; 2 in the
		// cluster protocol), and with room subscriptions its client's
		// rooms and own-id room.
		var sub, psub, ssub int
		held := 1 + rooms
		switch {
		case k.classic && k.rooms:
			sub = 4*nns + held
		case k.classic:
			sub, psub = 3*nns, nns
		case k.streams:
			sub = 2 * nns
		case k.mode == SubscriptionModeStatic:
			ssub = 2 * nns
		default:
			ssub = 2*nns + held
		}
		for i := range c.Nodes {
			name := fmt.Sprintf("%s-%d", key, i)
			var conns []pubsubConn
			testkit.WaitFor(t, fmt.Sprintf("server %d subscribed sub=%d psub=%d ssub=%d", i, sub, psub, ssub), func() bool {
				conns = subscriberConns(t, c.Masters[0], name)
				return len(conns) == 1 && conns[0].sub == sub && conns[0].psub == psub && conns[0].ssub == ssub
			})
		}
	})
}

// TestNamespaceCloseUnsubscribesOnlyItself checks Adapter.Close: the closed
// namespace's channels lose the server, the others keep it.
func TestNamespaceCloseUnsubscribesOnlyItself(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		c := newModeCluster(t, m, 1, "/a")
		b := builderOf(c, 0)
		// Alone, a server counts 1 before it is subscribed.
		testkit.WaitFor(t, "connected", func() bool { return b.State() == StateConnected })
		a := c.Ns(0, "/a").Adapter().(*Adapter)
		a.Close()
		a.Close() // idempotent
		closed, sharded := nsChannels(b, "/a")
		kept, _ := nsChannels(b, "/")
		for _, ch := range closed {
			testkit.WaitFor(t, ch+" unsubscribed", func() bool { return subscribers(c.Masters, ch, sharded) == 0 })
		}
		if mini := c.Env.Redis; mini != nil && mini.Mini() != nil && kindOf(b).classic && !kindOf(b).rooms {
			testkit.WaitFor(t, "pattern of /a removed", func() bool { return mini.Mini().PubSubNumPat() == 1 })
		}
		for _, ch := range kept {
			if n := subscribers(c.Masters, ch, sharded); n != 1 {
				t.Errorf("%s lost its subscription: %d subscribers", ch, n)
			}
		}
		if n := c.Ns(0, "/").Adapter().ServerCount(); n != 1 {
			t.Errorf("ServerCount of / = %d after closing /a", n)
		}
	})
}

// TestBuilderCloseLeavesNothingBehind checks that Close stops every goroutine
// the Builder started and every subscription it held, is idempotent, and
// leaves the user's client usable.
func TestBuilderCloseLeavesNothingBehind(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		env := envFor(t, m)
		key := testkit.UniqueKey(t)
		if env.Real {
			env = namedEnv(env, key)
		}
		before := goleak.IgnoreCurrent()
		c := testkit.StartCluster(t, testkit.ClusterConfig{Env: env, N: 1, Mode: m, Nsps: []string{"/x"}, Key: key})
		nd := c.Nodes[0]
		b := builderOf(c, 0)
		testkit.WaitFor(t, "connected", func() bool { return b.State() == StateConnected })
		nd.IO.Emit("hello", 1)
		var chans []string
		var sharded bool
		for _, nsp := range c.Nsps {
			cs, sh := nsChannels(b, nsp)
			chans, sharded = append(chans, cs...), sh
		}
		nd.Close() // closes the server, then the Builder
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if b.State() != StateClosed {
			t.Fatalf("state after Close = %v", b.State())
		}
		if err := nd.RDB.Ping(context.Background()).Err(); err != nil {
			t.Fatalf("the user's client was closed by Builder.Close: %v", err)
		}
		for _, ch := range chans {
			testkit.WaitFor(t, ch+" has no subscriber", func() bool { return subscribers(c.Masters, ch, sharded) == 0 })
		}
		if env.Real {
			testkit.WaitFor(t, "no subscriber connection left", func() bool {
				return len(subscriberConns(t, c.Masters[0], key+"-0")) == 0
			})
		} else {
			testkit.WaitFor(t, "no pattern left", func() bool { return env.Redis.Mini().PubSubNumPat() == 0 })
		}
		// The embedded Redis still serves the connections of the test's
		// own clients.
		mini := goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer")
		miniRead := goleak.IgnoreAnyFunction("github.com/alicebob/miniredis/v2/server.(*Server).servePeer.func2")
		if err := goleak.Find(before, testkit.IgnoreRedial, mini, miniRead); err != nil {
			t.Errorf("goroutines left after Close: %v", err)
		}
	})
}

// TestServerCount checks that every server counts all servers on every
// namespace, and one less once a server is gone.
func TestServerCount(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		c := newModeCluster(t, m, 3, "/other")
		for i := range c.Nodes {
			for _, nsp := range c.Nsps {
				if got := c.Ns(i, nsp).Adapter().ServerCount(); got != 3 {
					t.Errorf("server %d %s: ServerCount = %d, want 3", i, nsp, got)
				}
			}
		}
		c.Nodes[2].Close()
		c.WaitServers(2)
	})
}

// TestBroadcastRightAfterJoin: a broadcast another server sends right after
// Join returns is never lost. In the modes that subscribe per room
// (RoomSubscriptions, sharded dynamic), Join waits for Redis to confirm the
// room's subscription (JoinTimeout); the other modes have no such window.
func TestBroadcastRightAfterJoin(t *testing.T) {
	const rounds = 50
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		c := newModeCluster(t, m, 2)
		cls, socks := c.ConnectEach("/")
		for i := 0; i < rounds; i++ {
			room := socket.Room(fmt.Sprintf("fresh-%d", i))
			socks[1].Join(room)
			c.Nodes[0].IO.To(room).Emit("fresh", i)
		}
		c.Fence("/", cls...)
		if n := len(cls[1].Received("fresh")); n != rounds {
			t.Fatalf("%d of %d broadcasts arrived; sender %+v, receiver %+v", n, rounds, builderOf(c, 0).Stats(), builderOf(c, 1).Stats())
		}
		if n := builderOf(c, 1).Stats().JoinWaitExpired; n != 0 {
			t.Errorf("%d joins stopped waiting for their subscription", n)
		}
	})
}

// TestRoomSubscriptions: in the modes that subscribe per room, a room's
// channel is subscribed when the first local socket joins (confirmed before
// Join returns), kept while a socket is in the room, and unsubscribed when
// the last one leaves or disconnects; a socket's own-id channel follows the
// socket (except in static mode). The other modes never subscribe to a
// room's channel.
func TestRoomSubscriptions(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		c := newModeCluster(t, m, 2)
		cls, socks := c.ConnectEach("/")
		b := builderOf(c, 1)
		k := kindOf(b)
		want := int64(0)
		if k.perRoom() {
			want = 1
		}
		ch, sharded := roomChannel(b, "/", "lobby")
		count := func() int64 { return subscribers(c.Masters, ch, sharded) }
		socks[1].Join("lobby")
		if n := count(); n != want {
			t.Fatalf("right after Join: %s has %d subscribers, want %d", ch, n, want)
		}
		cl2, s2 := c.Connect(1, "/")
		s2.Join("lobby")
		socks[1].Leave("lobby")
		c.Fence("/", append(cls, cl2)...)
		if n := count(); n != want {
			t.Fatalf("with one member left: %s has %d subscribers, want %d", ch, n, want)
		}
		_ = cl2.Close()
		testkit.WaitFor(t, "room channel unsubscribed after the last member disconnected", func() bool { return count() == 0 })

		own, _ := roomChannel(b, "/", string(socks[0].Id()))
		wantOwn := int64(0)
		if k.perRoom() {
			// Go socket ids have 24 characters: the dynamic mode subscribes
			// to them, since Node publishes a message to such a socket on
			// its room's channel.
			wantOwn = 1
		}
		if n := subscribers(c.Masters, own, sharded); n != wantOwn {
			t.Fatalf("own-id channel %s: %d subscribers, want %d", own, n, wantOwn)
		}
		_ = cls[0].Close()
		testkit.WaitFor(t, "own-id channel unsubscribed", func() bool { return subscribers(c.Masters, own, sharded) == 0 })
	})
}

// TestChannelChoice checks on which channel (or stream) each transport sends
// a message: Node's computeChannel in sharded mode, one room's channel in
// classic mode, the stream or pub/sub in streams mode.
func TestChannelChoice(t *testing.T) {
	goID := "abcdefghijklmnopqrstuvwx" // 24 characters, a Go socket id
	nodeID := "ABCDEFGHIJ0123456789"   // 20 characters, a Node socket id
	wide := "éééééééééééééééééééé"     // 20 UTF-16 units, 40 bytes
	b := &Builder{opts: Options{Key: "p"}, uid: "me"}
	broadcast := func(rooms ...string) *wire.Message {
		return &wire.Message{Type: wire.TypeBroadcast, Packet: wire.Packet{Type: wire.PacketEvent, Data: []any{"ev"}}, Opts: wire.Opts{Rooms: rooms}}
	}
	withAck := func(rooms ...string) *wire.Message {
		m := broadcast(rooms...)
		m.RequestID = "r"
		return m
	}
	fetch := &wire.Message{Type: wire.TypeFetchSockets, RequestID: "r"}
	answer := &wire.Message{Type: wire.TypeFetchSocketsResponse, RequestID: "r", Sockets: []wire.Socket{}}
	sharded := func(mode SubscriptionMode) transport {
		return &shardedTransport{b: b, mode: mode}
	}
	specific := &Builder{opts: Options{Key: "p", PublishOnSpecificResponseChannel: true}, uid: "me"}
	streams := &streamsTransport{b: b, opts: StreamsOptions{StreamName: "s", StreamCount: 1, MaxLen: 10}, nsps: map[string]*streamNsp{}}
	cases := []struct {
		name    string
		t       transport
		m       *wire.Message
		cmd     command
		channel string
	}{
		{"dynamic: one room", sharded(SubscriptionModeDynamic), broadcast("room1"), cmdSPublish, "p#/#room1#"},
		{"dynamic: a Go socket id", sharded(SubscriptionModeDynamic), broadcast(goID), cmdSPublish, "p#/#" + goID + "#"},
		{"dynamic: a Node socket id", sharded(SubscriptionModeDynamic), broadcast(nodeID), cmdSPublish, "p#/#"},
		{"dynamic: 20 UTF-16 units", sharded(SubscriptionModeDynamic), broadcast(wide), cmdSPublish, "p#/#"},
		{"dynamic: two rooms", sharded(SubscriptionModeDynamic), broadcast("room1", "room2"), cmdSPublish, "p#/#"},
		{"dynamic: no room", sharded(SubscriptionModeDynamic), broadcast(), cmdSPublish, "p#/#"},
		{"dynamic: with acks", sharded(SubscriptionModeDynamic), withAck("room1"), cmdSPublish, "p#/#"},
		{"dynamic-private: a Node socket id", sharded(SubscriptionModeDynamicPrivate), broadcast(nodeID), cmdSPublish, "p#/#" + nodeID + "#"},
		{"dynamic-private: with acks", sharded(SubscriptionModeDynamicPrivate), withAck("room1"), cmdSPublish, "p#/#"},
		{"static: one room", sharded(SubscriptionModeStatic), broadcast("room1"), cmdSPublish, "p#/#"},
		{"sharded: a request", sharded(SubscriptionModeDynamic), fetch, cmdSPublish, "p#/#"},
		{"sharded: an answer", sharded(SubscriptionModeDynamic), answer, cmdSPublish, "p#/#them#"},
		{"classic: one room", newClassicTransport(b), broadcast("room1"), cmdPublish, "p#/#room1#"},
		{"classic: two rooms", newClassicTransport(b), broadcast("room1", "room2"), cmdPublish, "p#/#"},
		{"classic: no room", newClassicTransport(b), broadcast(), cmdPublish, "p#/#"},
		{"classic: with acks", newClassicTransport(b), withAck("room1"), cmdPublish, "p-request#/#"},
		{"classic: a request", newClassicTransport(b), fetch, cmdPublish, "p-request#/#"},
		{"classic: an answer", newClassicTransport(b), answer, cmdPublish, "p-response#/#"},
		{"classic: an answer on the specific channel", newClassicTransport(specific), answer, cmdPublish, "p-response#/#them#"},
		{"streams: a broadcast", streams, broadcast("room1"), cmdXAdd, "s"},
		{"streams: with acks", streams, withAck("room1"), cmdPublish, "p#/#"},
		{"streams: a request", streams, fetch, cmdPublish, "p#/#"},
		{"streams: an answer", streams, answer, cmdPublish, "p#/#them#"},
	}
	for _, tc := range cases {
		m := *tc.m
		m.UID, m.Nsp = "me", "/"
		f := &outFrame{}
		if err := tc.t.encode("/", &m, "them", f); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if f.cmd != tc.cmd || f.channel != tc.channel {
			t.Errorf("%s: command %d on %q, want %d on %q", tc.name, f.cmd, f.channel, tc.cmd, tc.channel)
		}
	}
}

// TestPrivateMessagesToGoSockets: Go socket ids have 24 characters, so in
// the sharded dynamic mode Node sends a private message to a Go socket on
// the socket's room channel. A Go server in that mode subscribes to it (Node
// would not: it is a socket id), and a Go sender applies Node's rule.
// Covered: Go to Go, Node-shaped frames to Go (JSON and MessagePack, as
// Node's adapter writes them), and Go to a Node socket id (20 characters) on
// the namespace channel, except in dynamic-private mode.
func TestPrivateMessagesToGoSockets(t *testing.T) {
	var modes []testkit.Mode
	for _, m := range allModes() {
		if strings.HasPrefix(m.Name, "sharded-") {
			modes = append(modes, m)
		}
	}
	forEachMode(t, modes, func(t *testing.T, m testkit.Mode) {
		c := newModeCluster(t, m, 2)
		cls, socks := c.ConnectEach("/")
		mode := kindOf(builderOf(c, 0)).mode
		sid := string(socks[1].Id())
		if len(sid) == 20 {
			t.Fatalf("Go socket id %q has 20 characters", sid)
		}
		main := c.Key + "#/#"
		private := main + sid + "#"
		admin := c.Masters[0]
		wantSubs := int64(1)
		if mode == SubscriptionModeStatic {
			wantSubs = 0
		}
		if n := testkit.ShardNumSub(c.Masters, private); n != wantSubs {
			t.Fatalf("SHARDNUMSUB %s = %d, want %d", private, n, wantSubs)
		}
		// Go to Go, and the channel the sender picks.
		spy := newShardSpy(t, admin, main, private)
		c.Nodes[0].IO.To(socket.Room(sid)).Emit("pm", "go")
		testkit.WaitEvents(t, cls[1], "pm", 1)
		want := private
		if mode == SubscriptionModeStatic {
			want = main
		}
		if msg := spy.next(t, "go"); msg.Channel != want {
			t.Errorf("the Go sender published on %s, want %s", msg.Channel, want)
		}
		// Node to Go: what Node's sharded adapter publishes for
		// io.to(goSocketId).emit("pm", "node").
		frame := fmt.Sprintf(`{"type":3,"data":{"packet":{"type":2,"data":["pm","node"]},"opts":{"rooms":[%q],"except":[],"flags":{}}},"uid":"0123456789abcdef","nsp":"/"}`, sid)
		if err := admin.SPublish(context.Background(), want, frame).Err(); err != nil {
			t.Fatal(err)
		}
		if evs := testkit.WaitEvents(t, cls[1], "pm", 2); evs[1].Args[0] != "node" {
			t.Errorf("second private message = %#v", evs[1].Args)
		}
		// Node to Go in binary (MessagePack, the whole message).
		bin, err := wire.AppendCluster(nil, &wire.Message{
			Type: wire.TypeBroadcast, UID: "0123456789abcdef", Nsp: "/",
			Packet: wire.Packet{Type: wire.PacketEvent, Data: []any{"pm", []byte{1, 2, 3}}},
			Opts:   wire.Opts{Rooms: []string{sid}},
		}, wire.FormatSharded)
		if err != nil {
			t.Fatal(err)
		}
		if bin[0] == '{' {
			t.Fatal("a binary broadcast was encoded as JSON")
		}
		if err := admin.SPublish(context.Background(), want, bin).Err(); err != nil {
			t.Fatal(err)
		}
		if evs := testkit.WaitEvents(t, cls[1], "pm", 3); !evs[2].Binary || !bytes.Equal(asBytes(evs[2].Args[0]), []byte{1, 2, 3}) {
			t.Errorf("binary private message = %#v", evs[2])
		}
		// Go to a Node socket id.
		nodeSid := "ABCDEFGHIJ0123456789"
		wantNode := main
		if mode == SubscriptionModeDynamicPrivate {
			wantNode = main + nodeSid + "#"
		}
		spy2 := newShardSpy(t, admin, wantNode)
		c.Nodes[0].IO.To(socket.Room(nodeSid)).Emit("pm", "to-node")
		if msg := spy2.next(t, "to-node"); msg.Channel != wantNode {
			t.Errorf("a 20-character room went to %s, want %s", msg.Channel, wantNode)
		}
		c.Fence("/", cls...)
		if n := len(cls[0].Received("pm")); n != 0 {
			t.Errorf("the sender's client received %d private messages", n)
		}
		if n := len(cls[1].Received("pm")); n != 3 {
			t.Errorf("the target received %d private messages, want 3", n)
		}
	})
}

// shardSpy subscribes to sharded channels and records what arrives.
type shardSpy struct {
	ch <-chan *redis.Message
}

func newShardSpy(t *testing.T, rdb *redis.Client, channels ...string) *shardSpy {
	t.Helper()
	ps := rdb.SSubscribe(context.Background(), channels...)
	t.Cleanup(func() { _ = ps.Close() })
	for range channels {
		if _, err := ps.Receive(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	return &shardSpy{ch: ps.Channel()}
}

// next returns the first message whose payload contains marker.
func (s *shardSpy) next(t *testing.T, marker string) *redis.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel()
	for {
		select {
		case m := <-s.ch:
			if strings.Contains(m.Payload, marker) {
				return m
			}
		case <-ctx.Done():
			t.Fatalf("no message with %q arrived", marker)
			return nil
		}
	}
}

// logBuffer collects log lines from any goroutine.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// expectPanic checks that fn panics with a message containing want.
func expectPanic(t *testing.T, want string, fn func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Errorf("no panic, want one saying %q", want)
		} else if !strings.Contains(fmt.Sprint(r), want) {
			t.Errorf("panic %q, want one saying %q", r, want)
		}
	}()
	fn()
}

// TestOptions checks the defaults of Options, ShardedOptions and
// StreamsOptions, their validation, and that the constructors log invalid
// fields and use their defaults instead.
func TestOptions(t *testing.T) {
	testkit.VerifyNoLeaks(t)
	// The constructors do no I/O; the Builders connect in the background
	// to an address that refuses connections, and are closed at once.
	unreachable := func(t *testing.T) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	logged := func(t *testing.T, logs *logBuffer, fields ...string) {
		t.Helper()
		out := logs.String()
		for _, f := range fields {
			if !strings.Contains(out, "invalid options") || !strings.Contains(out, f) {
				t.Errorf("the log does not name the invalid field %s:\n%s", f, out)
			}
		}
	}
	t.Run("Options", func(t *testing.T) {
		o := (*Options)(nil).withDefaults()
		if DefaultKey != "socket.io" || o.Key != DefaultKey || o.RequestsTimeout != DefaultRequestsTimeout || o.PublishTimeout != DefaultPublishTimeout ||
			o.PublishQueueSize != DefaultPublishQueueSize || o.PublishQueueBytes != DefaultPublishQueueBytes ||
			o.HealthCheckInterval != DefaultHealthCheckInterval || o.MaxReconnectDelay != DefaultMaxReconnectDelay ||
			o.JoinTimeout != DefaultJoinTimeout || o.Logger == nil || o.RoomSubscriptions || o.PublishOnSpecificResponseChannel {
			t.Fatalf("defaults: %+v", o)
		}
		if err := (*Options)(nil).Validate(); err != nil {
			t.Errorf("nil options: %v", err)
		}
		if err := (&Options{}).Validate(); err != nil {
			t.Errorf("zero options: %v", err)
		}
		bad := &Options{Key: "a#b", RequestsTimeout: -1, PublishTimeout: -1, HealthCheckInterval: -1, MaxReconnectDelay: -1,
			JoinTimeout: -1, PublishQueueSize: -3, PublishQueueBytes: -4}
		err := bad.Validate()
		for _, f := range []string{"Key", "RequestsTimeout", "PublishTimeout", "HealthCheckInterval", "MaxReconnectDelay", "JoinTimeout", "PublishQueueSize", "PublishQueueBytes"} {
			if err == nil || !strings.Contains(err.Error(), "Options."+f) {
				t.Errorf("Validate does not name %s: %v", f, err)
			}
		}
		if got := bad.withDefaults(); got.Key != DefaultKey || got.RequestsTimeout != DefaultRequestsTimeout || got.PublishTimeout != DefaultPublishTimeout ||
			got.PublishQueueSize != DefaultPublishQueueSize || got.PublishQueueBytes != DefaultPublishQueueBytes || got.JoinTimeout != DefaultJoinTimeout {
			t.Errorf("invalid fields not replaced by defaults: %+v", got)
		}
		// The join wait: NoJoinWait turns it off, and conflicts with a
		// JoinTimeout.
		if err := (&Options{NoJoinWait: true}).Validate(); err != nil {
			t.Errorf("NoJoinWait alone: %v", err)
		}
		if got := (&Options{NoJoinWait: true}).withDefaults(); got.JoinTimeout != 0 {
			t.Errorf("NoJoinWait: JoinTimeout %v, want 0 (no wait)", got.JoinTimeout)
		}
		if err := (&Options{NoJoinWait: true, JoinTimeout: time.Second}).Validate(); err == nil || !strings.Contains(err.Error(), "NoJoinWait") {
			t.Errorf("NoJoinWait with JoinTimeout: %v", err)
		}
		logs := &logBuffer{}
		bad.Logger = slog.New(slog.NewTextHandler(logs, nil))
		b := New(unreachable(t), bad)
		defer b.Close()
		if b.opts.Key != DefaultKey || b.opts.RequestsTimeout != DefaultRequestsTimeout {
			t.Errorf("New kept invalid fields: %+v", b.opts)
		}
		logged(t, logs, "Options.Key", "Options.RequestsTimeout")
		expectPanic(t, "redisadapter: New called with a nil redis client", func() { New(nil, nil) })
	})
	t.Run("ShardedOptions", func(t *testing.T) {
		b := NewSharded(unreachable(t), nil)
		defer b.Close()
		if b.opts.Key != "socket.io" || kindOf(b).mode != SubscriptionModeDynamic || b.opts.RequestsTimeout != 5*time.Second ||
			b.opts.JoinTimeout != time.Second || !b.perRoom {
			t.Errorf("defaults: %+v, mode %s", b.opts, kindOf(b).mode)
		}
		for _, mode := range []SubscriptionMode{SubscriptionModeStatic, SubscriptionModeDynamic, SubscriptionModeDynamicPrivate} {
			if err := (&ShardedOptions{SubscriptionMode: mode}).Validate(); err != nil {
				t.Errorf("%s: %v", mode, err)
			}
		}
		bad := &ShardedOptions{Options: Options{Key: "a#b", RequestsTimeout: -1}, SubscriptionMode: "sometimes"}
		err := bad.Validate()
		for _, f := range []string{"SubscriptionMode", "Options.Key", "Options.RequestsTimeout"} {
			if err == nil || !strings.Contains(err.Error(), f) {
				t.Errorf("Validate does not name %s: %v", f, err)
			}
		}
		if err := (&ShardedOptions{Options: Options{NoJoinWait: true, JoinTimeout: time.Second}}).Validate(); err == nil || !strings.Contains(err.Error(), "NoJoinWait") {
			t.Errorf("NoJoinWait with JoinTimeout: %v", err)
		}
		logs := &logBuffer{}
		bad.Logger = slog.New(slog.NewTextHandler(logs, nil))
		b2 := NewSharded(unreachable(t), bad)
		defer b2.Close()
		if kindOf(b2).mode != SubscriptionModeDynamic || b2.opts.Key != "socket.io" || b2.opts.RequestsTimeout != 5*time.Second {
			t.Errorf("invalid fields not replaced: %+v, mode %s", b2.opts, kindOf(b2).mode)
		}
		logged(t, logs, "SubscriptionMode", "Options.Key")
		b3 := NewSharded(unreachable(t), &ShardedOptions{Options: Options{NoJoinWait: true}, SubscriptionMode: SubscriptionModeStatic})
		defer b3.Close()
		if b3.opts.JoinTimeout != 0 || kindOf(b3).mode != SubscriptionModeStatic || b3.perRoom {
			t.Errorf("static without join wait: %+v, mode %s", b3.opts, kindOf(b3).mode)
		}
		expectPanic(t, "redisadapter: NewSharded called with a nil redis client", func() { NewSharded(nil, nil) })
		ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
		defer ring.Close()
		expectPanic(t, "redisadapter: NewSharded does not support *redis.Ring", func() { NewSharded(ring, nil) })
	})
	t.Run("StreamsOptions", func(t *testing.T) {
		o := (*StreamsOptions)(nil).withDefaults()
		if o.StreamName != DefaultStreamName || o.StreamCount != DefaultStreamCount || o.MaxLen != DefaultMaxLen || o.ReadCount != DefaultReadCount ||
			o.BlockTime != DefaultBlockTime || o.SessionKeyPrefix != DefaultSessionKeyPrefix || o.Key != DefaultKey ||
			o.RequestsTimeout != DefaultRequestsTimeout || o.OnlyPlaintext || o.UseShardedPubSub {
			t.Fatalf("defaults: %+v", o)
		}
		bad := &StreamsOptions{Options: Options{Key: "a#b"}, StreamCount: -1, MaxLen: -1, ReadCount: -1, BlockTime: -1}
		err := bad.Validate()
		for _, f := range []string{"StreamCount", "MaxLen", "ReadCount", "BlockTime", "Options.Key"} {
			if err == nil || !strings.Contains(err.Error(), f) {
				t.Errorf("Validate does not name %s: %v", f, err)
			}
		}
		if got := bad.withDefaults(); got.StreamCount != DefaultStreamCount || got.MaxLen != DefaultMaxLen || got.ReadCount != DefaultReadCount ||
			got.BlockTime != DefaultBlockTime || got.Key != DefaultKey {
			t.Errorf("invalid fields not replaced: %+v", got)
		}
		logs := &logBuffer{}
		bad.Logger = slog.New(slog.NewTextHandler(logs, nil))
		b := NewStreams(unreachable(t), bad)
		defer b.Close()
		if st := b.t.(*streamsTransport).opts; st.StreamCount != DefaultStreamCount || st.MaxLen != DefaultMaxLen || b.opts.Key != DefaultKey {
			t.Errorf("NewStreams kept invalid fields: %+v", st)
		}
		logged(t, logs, "StreamCount", "Options.Key")
		expectPanic(t, "redisadapter: NewStreams called with a nil redis client", func() { NewStreams(nil, nil) })
	})
}
