package redisadapter

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// Cross-server requests, in every mode: fetchSockets, socketsJoin,
// socketsLeave, disconnectSockets, serverSideEmit (with and without
// acknowledgement), AllRooms; their timeouts (in the words of the Node
// adapter of each protocol), exactly-once completion, late answers, and
// requests while Redis is down. The cases of a mode share one cluster of
// three servers; each case connects clients of its own (connectEach).

// withOptions returns mode m (one of allModes, unconfigured) with f applied
// to its servers' Options.
func withOptions(m testkit.Mode, f func(*Options)) testkit.Mode {
	switch {
	case m.Name == "classic":
		return modeClassic(f)
	case m.Name == "classic-rooms":
		return modeRooms(f)
	case strings.HasPrefix(m.Name, "sharded-"):
		return modeSharded(SubscriptionMode(strings.TrimPrefix(m.Name, "sharded-")), f)
	case m.Name == "streams":
		return modeStreams(func(o *StreamsOptions) { f(&o.Options) })
	}
	panic("withOptions: unknown mode " + m.Name)
}

// reply is the outcome of an asynchronous operation.
type reply struct {
	args    []any
	sockets []*socket.RemoteSocket
	err     error
}

// replies collects the completions of one operation, to check that it
// completes exactly once.
type replies chan reply

func newReplies() replies { return make(replies, 8) }

func (r replies) ack(args []any, err error) { r <- reply{args: args, err: err} }

func (r replies) fetched(s []*socket.RemoteSocket, err error) { r <- reply{sockets: s, err: err} }

// wait returns the first completion.
func (r replies) wait(t *testing.T) reply {
	t.Helper()
	select {
	case x := <-r:
		return x
	case <-time.After(testkit.WaitTimeout):
		t.Fatal("the callback was never called")
		return reply{}
	}
}

// once checks that no other completion came: call it when a second one
// would have arrived (after the late answers, or a fence).
func (r replies) once(t *testing.T) {
	t.Helper()
	select {
	case x := <-r:
		t.Errorf("the callback was called again: %+v", x)
	default:
	}
}

// fetcher is what has FetchSockets: a server, a namespace, an operator.
type fetcher interface {
	FetchSockets() func(func([]*socket.RemoteSocket, error))
}

// fetchSockets runs FetchSockets and returns its first completion and the
// replies, to check later that it completed once.
func fetchSockets(t *testing.T, op fetcher) (reply, replies) {
	t.Helper()
	r := newReplies()
	op.FetchSockets()(r.fetched)
	return r.wait(t), r
}

// numbers returns the numeric values of vs sorted, whatever their Go type
// (JSON gives float64, MessagePack integers).
func numbers(t *testing.T, vs []any) []float64 {
	t.Helper()
	var out []float64
	for _, v := range vs {
		switch n := v.(type) {
		case float64:
			out = append(out, n)
		case int64:
			out = append(out, float64(n))
		case uint64:
			out = append(out, float64(n))
		case int:
			out = append(out, float64(n))
		default:
			t.Fatalf("response %#v (%T) is not a number", v, v)
		}
	}
	sort.Float64s(out)
	return out
}

func hasRoom(s *socket.Socket, room socket.Room) bool { return s.Rooms().Has(room) }

// waitSettled waits until server i has no request waiting for answers.
func waitSettled(t *testing.T, c *testkit.Cluster, i int) {
	t.Helper()
	b := builderOf(c, i)
	testkit.WaitFor(t, fmt.Sprintf("server %d has no pending request", i), func() bool { return b.Stats().PendingRequests == 0 })
}

// timeoutText is the error of a request of kind typ that got answers out of
// expected, in the words of the Node adapter of b's protocol.
func timeoutText(b *Builder, typ wire.Type, answers, expected int) string {
	if b.t.protocol() == classicProtocol {
		switch typ {
		case wire.TypeFetchSockets:
			return "timeout reached while waiting for fetchSockets response"
		case wire.TypeAllRooms:
			return "timeout reached while waiting for allRooms response"
		}
	}
	return fmt.Sprintf("timeout reached: only %d responses received out of %d", answers, expected)
}

