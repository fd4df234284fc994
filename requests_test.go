package redisadapter

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io/v2/socket"
)

// requestCluster is three servers with one client each, the fixture of the
// Node adapter's request tests (anchors §3, C8-C24 and S5).
type requestCluster struct {
	*cluster
	clients []*sioclient.Client
	socks   []*socket.Socket
}

func newRequestCluster(t *testing.T, opts *Options) *requestCluster {
	t.Helper()
	return newRequestClusterOn(t, nil, opts)
}

// newRequestClusterOn builds the fixture on r (nil: the default test Redis).
func newRequestClusterOn(t *testing.T, r *testRedis, opts *Options) *requestCluster {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	if opts.RequestsTimeout == 0 {
		opts.RequestsTimeout = time.Second
	}
	var c *cluster
	if r == nil {
		c = newCluster(t, 3, opts)
	} else {
		verifyNoLeaks(t)
		c = newClusterOn(t, r, 3, opts)
	}
	rc := &requestCluster{cluster: c}
	for i := range rc.nodes {
		cl, s := rc.connect(i, "/")
		rc.clients = append(rc.clients, cl)
		rc.socks = append(rc.socks, s)
	}
	return rc
}

// result collects what an asynchronous callback returned.
type result struct {
	args []any
	err  error
}

func waitResult(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitTimeout):
		t.Fatal("callback never called")
		return result{}
	}
}

// asNumbers returns the numeric values of vs sorted, whatever their Go type
// (JSON gives float64, msgpack int64).
func asNumbers(t *testing.T, vs []any) []float64 {
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

func TestBroadcastWithAcks(t *testing.T) {
	t.Run("C8 acks from the clients of every server", func(t *testing.T) {
		rc := newRequestCluster(t, nil)
		for i, cl := range rc.clients {
			n := i + 1
			cl.OnAck("test", func([]any) []any { return []any{n} })
		}
		done := make(chan result, 1)
		rc.nodes[0].io.Timeout(2*time.Second).Emit("test", func(args []any, err error) { done <- result{args, err} })
		r := waitResult(t, done)
		if r.err != nil {
			t.Fatalf("err = %v", r.err)
		}
		if got := asNumbers(t, r.args); !reflect.DeepEqual(got, []float64{1, 2, 3}) {
			t.Fatalf("responses = %v, want 1, 2, 3", got)
		}
		waitFor(t, "ack requests cleaned up", func() bool { return rc.nodes[0].b.Stats().PendingRequests == 0 })
	})
	t.Run("C9 binary acks", func(t *testing.T) {
		rc := newRequestCluster(t, nil)
		for _, cl := range rc.clients {
			cl.OnAck("test", func([]any) []any { return []any{[]byte{1, 2}} })
		}
		done := make(chan result, 1)
		rc.nodes[0].io.Timeout(2*time.Second).Emit("test", func(args []any, err error) { done <- result{args, err} })
		r := waitResult(t, done)
		if r.err != nil || len(r.args) != 3 {
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
			if !reflect.DeepEqual(b, []byte{1, 2}) {
				t.Fatalf("response bytes %v", b)
			}
		}
	})
	t.Run("C10 no matching client completes at once", func(t *testing.T) {
		rc := newRequestCluster(t, nil)
		done := make(chan result, 1)
		rc.nodes[0].io.To("abc").Timeout(5*time.Second).Emit("test", func(args []any, err error) { done <- result{args, err} })
		r := waitResult(t, done)
		if r.err != nil || len(r.args) != 0 {
			t.Fatalf("err = %v, responses = %v", r.err, r.args)
		}
	})
	t.Run("C11 a silent client gives the timeout error with the other acks", func(t *testing.T) {
		rc := newRequestCluster(t, nil)
		for i, cl := range rc.clients[:2] {
			n := i + 1
			cl.OnAck("test", func([]any) []any { return []any{n} })
		}
		done := make(chan result, 1)
		rc.nodes[0].io.Timeout(500*time.Millisecond).Emit("test", func(args []any, err error) { done <- result{args, err} })
		r := waitResult(t, done)
		if r.err == nil {
			t.Fatal("no timeout error")
		}
		if got := asNumbers(t, r.args); !reflect.DeepEqual(got, []float64{1, 2}) {
			t.Fatalf("responses = %v, want 1, 2", got)
		}
	})
}

func TestSocketsJoinLeaveDisconnect(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(rc *requestCluster)
		act    func(rc *requestCluster)
		expect func(rc *requestCluster) bool
		// stable must hold throughout (checked after expect holds).
		stable func(rc *requestCluster) bool
	}{
		{
			name: "C12 socketsJoin on all instances",
			act:  func(rc *requestCluster) { rc.nodes[0].io.SocketsJoin("room1") },
			expect: func(rc *requestCluster) bool {
				return hasRoom(rc.socks[0], "room1") && hasRoom(rc.socks[1], "room1") && hasRoom(rc.socks[2], "room1")
			},
		},
		{
			name:  "C13 socketsJoin on matching sockets",
			setup: func(rc *requestCluster) { rc.socks[1].Join("room1") },
			act:   func(rc *requestCluster) { rc.nodes[0].io.In("room1").SocketsJoin("room2") },
			expect: func(rc *requestCluster) bool {
				return hasRoom(rc.socks[1], "room2")
			},
			stable: func(rc *requestCluster) bool { return !hasRoom(rc.socks[0], "room2") && !hasRoom(rc.socks[2], "room2") },
		},
		{
			name:   "C14 socketsJoin on a given socket",
			act:    func(rc *requestCluster) { rc.nodes[0].io.In(socket.Room(rc.socks[1].Id())).SocketsJoin("room3") },
			expect: func(rc *requestCluster) bool { return hasRoom(rc.socks[1], "room3") },
			stable: func(rc *requestCluster) bool { return !hasRoom(rc.socks[0], "room3") && !hasRoom(rc.socks[2], "room3") },
		},
		{
			name: "C15 socketsLeave on all instances",
			setup: func(rc *requestCluster) {
				for _, s := range rc.socks {
					s.Join("room1")
				}
			},
			act: func(rc *requestCluster) { rc.nodes[0].io.SocketsLeave("room1") },
			expect: func(rc *requestCluster) bool {
				return !hasRoom(rc.socks[0], "room1") && !hasRoom(rc.socks[1], "room1") && !hasRoom(rc.socks[2], "room1")
			},
		},
		{
			name: "C16 socketsLeave on matching sockets",
			setup: func(rc *requestCluster) {
				rc.socks[0].Join("room1", "room2")
				rc.socks[1].Join("room2")
				rc.socks[2].Join("room1", "room2")
			},
			act: func(rc *requestCluster) { rc.nodes[1].io.In("room1").SocketsLeave("room2") },
			expect: func(rc *requestCluster) bool {
				return !hasRoom(rc.socks[0], "room2") && !hasRoom(rc.socks[2], "room2")
			},
			stable: func(rc *requestCluster) bool { return hasRoom(rc.socks[1], "room2") },
		},
		{
			name: "C17 socketsLeave on a given socket",
			setup: func(rc *requestCluster) {
				for _, s := range rc.socks {
					s.Join("room3")
				}
			},
			act:    func(rc *requestCluster) { rc.nodes[0].io.In(socket.Room(rc.socks[1].Id())).SocketsLeave("room3") },
			expect: func(rc *requestCluster) bool { return !hasRoom(rc.socks[1], "room3") },
			stable: func(rc *requestCluster) bool { return hasRoom(rc.socks[0], "room3") && hasRoom(rc.socks[2], "room3") },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := newRequestCluster(t, nil)
			if tc.setup != nil {
				tc.setup(rc)
			}
			tc.act(rc)
			waitFor(t, tc.name, func() bool { return tc.expect(rc) })
			// The request went through every server's subscriber; a fence
			// broadcast from the same sender proves everyone processed it.
			rc.fence(t)
			if tc.stable != nil && !tc.stable(rc) {
				t.Fatal("sockets outside the selection were changed")
			}
		})
	}
}