// silentServer is a server the others count (it subscribes where they count
// servers) but that answers nothing by itself: it records the requests of
// namespace nsp, and may answer one of them later.
type silentServer struct {
	c       *testkit.Cluster
	b       *Builder // a server of the cluster, for its transport and key
	nsp     string
	msgs    <-chan *redis.Message
	classic bool
}

// newSilentServer subscribes the silent server and waits until every server
// counts it; when t ends it leaves and every server counts one less.
func newSilentServer(t *testing.T, c *testkit.Cluster, nsp string) *silentServer {
	t.Helper()
	b := builderOf(c, 0)
	k := kindOf(b)
	ctx := context.Background()
	var ps *redis.PubSub
	switch {
	case k.classic:
		ps = c.Masters[0].Subscribe(ctx, wire.NewClassicChannels(b.opts.Key, nsp, "").Request)
	case k.sharded:
		ps = c.Masters[0].SSubscribe(ctx, wire.NewClusterChannels(b.opts.Key, nsp, "").Main)
	default:
		ps = c.Masters[0].Subscribe(ctx, wire.NewClusterChannels(b.opts.Key, nsp, "").Main)
	}
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	n := len(c.Live())
	t.Cleanup(func() {
		_ = ps.Close()
		c.WaitServers(n)
	})
	c.WaitServers(n + 1)
	return &silentServer{c: c, b: b, nsp: nsp, msgs: ps.Channel(), classic: k.classic}
}

// next returns the next request of type typ.
func (s *silentServer) next(t *testing.T, typ wire.Type) *wire.Message {
	t.Helper()
	timeout := time.After(testkit.WaitTimeout)
	for {
		select {
		case msg := <-s.msgs:
			var m *wire.Message
			var err error
			if s.classic {
				m, err = wire.DecodeClassicRequest(msg.Payload)
			} else {
				m, err = wire.DecodeCluster(msg.Payload)
			}
			if err == nil && m.Type == typ && m.RequestID != "" {
				return m
			}
		case <-timeout:
			t.Fatalf("the silent server never received a request of type %d", typ)
			return nil
		}
	}
}

// answer publishes resp, an answer to req, as a server of the protocol
// would.
func (s *silentServer) answer(t *testing.T, req, resp *wire.Message) {
	t.Helper()
	resp.RequestID, resp.UID, resp.Nsp = req.RequestID, "silent0000000000", s.nsp
	k := kindOf(s.b)
	ctx := context.Background()
	admin := s.c.Masters[0]
	var err error
	switch {
	case k.classic:
		var buf []byte
		if buf, err = wire.AppendClassicResponse(nil, resp); err == nil {
			err = admin.Publish(ctx, wire.NewClassicChannels(s.b.opts.Key, s.nsp, "").Response, buf).Err()
		}
	case k.sharded:
		ch := wire.NewClusterChannels(s.b.opts.Key, s.nsp, "")
		var buf []byte
		if buf, err = wire.AppendCluster(nil, resp, wire.FormatSharded); err == nil {
			err = admin.SPublish(ctx, ch.ResponseOf(req.UID), buf).Err()
		}
	default:
		ch := wire.NewClusterChannels(s.b.opts.Key, s.nsp, "")
		var buf []byte
		if buf, err = wire.AppendCluster(nil, resp, wire.FormatMsgpack); err == nil {
			err = admin.Publish(ctx, ch.ResponseOf(req.UID), buf).Err()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestFetchSockets: the matching sockets of every server, with their
// handshake, rooms and data; the local flag; a silent server.
func TestFetchSockets(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		shared := newModeCluster(t, m, 3)
		t.Run("every server", func(t *testing.T) {
			c := bind(shared, t)
			_, socks := connectEach(t, c, "/")
			r, rs := fetchSockets(t, c.Nodes[0].IO)
			if r.err != nil || len(r.sockets) != 3 {
				t.Fatalf("%d sockets, err %v", len(r.sockets), r.err)
			}
			var got, want []string
			for i := range socks {
				got, want = append(got, string(r.sockets[i].Id())), append(want, string(socks[i].Id()))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("sockets %v, want %v", got, want)
			}
			waitSettled(t, c, 0)
			rs.once(t)
		})
		t.Run("a remote socket: handshake, rooms and data", func(t *testing.T) {
			c := bind(shared, t)
			_, socks := connectEach(t, c, "/")
			// The cluster protocol carries binary data (MessagePack); the
			// classic one answers in JSON, as Node does.
			binary := builderOf(c, 0).t.protocol() == clusterProtocol
			data := map[string]any{"user": "ada", "n": float64(2)}
			if binary {
				data["avatar"] = []byte{7, 8}
			}
			socks[1].SetData(data)
			socks[1].Join("r1")
			r, _ := fetchSockets(t, c.Nodes[0].IO.In(socket.Room(socks[1].Id())))
			if r.err != nil || len(r.sockets) != 1 {
				t.Fatalf("%d sockets, err %v", len(r.sockets), r.err)
			}
			rs, orig := r.sockets[0], socks[1]
			if rs.Id() != orig.Id() {
				t.Fatalf("id %s, want %s", rs.Id(), orig.Id())
			}
			d, _ := rs.Data().(map[string]any)
			if d["user"] != "ada" || len(numbers(t, []any{d["n"]})) != 1 || numbers(t, []any{d["n"]})[0] != 2 ||
				(binary && string(asBytes(d["avatar"])) != string([]byte{7, 8})) {
				t.Errorf("data = %#v, want %#v", rs.Data(), data)
			}
			if rs.Rooms().Len() != 2 || !rs.Rooms().Has(socket.Room(orig.Id())) || !rs.Rooms().Has("r1") {
				t.Errorf("rooms = %v", rs.Rooms().Keys())
			}
			h, oh := rs.Handshake(), orig.Handshake()
			if h.Address != oh.Address || h.Time != oh.Time || h.Issued != oh.Issued || h.Url != oh.Url ||
				h.Secure != oh.Secure || h.Xdomain != oh.Xdomain ||
				!reflect.DeepEqual(h.Headers, oh.Headers) || !reflect.DeepEqual(h.Query, oh.Query) {
				t.Errorf("handshake = %+v\nwant %+v", h, oh)
			}
		})
		t.Run("local flag", func(t *testing.T) {
			c := bind(shared, t)
			_, socks := connectEach(t, c, "/")
			r, _ := fetchSockets(t, c.Nodes[0].IO.Local())
			if r.err != nil || len(r.sockets) != 1 || r.sockets[0].Id() != socks[0].Id() {
				t.Fatalf("%d sockets, err %v", len(r.sockets), r.err)
			}
		})
		t.Run("a room held by one server", func(t *testing.T) {
			c := bind(shared, t)
			_, socks := connectEach(t, c, "/")
			socks[2].Join("only-here")
			r, _ := fetchSockets(t, c.Nodes[0].IO.In("only-here"))
			if r.err != nil || len(r.sockets) != 1 || r.sockets[0].Id() != socks[2].Id() {
				t.Fatalf("%d sockets, err %v", len(r.sockets), r.err)
			}
		})
		t.Run("a silent server: timeout, then a late answer", func(t *testing.T) {
			c := bind(shared, t)
			connectEach(t, c, "/")
			silent := newSilentServer(t, c, "/")
			b := builderOf(c, 0)
			r, rs := fetchSockets(t, c.Nodes[0].IO)
			if want := timeoutText(b, wire.TypeFetchSockets, 2, 3); r.err == nil || r.err.Error() != want {
				t.Errorf("err = %v, want %q", r.err, want)
			}
			if len(r.sockets) != 3 {
				t.Errorf("%d sockets, want the 3 of the servers that answered", len(r.sockets))
			}
			waitSettled(t, c, 0)
			late := b.Stats().DroppedLate
			silent.answer(t, silent.next(t, wire.TypeFetchSockets), &wire.Message{Type: wire.TypeFetchSocketsResponse, Sockets: []wire.Socket{}})
			testkit.WaitFor(t, "the late answer counted", func() bool { return b.Stats().DroppedLate > late })
			rs.once(t)
		})
		t.Run("the operator's timeout", func(t *testing.T) {
			c := bind(shared, t)
			connectEach(t, c, "/")
			newSilentServer(t, c, "/")
			// RequestsTimeout is 1s; the operator's own timeout wins.
			r, _ := fetchSockets(t, c.Nodes[1].IO.Timeout(100*time.Millisecond))
			if want := timeoutText(builderOf(c, 1), wire.TypeFetchSockets, 2, 3); r.err == nil || r.err.Error() != want {
				t.Errorf("err = %v, want %q", r.err, want)
			}
			waitSettled(t, c, 1)
		})
	})
}

// TestSocketsJoinLeaveDisconnect: socketsJoin, socketsLeave and
// disconnectSockets reach the matching sockets of every server, and only
// them.
func TestSocketsJoinLeaveDisconnect(t *testing.T) {
	type fixture struct {
		c     *testkit.Cluster
		socks []*socket.Socket
	}
	io := func(f *fixture, i int) *socket.Server { return f.c.Nodes[i].IO }
	cases := []struct {
		name   string
		setup  func(f *fixture)
		act    func(f *fixture)
		expect func(f *fixture) bool
		// stable must still hold once every server processed the request.
		stable func(f *fixture) bool
	}{
		{
			name: "socketsJoin on every server",
			act:  func(f *fixture) { io(f, 0).SocketsJoin("room1") },
			expect: func(f *fixture) bool {
				return hasRoom(f.socks[0], "room1") && hasRoom(f.socks[1], "room1") && hasRoom(f.socks[2], "room1")
			},
		},
		{
			name:   "socketsJoin on matching sockets",
			setup:  func(f *fixture) { f.socks[1].Join("room1") },
			act:    func(f *fixture) { io(f, 0).In("room1").SocketsJoin("room2") },
			expect: func(f *fixture) bool { return hasRoom(f.socks[1], "room2") },
			stable: func(f *fixture) bool { return !hasRoom(f.socks[0], "room2") && !hasRoom(f.socks[2], "room2") },
		},
		{
			name:   "socketsJoin on a given socket",
			act:    func(f *fixture) { io(f, 0).In(socket.Room(f.socks[1].Id())).SocketsJoin("room3") },
			expect: func(f *fixture) bool { return hasRoom(f.socks[1], "room3") },
			stable: func(f *fixture) bool { return !hasRoom(f.socks[0], "room3") && !hasRoom(f.socks[2], "room3") },
		},
		{
			name: "socketsLeave on every server",
			setup: func(f *fixture) {
				for _, s := range f.socks {
					s.Join("room1")
				}
			},
			act: func(f *fixture) { io(f, 0).SocketsLeave("room1") },
			expect: func(f *fixture) bool {
				return !hasRoom(f.socks[0], "room1") && !hasRoom(f.socks[1], "room1") && !hasRoom(f.socks[2], "room1")
			},
		},
		{
			name: "socketsLeave on matching sockets",
			setup: func(f *fixture) {
				f.socks[0].Join("room1", "room2")
				f.socks[1].Join("room2")
				f.socks[2].Join("room1", "room2")
			},
			act:    func(f *fixture) { io(f, 1).In("room1").SocketsLeave("room2") },
			expect: func(f *fixture) bool { return !hasRoom(f.socks[0], "room2") && !hasRoom(f.socks[2], "room2") },
			stable: func(f *fixture) bool { return hasRoom(f.socks[1], "room2") },
		},
		{
			name: "socketsLeave on a given socket",
			setup: func(f *fixture) {
				for _, s := range f.socks {
					s.Join("room3")
				}
			},
			act:    func(f *fixture) { io(f, 0).In(socket.Room(f.socks[1].Id())).SocketsLeave("room3") },
			expect: func(f *fixture) bool { return !hasRoom(f.socks[1], "room3") },
			stable: func(f *fixture) bool { return hasRoom(f.socks[0], "room3") && hasRoom(f.socks[2], "room3") },
		},
	}
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		shared := newModeCluster(t, m, 3)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := bind(shared, t)
				cls, socks := connectEach(t, c, "/")
				f := &fixture{c: c, socks: socks}
				if tc.setup != nil {
					tc.setup(f)
				}
				tc.act(f)
				testkit.WaitFor(t, tc.name, func() bool { return tc.expect(f) })
				// The request and the fences travel in order: once the
				// fences arrived, every server has applied it.
				c.Fence("/", cls...)
				if tc.stable != nil && !tc.stable(f) {
					t.Fatal("sockets outside the selection were changed")
				}
			})
		}
		t.Run("a room joined through socketsJoin receives broadcasts", func(t *testing.T) {
			c := bind(shared, t)
			cls, socks := connectEach(t, c, "/")
			c.Nodes[0].IO.In(socket.Room(socks[2].Id())).SocketsJoin("joined-remotely")
			testkit.WaitFor(t, "joined", func() bool { return hasRoom(socks[2], "joined-remotely") })
			// A join for another server does not wait for the room's
			// subscription (in the modes that subscribe per room): wait
			// for it here.
			b := builderOf(c, 2)
			if kindOf(b).perRoom() {
				ch, sharded := roomChannel(b, "/", "joined-remotely")
				testkit.WaitFor(t, "room channel subscribed", func() bool { return subscribers(c.Masters, ch, sharded) == 1 })
			}
			c.Nodes[1].IO.To("joined-remotely").Emit("rj", 1)
			testkit.WaitEvents(t, cls[2], "rj", 1)
		})
		t.Run("disconnectSockets on every server", func(t *testing.T) {
			c := bind(shared, t)
			cls, _ := connectEach(t, c, "/")
			c.Nodes[0].IO.DisconnectSockets(false)
			for i, cl := range cls {
				select {
				case <-cl.Disconnected():
				case <-time.After(testkit.WaitTimeout):
					t.Fatalf("client on server %d not disconnected", i)
				}
				if r := cl.DisconnectReason(); r != "io server disconnect" {
					t.Errorf("client on server %d: reason %q", i, r)
				}
			}
		})
		t.Run("disconnectSockets on a room, closing the connection", func(t *testing.T) {
			c := bind(shared, t)
			cls, socks := connectEach(t, c, "/")
			socks[2].Join("kick")
			c.Nodes[0].IO.In("kick").DisconnectSockets(true)
			select {
			case <-cls[2].Disconnected():
			case <-time.After(testkit.WaitTimeout):
				t.Fatal("client on server 2 not disconnected")
			}
			c.Fence("/", cls[:2]...)
			for i, cl := range cls[:2] {
				select {
				case <-cl.Disconnected():
					t.Errorf("client on server %d disconnected", i)
				default:
				}
			}
		})
	})
}