// fence makes every server broadcast a marker and waits until every client has
// all markers: whatever the servers published before has been processed.
func (rc *requestCluster) fence(t *testing.T) {
	t.Helper()
	before := make([]int, len(rc.clients))
	for i, cl := range rc.clients {
		before[i] = len(cl.Received("fence"))
	}
	for i := range rc.nodes {
		rc.nodes[i].io.Emit("fence", i)
	}
	for i, cl := range rc.clients {
		waitEvents(t, cl, "fence", before[i]+len(rc.nodes))
	}
}

func TestDisconnectSocketsAcrossInstances(t *testing.T) {
	// C18.
	rc := newRequestCluster(t, nil)
	rc.nodes[0].io.DisconnectSockets(false)
	for i, cl := range rc.clients {
		select {
		case <-cl.Disconnected():
		case <-time.After(waitTimeout):
			t.Fatalf("client on server %d not disconnected", i)
		}
		if r := cl.DisconnectReason(); r != "io server disconnect" {
			t.Errorf("client on server %d: reason %q", i, r)
		}
	}
}

func fetch(t *testing.T, op interface {
	FetchSockets() func(func([]*socket.RemoteSocket, error))
}) ([]*socket.RemoteSocket, error) {
	t.Helper()
	done := make(chan struct {
		s   []*socket.RemoteSocket
		err error
	}, 1)
	op.FetchSockets()(func(s []*socket.RemoteSocket, err error) {
		done <- struct {
			s   []*socket.RemoteSocket
			err error
		}{s, err}
	})
	select {
	case r := <-done:
		return r.s, r.err
	case <-time.After(waitTimeout):
		t.Fatal("FetchSockets never answered")
		return nil, nil
	}
}