// heard records the arguments of the serverSideEmit events each server
// received.
type heard struct {
	mu   sync.Mutex
	args map[int][]any
}

// listen registers a listener of event ev on server i.
func (h *heard) listen(c *testkit.Cluster, i int, ev string) {
	c.Ns(i, "/").On(ev, func(args ...any) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.args[i] = args
	})
}

func (h *heard) get(i int) ([]any, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.args[i]
	return a, ok
}

// TestServerSideEmit: an event reaches every other server with its
// arguments (never the sender); with an acknowledgement, one response per
// other server, or Node's timeout error with the responses received, and a
// late response is counted.
func TestServerSideEmit(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		shared := newModeCluster(t, m, 3)
		t.Run("reaches every other server with its arguments", func(t *testing.T) {
			c := bind(shared, t)
			h, marker := &heard{args: map[int][]any{}}, &heard{args: map[int][]any{}}
			for i := range c.Nodes {
				h.listen(c, i, "hello")
				marker.listen(c, i, "marker")
			}
			// The cluster protocol carries binary (MessagePack); the
			// classic one sends JSON, as Node does.
			binary := builderOf(c, 0).t.protocol() == clusterProtocol
			var last any = "5"
			if binary {
				last = []byte{5}
			}
			if err := c.Nodes[0].IO.ServerSideEmit("hello", "world", 1, last); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, "servers 1 and 2 received it", func() bool {
				_, ok1 := h.get(1)
				_, ok2 := h.get(2)
				return ok1 && ok2
			})
			// Redis sent "hello" to every subscriber before server 1 got
			// it: once server 0 has server 1's marker, it has handled its
			// own "hello" too.
			if err := c.Nodes[1].IO.ServerSideEmit("marker"); err != nil {
				t.Fatal(err)
			}
			testkit.WaitFor(t, "server 0 received the marker", func() bool { _, ok := marker.get(0); return ok })
			for _, i := range []int{1, 2} {
				got, _ := h.get(i)
				if len(got) != 3 || got[0] != "world" || numbers(t, got[1:2])[0] != 1 ||
					(binary && string(asBytes(got[2])) != "\x05") || (!binary && got[2] != "5") {
					t.Errorf("server %d got %#v", i, got)
				}
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if got := h.args[0]; len(got) != 0 {
				t.Errorf("the sender received its own serverSideEmit: %#v", got)
			}
		})
		t.Run("with ack: one response per other server", func(t *testing.T) {
			c := bind(shared, t)
			for i, v := range map[int]any{1: 2, 2: "3"} {
				c.Ns(i, "/").On("ping", func(args ...any) {
					args[len(args)-1].(socket.Ack)([]any{v, "ignored"}, nil)
				})
			}
			r := newReplies()
			if err := c.Nodes[0].IO.ServerSideEmitWithAck("ping", "x")(r.ack); err != nil {
				t.Fatal(err)
			}
			got := r.wait(t)
			if got.err != nil {
				t.Fatal(got.err)
			}
			if s := fmt.Sprint(got.args); s != "[2 3]" && s != "[3 2]" {
				t.Fatalf("responses = %#v, want 2 and \"3\"", got.args)
			}
			waitSettled(t, c, 0)
			r.once(t)
		})
		t.Run("with ack: a silent server gives the timeout error, then a late answer", func(t *testing.T) {
			c := bind(shared, t)
			c.Ns(1, "/").On("slow", func(args ...any) { args[len(args)-1].(socket.Ack)([]any{2}, nil) })
			held := make(chan socket.Ack, 1)
			c.Ns(2, "/").On("slow", func(args ...any) { held <- args[len(args)-1].(socket.Ack) })
			b := builderOf(c, 0)
			r := newReplies()
			if err := c.Nodes[0].IO.ServerSideEmitWithAck("slow")(r.ack); err != nil {
				t.Fatal(err)
			}
			got := r.wait(t)
			if want := "timeout reached: only 1 responses received out of 2"; got.err == nil || got.err.Error() != want {
				t.Fatalf("err = %v, want %q", got.err, want)
			}
			if n := numbers(t, got.args); len(n) != 1 || n[0] != 2 {
				t.Fatalf("responses = %#v, want 2", got.args)
			}
			waitSettled(t, c, 0)
			late := b.Stats().DroppedLate
			var ack socket.Ack
			select {
			case ack = <-held:
			case <-time.After(testkit.WaitTimeout):
				t.Fatal("server 2 never received the event")
			}
			ack([]any{"late"}, nil)
			testkit.WaitFor(t, "the late answer counted", func() bool { return b.Stats().DroppedLate > late })
			r.once(t)
		})
	})
}

// TestAllRooms: the union of the rooms of every server (classic: the
// ALL_ROOMS request; cluster protocol: the rooms of the sockets
// fetchSockets returns), with a silent server, and a context that ends
// first.
func TestAllRooms(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		shared := newModeCluster(t, m, 3)
		allRooms := func(c *testkit.Cluster, i int, ctx context.Context) (map[socket.Room]bool, error) {
			rooms, err := c.Ns(i, "/").Adapter().(*Adapter).AllRooms(ctx)
			got := map[socket.Room]bool{}
			for _, r := range rooms {
				got[r] = true
			}
			return got, err
		}
		t.Run("every server", func(t *testing.T) {
			c := bind(shared, t)
			_, socks := connectEach(t, c, "/")
			socks[1].Join("woot1")
			got, err := allRooms(c, 0, context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := map[socket.Room]bool{"woot1": true}
			for _, s := range socks {
				want[socket.Room(s.Id())] = true
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("rooms = %v, want %v", got, want)
			}
			waitSettled(t, c, 0)
		})
		t.Run("a silent server", func(t *testing.T) {
			c := bind(shared, t)
			_, socks := connectEach(t, c, "/")
			socks[2].Join("woot2")
			newSilentServer(t, c, "/")
			got, err := allRooms(c, 0, context.Background())
			typ := wire.TypeFetchSockets
			if kindOf(builderOf(c, 0)).classic {
				typ = wire.TypeAllRooms
			}
			if want := timeoutText(builderOf(c, 0), typ, 2, 3); err == nil || err.Error() != want {
				t.Errorf("err = %v, want %q", err, want)
			}
			if !got["woot2"] || len(got) != 4 {
				t.Errorf("rooms = %v, want the rooms of the servers that answered", got)
			}
			waitSettled(t, c, 0)
		})
		t.Run("the context ends first", func(t *testing.T) {
			c := bind(shared, t)
			_, socks := connectEach(t, c, "/")
			silent := newSilentServer(t, c, "/")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				// Ends the context once the request is out; a failure to
				// see it shows as AllRooms ending at its timeout.
				defer cancel()
				select {
				case <-silent.msgs:
				case <-time.After(testkit.WaitTimeout):
				}
			}()
			got, err := allRooms(c, 0, ctx)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
			if !got[socket.Room(socks[0].Id())] {
				t.Errorf("rooms = %v, want at least the local ones", got)
			}
			waitSettled(t, c, 0)
		})
	})
}