func TestFetchSockets(t *testing.T) {
	t.Run("C19 all", func(t *testing.T) {
		rc := newRequestCluster(t, nil)
		got, err := fetch(t, rc.nodes[0].io)
		if err != nil || len(got) != 3 {
			t.Fatalf("%d sockets, err %v", len(got), err)
		}
		if n := rc.nodes[0].b.Stats().PendingRequests; n != 0 {
			t.Fatalf("%d requests still pending", n)
		}
	})
	t.Run("C20 single remote socket with handshake, rooms and data", func(t *testing.T) {
		rc := newRequestCluster(t, nil)
		rc.socks[1].SetData(map[string]any{"user": "ada", "n": float64(2)})
		got, err := fetch(t, rc.nodes[0].io.In(socket.Room(rc.socks[1].Id())))
		if err != nil || len(got) != 1 {
			t.Fatalf("%d sockets, err %v", len(got), err)
		}
		rs, orig := got[0], rc.socks[1]
		if rs.Id() != orig.Id() {
			t.Fatalf("id %s, want %s", rs.Id(), orig.Id())
		}
		if !reflect.DeepEqual(rs.Data(), orig.Data()) {
			t.Errorf("data = %#v, want %#v", rs.Data(), orig.Data())
		}
		if rs.Rooms().Len() != 1 || !rs.Rooms().Has(socket.Room(orig.Id())) {
			t.Errorf("rooms = %v", rs.Rooms().Keys())
		}
		h, oh := rs.Handshake(), orig.Handshake()
		if h.Address != oh.Address || h.Time != oh.Time || h.Issued != oh.Issued || h.Url != oh.Url ||
			h.Secure != oh.Secure || h.Xdomain != oh.Xdomain ||
			!reflect.DeepEqual(h.Headers, oh.Headers) || !reflect.DeepEqual(h.Query, oh.Query) {
			t.Errorf("handshake = %+v\nwant %+v", h, oh)
		}
	})
	t.Run("C21 local only", func(t *testing.T) {
		rc := newRequestCluster(t, nil)
		got, err := fetch(t, rc.nodes[0].io.Local())
		if err != nil || len(got) != 1 || got[0].Id() != rc.socks[0].Id() {
			t.Fatalf("%d sockets, err %v", len(got), err)
		}
	})
	t.Run("an instance with no match still answers", func(t *testing.T) {
		rc := newRequestCluster(t, nil)
		rc.socks[2].Join("only-here")
		got, err := fetch(t, rc.nodes[0].io.In("only-here"))
		if err != nil || len(got) != 1 || got[0].Id() != rc.socks[2].Id() {
			t.Fatalf("%d sockets, err %v", len(got), err)
		}
	})
}

func TestServerSideEmit(t *testing.T) {
	t.Run("C22 reaches every other server with arguments intact", func(t *testing.T) {
		rc := newRequestCluster(t, nil)
		var mu sync.Mutex
		got := map[int][]any{}
		for i := range rc.nodes {
			i := i
			rc.nodes[i].io.Of("/", nil).On("hello", func(args ...any) {
				mu.Lock()
				got[i] = args
				mu.Unlock()
			})
		}
		if err := rc.nodes[0].io.ServerSideEmit("hello", "world", 1, "2"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "servers 1 and 2 received it", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got[1]) > 0 && len(got[2]) > 0
		})
		rc.fence(t)
		mu.Lock()
		defer mu.Unlock()
		for _, i := range []int{1, 2} {
			if !reflect.DeepEqual(got[i], []any{"world", float64(1), "2"}) {
				t.Errorf("server %d got %#v", i, got[i])
			}
		}
		if _, ok := got[0]; ok {
			t.Error("the sender received its own serverSideEmit")
		}
	})
	sseWithAck := func(rc *requestCluster, answer map[int]any) chan result {
		for i := range rc.nodes {
			v, ok := answer[i]
			if !ok {
				continue
			}
			rc.nodes[i].io.Of("/", nil).On("hello", func(args ...any) {
				ack := args[len(args)-1].(socket.Ack)
				ack([]any{v}, nil)
			})
		}
		done := make(chan result, 1)
		if err := rc.nodes[0].io.ServerSideEmitWithAck("hello", "x")(func(args []any, err error) { done <- result{args, err} }); err != nil {
			panic(err)
		}
		return done
	}
	t.Run("C23 one response per other server", func(t *testing.T) {
		rc := newRequestCluster(t, nil)
		r := waitResult(t, sseWithAck(rc, map[int]any{1: 2, 2: "3"}))
		if r.err != nil {
			t.Fatal(r.err)
		}
		got := fmt.Sprint(r.args)
		if got != "[2 3]" && got != "[3 2]" {
			t.Fatalf("responses = %#v", r.args)
		}
		if n := rc.nodes[0].b.Stats().PendingRequests; n != 0 {
			t.Fatalf("%d requests still pending", n)
		}
	})
	t.Run("C24 a silent server gives Node's timeout error", func(t *testing.T) {
		rc := newRequestCluster(t, nil)
		r := waitResult(t, sseWithAck(rc, map[int]any{1: 2}))
		if r.err == nil || r.err.Error() != "timeout reached: only 1 responses received out of 2" {
			t.Fatalf("err = %v", r.err)
		}
		if len(r.args) != 1 || r.args[0] != float64(2) {
			t.Fatalf("responses = %#v", r.args)
		}
		if n := rc.nodes[0].b.Stats().PendingRequests; n != 0 {
			t.Fatalf("%d requests still pending after the timeout", n)
		}
	})
}

func TestAllRooms(t *testing.T) {
	// S5.
	rc := newRequestCluster(t, nil)
	rc.socks[1].Join("woot1")
	rooms, err := ns(rc.cluster, 0, "/").Adapter().(*Adapter).AllRooms(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[socket.Room]bool{"woot1": true}
	for _, s := range rc.socks {
		want[socket.Room(s.Id())] = true
	}
	got := map[socket.Room]bool{}
	for _, r := range rooms {
		got[r] = true
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rooms = %v, want %v", got, want)
	}
	if n := rc.nodes[0].b.Stats().PendingRequests; n != 0 {
		t.Fatalf("%d requests still pending", n)
	}
}

func TestServerCountAndRequestsWhileDegraded(t *testing.T) {
	// While Redis is down every request answers at once from local state.
	// It stops Redis, so it always runs on its own embedded one.
	m := miniredis.RunT(t)
	rc := newRequestClusterOn(t, &testRedis{mini: m, opts: &redis.Options{Addr: m.Addr()}}, &Options{RequestsTimeout: 5 * time.Second})
	m.Close()
	b := rc.nodes[0].b
	waitFor(t, "degraded", func() bool { return b.State() == StateDegraded })
	if got := ns(rc.cluster, 0, "/").Adapter().ServerCount(); got != 1 {
		t.Errorf("ServerCount = %d", got)
	}
	got, err := fetch(t, rc.nodes[0].io)
	if err != nil || len(got) != 1 {
		t.Errorf("fetchSockets while degraded: %d sockets, err %v", len(got), err)
	}
	done := make(chan result, 1)
	_ = rc.nodes[0].io.ServerSideEmitWithAck("hello")(func(args []any, err error) { done <- result{args, err} })
	if r := waitResult(t, done); r.err != nil || len(r.args) != 0 {
		t.Errorf("serverSideEmit ack while degraded: %v %v", r.args, r.err)
	}
	rc.nodes[0].io.SocketsJoin("solo")
	if !hasRoom(rc.socks[0], "solo") {
		t.Error("socketsJoin not applied locally while degraded")
	}
}

// PublishOnSpecificResponseChannel: responders answer on the requester's own
// channel, nothing goes to the shared one, and requests still complete; a
// server without the option still works with them.
func TestPublishOnSpecificResponseChannel(t *testing.T) {
	r := newTestRedis(t)
	verifyNoLeaks(t)
	c := newClusterOn(t, r, 3, &Options{PublishOnSpecificResponseChannel: true, RequestsTimeout: time.Second})
	rc := &requestCluster{cluster: c}
	for i := range rc.nodes {
		cl, s := rc.connect(i, "/")
		rc.clients = append(rc.clients, cl)
		rc.socks = append(rc.socks, s)
	}
	sub := r.client(t).Subscribe(context.Background(), newChannels(c.key, "/", "").response)
	t.Cleanup(func() { _ = sub.Close() })
	if _, err := sub.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := fetch(t, rc.nodes[0].io)
	if err != nil || len(got) != 3 {
		t.Fatalf("%d sockets, err %v", len(got), err)
	}
	rooms, err := ns(c, 1, "/").Adapter().(*Adapter).AllRooms(context.Background())
	if err != nil || len(rooms) != 3 {
		t.Fatalf("allRooms: %v %v", rooms, err)
	}
	// Fence: a marker published now arrives after any answer the
	// responders sent to the shared channel before the requests completed.
	pub := r.client(t)
	if err := pub.Publish(context.Background(), newChannels(c.key, "/", "").response, "fence").Err(); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.ReceiveMessage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if msg.Payload != "fence" {
		t.Fatalf("an answer went to the shared response channel: %q", msg.Payload)
	}
}