// stoppableEnv returns a Redis of the test's own that it may stop: a
// private redis-server for the modes that need a real Redis, a private
// miniredis for the others.
func stoppableEnv(t *testing.T, m testkit.Mode) (*testkit.Env, func()) {
	t.Helper()
	if m.NeedsRealRedis {
		env := testkit.ProcessEnv(t)
		return env, env.Proc.Kill
	}
	mr := miniredis.RunT(t)
	client := func(t testing.TB) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	return &testkit.Env{
		Name:    "miniredis (private)",
		Ordered: true,
		Client:  func(t testing.TB) redis.UniversalClient { return client(t) },
		Masters: func(t testing.TB) []*redis.Client { return []*redis.Client{client(t)} },
	}, mr.Close
}

// TestRequestsWhileDegraded: while Redis is down every request answers at
// once from local state. RequestsTimeout is a minute: an answer that waited
// for it would fail the test's wait.
func TestRequestsWhileDegraded(t *testing.T) {
	forEachMode(t, allModes(), func(t *testing.T, m testkit.Mode) {
		env, stop := stoppableEnv(t, m)
		m = withOptions(m, func(o *Options) { o.RequestsTimeout = time.Minute })
		c := testkit.NewCluster(t, env, 2, m)
		cls, socks := c.ConnectEach("/")
		cls[0].OnAck("ask", func([]any) []any { return []any{"local"} })
		stop()
		b := builderOf(c, 0)
		testkit.WaitFor(t, "degraded", func() bool { return b.State() == StateDegraded })
		io := c.Nodes[0].IO
		if got := c.Ns(0, "/").Adapter().ServerCount(); got != 1 {
			t.Errorf("ServerCount = %d, want 1", got)
		}
		if r, _ := fetchSockets(t, io); r.err != nil || len(r.sockets) != 1 {
			t.Errorf("fetchSockets: %d sockets, err %v", len(r.sockets), r.err)
		}
		r := newReplies()
		if err := io.ServerSideEmitWithAck("hello")(r.ack); err != nil {
			t.Errorf("serverSideEmit: %v", err)
		}
		if got := r.wait(t); got.err != nil || len(got.args) != 0 {
			t.Errorf("serverSideEmit with ack: %v %v", got.args, got.err)
		}
		rooms, err := c.Ns(0, "/").Adapter().(*Adapter).AllRooms(context.Background())
		if err != nil || len(rooms) != 1 || rooms[0] != socket.Room(socks[0].Id()) {
			t.Errorf("AllRooms: %v %v", rooms, err)
		}
		io.SocketsJoin("solo")
		if !hasRoom(socks[0], "solo") {
			t.Error("socketsJoin not applied locally")
		}
		r2 := newReplies()
		io.Timeout(time.Minute).Emit("ask", r2.ack)
		if got := r2.wait(t); got.err != nil || fmt.Sprint(got.args) != "[local]" {
			t.Errorf("emit with acks: %v %v", got.args, got.err)
		}
		io.Emit("still", 1)
		testkit.WaitEvents(t, cls[0], "still", 1)
		waitSettled(t, c, 0)
	})
}

// TestPublishOnSpecificResponseChannel: servers with the option answer on
// the requester's own response channel, nothing of theirs goes to the shared
// one, and a server without the option works with them (classic protocol).
func TestPublishOnSpecificResponseChannel(t *testing.T) {
	var modes []testkit.Mode
	for _, m := range allModes() {
		if strings.HasPrefix(m.Name, "classic") {
			modes = append(modes, m)
		}
	}
	forEachMode(t, modes, func(t *testing.T, m testkit.Mode) {
		// Servers 0 and 1 with the option, server 2 without.
		on := withOptions(m, func(o *Options) { o.PublishOnSpecificResponseChannel = true })
		var n sync.Mutex
		started := 0
		mixed := m
		mixed.New = func(rdb redis.UniversalClient, key string) testkit.Builder {
			n.Lock()
			started++
			i := started
			n.Unlock()
			if i <= 2 {
				return on.New(rdb, key)
			}
			return m.New(rdb, key)
		}
		env := envFor(t, m)
		c := testkit.NewCluster(t, env, 3, mixed)
		_, socks := c.ConnectEach("/")
		shared := wire.NewClassicChannels(c.Key, "/", "").Response
		spy := c.Masters[0].Subscribe(context.Background(), shared)
		t.Cleanup(func() { _ = spy.Close() })
		if _, err := spy.Receive(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{0, 2} {
			if r, _ := fetchSockets(t, c.Nodes[i].IO); r.err != nil || len(r.sockets) != 3 {
				t.Fatalf("fetchSockets from server %d: %d sockets, err %v", i, len(r.sockets), r.err)
			}
		}
		rooms, err := c.Ns(1, "/").Adapter().(*Adapter).AllRooms(context.Background())
		if err != nil || len(rooms) != 3 {
			t.Fatalf("AllRooms: %v %v", rooms, err)
		}
		// A marker published now arrives after every answer sent to the
		// shared channel before the requests completed.
		if err := c.Masters[0].Publish(context.Background(), shared, "fence").Err(); err != nil {
			t.Fatal(err)
		}
		fromServer2 := 0
		for {
			msg, err := spy.ReceiveMessage(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if msg.Payload == "fence" {
				break
			}
			for i := 0; i < 2; i++ {
				if strings.Contains(msg.Payload, string(socks[i].Id())) {
					t.Errorf("server %d (with the option) answered on the shared channel: %s", i, msg.Payload)
				}
			}
			if strings.Contains(msg.Payload, string(socks[2].Id())) {
				fromServer2++
			}
		}
		// Server 2 answered the requests of servers 0 and 1 there.
		if fromServer2 != 2 {
			t.Errorf("server 2 (without the option) sent %d answers to the shared channel, want 2", fromServer2)
		}
	})
}
