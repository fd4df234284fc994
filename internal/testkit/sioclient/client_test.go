package sioclient

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io/v2/socket"
	"go.uber.org/goleak"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 5 * time.Second

// testServer is a real socket.io/v2 server (default in-memory adapter) served
// by an httptest.Server.
type testServer struct {
	io   *socket.Server
	http *httptest.Server
	// root and custom receive the server-side sockets connected to "/" and
	// "/custom" respectively.
	root      chan *socket.Socket
	custom    chan *socket.Socket
	closeOnce sync.Once
}

// newTestServer starts a socket.io server with namespaces "/" and "/custom".
// "/custom" only accepts clients whose auth payload is {"token": "secret"}.
func newTestServer(t *testing.T, opts *socket.ServerOptions) *testServer {
	t.Helper()
	ts := &testServer{
		root:   make(chan *socket.Socket, 16),
		custom: make(chan *socket.Socket, 16),
	}
	if opts == nil {
		// Passing a nil *socket.ServerOptions would produce a non-nil
		// interface holding a nil pointer, which socket.NewServer dereferences.
		opts = socket.DefaultServerOptions()
	}
	// socket.io/v2 may leak its per-connection "join a namespace within
	// ConnectTimeout" timer (see verifyNoLeaks); keep it short so that such a
	// goroutine ends soon after the test.
	opts.SetConnectTimeout(time.Second)
	ts.io = socket.NewServer(nil, opts)
	ts.io.On("connection", func(args ...any) {
		ts.root <- args[0].(*socket.Socket)
	})
	custom := ts.io.Of("/custom", func(args ...any) {
		ts.custom <- args[0].(*socket.Socket)
	})
	custom.Use(func(s *socket.Socket, next func(*socket.ExtendedError)) {
		if auth, ok := s.Handshake().Auth.(map[string]any); ok && auth["token"] == "secret" {
			next(nil)
			return
		}
		next(socket.NewExtendedError("bad token", map[string]any{"code": 42}))
	})
	ts.http = httptest.NewServer(ts.io.ServeHandler(nil))
	return ts
}

// URL returns the base URL to pass to Dial.
func (ts *testServer) URL() string { return ts.http.URL }

// Close shuts down the socket.io server, then the HTTP server. It is
// idempotent.
func (ts *testServer) Close() {
	ts.closeOnce.Do(func() {
		ts.io.Close(nil)
		ts.http.Close()
	})
}

// serverSocket waits for the next server-side socket on ch.
func serverSocket(t *testing.T, ch <-chan *socket.Socket) *socket.Socket {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting for the server-side connection")
		return nil
	}
}

// verifyNoLeaks is goleak.VerifyNone with a longer patience.
//
// socket.io/v2 v2.5.0 creates the connection's connect timer
// (socket.(*Client).setup) after registering its packet listeners, so when the
// client is fast enough the namespace join (or the connection close) tries to
// clear the timer before it is stored, and the timer goroutine lives until the
// timer fires (ConnectTimeout, 45s by default). The test server uses a 1s
// ConnectTimeout and this helper keeps looking for leaks until no goroutine is
// left or a deadline passes.
func verifyNoLeaks(t *testing.T, opts ...goleak.Option) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		err := goleak.Find(opts...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Error(err)
			return
		}
	}
}

func testCtx(t *testing.T) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithTimeout(context.Background(), testTimeout)
}

func mustDial(t *testing.T, ctx context.Context, url, nsp string, opts ...Option) *Client {
	t.Helper()
	c, err := Dial(ctx, url, nsp, opts...)
	if err != nil {
		t.Fatalf("Dial(%q): %v", nsp, err)
	}
	return c
}

func checkNoErrors(t *testing.T, c *Client) {
	t.Helper()
	if errs := c.Errors(); len(errs) > 0 {
		t.Errorf("unexpected protocol errors: %v", errs)
	}
}

func TestConnectRootAndCustomNamespace(t *testing.T) {
	defer verifyNoLeaks(t, goleak.IgnoreCurrent())
	srv := newTestServer(t, nil)
	defer srv.Close()
	ctx, cancel := testCtx(t)
	defer cancel()

	root := mustDial(t, ctx, srv.URL(), "/")
	defer root.Close()
	rootSock := serverSocket(t, srv.root)
	if root.ID() == "" || root.ID() != string(rootSock.Id()) {
		t.Errorf("root client ID = %q, server socket id = %q", root.ID(), rootSock.Id())
	}
	if root.EngineID() == "" || root.EngineID() == root.ID() {
		t.Errorf("engine id %q should be set and differ from the socket id %q", root.EngineID(), root.ID())
	}

	custom := mustDial(t, ctx, srv.URL(), "custom", WithAuth(map[string]any{"token": "secret"}))
	defer custom.Close()
	if custom.Namespace() != "/custom" {
		t.Errorf("Namespace() = %q, want /custom", custom.Namespace())
	}
	customSock := serverSocket(t, srv.custom)
	if custom.ID() != string(customSock.Id()) {
		t.Errorf("custom client ID = %q, server socket id = %q", custom.ID(), customSock.Id())
	}
	if got := customSock.Nsp().Name(); got != "/custom" {
		t.Errorf("server-side namespace = %q", got)
	}

	// Events on one namespace don't leak to the other.
	if err := customSock.Emit("hello", "custom"); err != nil {
		t.Fatal(err)
	}
	if err := rootSock.Emit("hello", "root"); err != nil {
		t.Fatal(err)
	}
	evs, err := custom.WaitFor(ctx, "hello", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(evs[0].Args, []any{"custom"}) {
		t.Errorf("custom got %v", evs[0].Args)
	}
	evs, err = root.WaitFor(ctx, "hello", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(evs[0].Args, []any{"root"}) {
		t.Errorf("root got %v", evs[0].Args)
	}
	checkNoErrors(t, root)
	checkNoErrors(t, custom)
}

func TestConnectErrors(t *testing.T) {
	defer verifyNoLeaks(t, goleak.IgnoreCurrent())
	srv := newTestServer(t, nil)
	defer srv.Close()
	ctx, cancel := testCtx(t)
	defer cancel()

	_, err := Dial(ctx, srv.URL(), "/nope")
	if err == nil || !strings.Contains(err.Error(), "Invalid namespace") {
		t.Errorf("Dial(/nope) error = %v, want Invalid namespace", err)
	}

	_, err = Dial(ctx, srv.URL(), "/custom", WithAuth(map[string]any{"token": "wrong"}))
	if err == nil || !strings.Contains(err.Error(), "bad token") || !strings.Contains(err.Error(), "42") {
		t.Errorf("Dial(/custom, wrong token) error = %v, want bad token with data", err)
	}
}

func TestDialTimeout(t *testing.T) {
	defer verifyNoLeaks(t, goleak.IgnoreCurrent())
	// A WebSocket server that never sends the Engine.IO open packet.
	release := make(chan struct{})
	var wg sync.WaitGroup
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		<-release
		conn.Close()
	}))
	defer hs.Close()
	defer wg.Wait()
	defer close(release)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, hs.URL, "/")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial error = %v, want context.DeadlineExceeded", err)
	}
}

func TestReceiveTextEventsInOrder(t *testing.T) {
	defer verifyNoLeaks(t, goleak.IgnoreCurrent())
	srv := newTestServer(t, nil)
	defer srv.Close()
	ctx, cancel := testCtx(t)
	defer cancel()

	c := mustDial(t, ctx, srv.URL(), "/")
	defer c.Close()
	s := serverSocket(t, srv.root)

	for i := range 5 {
		if err := s.Emit("tick", i, "x", map[string]any{"k": []any{true, nil}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Emit("other"); err != nil {
		t.Fatal(err)
	}

	evs, err := c.WaitFor(ctx, "tick", 5)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range evs {
		want := []any{float64(i), "x", map[string]any{"k": []any{true, nil}}}
		if ev.Name != "tick" || ev.Binary || ev.AckID != nil || !reflect.DeepEqual(ev.Args, want) {
			t.Errorf("event %d = %+v, want args %v", i, ev, want)
		}
	}
	// Next sees every event, in order, including the ones seen by WaitFor.
	for i := range 5 {
		ev, err := c.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Name != "tick" || ev.Args[0] != float64(i) {
			t.Errorf("Next #%d = %+v", i, ev)
		}
	}
	ev, err := c.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Name != "other" || len(ev.Args) != 0 {
		t.Errorf("Next = %+v, want other with no args", ev)
	}
	if got := len(c.Received("tick")); got != 5 {
		t.Errorf("Received(tick) has %d events", got)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if _, err := c.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next with nothing pending = %v, want deadline exceeded", err)
	}
	checkNoErrors(t, c)
}

func TestReceiveBinaryEvent(t *testing.T) {
	defer verifyNoLeaks(t, goleak.IgnoreCurrent())
	srv := newTestServer(t, nil)
	defer srv.Close()
	ctx, cancel := testCtx(t)
	defer cancel()

	c := mustDial(t, ctx, srv.URL(), "/custom", WithAuth(map[string]any{"token": "secret"}))
	defer c.Close()
	s := serverSocket(t, srv.custom)

	err := s.Emit("bin", []byte{1, 2, 3}, "text", map[string]any{
		"nested": []any{[]byte{4, 5}},
		"n":      7,
	})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := c.WaitFor(ctx, "bin", 1)
	if err != nil {
		t.Fatal(err)
	}
	ev := evs[0]
	if !ev.Binary {
		t.Error("Binary = false, want true")
	}
	want := []any{[]byte{1, 2, 3}, "text", map[string]any{
		"nested": []any{[]byte{4, 5}},
		"n":      float64(7),
	}}
	if !reflect.DeepEqual(ev.Args, want) {
		t.Errorf("Args = %#v, want %#v", ev.Args, want)
	}
	checkNoErrors(t, c)
}

func TestServerToClientAck(t *testing.T) {
	defer verifyNoLeaks(t, goleak.IgnoreCurrent())
	srv := newTestServer(t, nil)
	defer srv.Close()
	ctx, cancel := testCtx(t)
	defer cancel()

	c := mustDial(t, ctx, srv.URL(), "/")
	defer c.Close()
	s := serverSocket(t, srv.root)

	c.OnAck("question", func(args []any) []any {
		return []any{"answer", args[0], []byte("raw")}
	})
	c.OnAck("plain", func(args []any) []any { return nil })

	type ackRes struct {
		args []any
		err  error
	}
	got := make(chan ackRes, 3)
	s.Timeout(testTimeout).EmitWithAck("question", 41.5)(func(args []any, err error) {
		got <- ackRes{args, err}
	})
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("ack error: %v", r.err)
		}
		if len(r.args) != 3 || r.args[0] != "answer" || r.args[1] != 41.5 {
			t.Fatalf("ack args = %#v", r.args)
		}
		// socket.io/v2 hands binary data received from a client over as
		// *types.BytesBuffer, not []byte.
		buf, ok := r.args[2].(types.BufferInterface)
		if !ok || !bytes.Equal(buf.Bytes(), []byte("raw")) {
			t.Errorf("binary ack arg = %#v", r.args[2])
		}
	case <-ctx.Done():
		t.Fatal("timed out waiting for the ack")
	}

	s.Timeout(testTimeout).EmitWithAck("plain")(func(args []any, err error) {
		got <- ackRes{args, err}
	})
	select {
	case r := <-got:
		if r.err != nil || len(r.args) != 0 {
			t.Errorf("plain ack = %#v, %v; want no args, no error", r.args, r.err)
		}
	case <-ctx.Done():
		t.Fatal("timed out waiting for the plain ack")
	}

	// Without a handler the client never answers, so the server times out.
	s.Timeout(100*time.Millisecond).EmitWithAck("unanswered", 1)(func(args []any, err error) {
		got <- ackRes{args, err}
	})
	select {
	case r := <-got:
		if r.err == nil {
			t.Errorf("unanswered ack = %#v, want a timeout error", r.args)
		}
	case <-ctx.Done():
		t.Fatal("timed out waiting for the server-side ack timeout")
	}
	evs := c.Received("unanswered")
	if len(evs) != 1 || evs[0].AckID == nil {
		t.Errorf("Received(unanswered) = %+v, want one event with an ack id", evs)
	}
	if q := c.Received("question"); len(q) != 1 || q[0].AckID == nil || q[0].Binary {
		t.Errorf("Received(question) = %+v", q)
	}
	checkNoErrors(t, c)
}

func TestClientToServer(t *testing.T) {
	defer verifyNoLeaks(t, goleak.IgnoreCurrent())
	srv := newTestServer(t, nil)
	defer srv.Close()
	ctx, cancel := testCtx(t)
	defer cancel()

	c := mustDial(t, ctx, srv.URL(), "/custom", WithAuth(map[string]any{"token": "secret"}))
	defer c.Close()
	s := serverSocket(t, srv.custom)

	received := make(chan []any, 4)
	s.On("up", func(args ...any) { received <- args })
	s.On("echo", func(args ...any) {
		ack := args[len(args)-1].(socket.Ack)
		ack(append([]any{"echo"}, args[:len(args)-1]...), nil)
	})

	if err := c.Emit("up", "text", 1); err != nil {
		t.Fatal(err)
	}
	select {
	case args := <-received:
		if !reflect.DeepEqual(args, []any{"text", float64(1)}) {
			t.Errorf("server got %#v", args)
		}
	case <-ctx.Done():
		t.Fatal("timed out waiting for the text event on the server")
	}

	if err := c.Emit("up", map[string]any{"b": []byte{9, 8}}); err != nil {
		t.Fatal(err)
	}
	select {
	case args := <-received:
		m, _ := args[0].(map[string]any)
		buf, ok := m["b"].(types.BufferInterface)
		if len(args) != 1 || !ok || !bytes.Equal(buf.Bytes(), []byte{9, 8}) {
			t.Errorf("server got %#v", args)
		}
	case <-ctx.Done():
		t.Fatal("timed out waiting for the binary event on the server")
	}

	res, err := c.EmitWithAck(ctx, "echo", "a", 2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res, []any{"echo", "a", float64(2)}) {
		t.Errorf("ack = %#v", res)
	}

	// The server echoes the attachment back as a BINARY_ACK.
	res, err = c.EmitWithAck(ctx, "echo", []byte("bytes"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res, []any{"echo", []byte("bytes")}) {
		t.Errorf("binary ack = %#v", res)
	}

	// Concurrent acks are matched by id.
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.EmitWithAck(ctx, "echo", i)
			if err != nil {
				t.Error(err)
				return
			}
			if !reflect.DeepEqual(res, []any{"echo", float64(i)}) {
				t.Errorf("ack %d = %#v", i, res)
			}
		}()
	}
	wg.Wait()

	// An ack that never comes honours the context.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if _, err := c.EmitWithAck(short, "nobody-listens"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("EmitWithAck without server ack = %v, want deadline exceeded", err)
	}
	checkNoErrors(t, c)
}

func TestServerDisconnect(t *testing.T) {
	defer verifyNoLeaks(t, goleak.IgnoreCurrent())
	srv := newTestServer(t, nil)
	defer srv.Close()
	ctx, cancel := testCtx(t)
	defer cancel()

	c := mustDial(t, ctx, srv.URL(), "/custom", WithAuth(map[string]any{"token": "secret"}))
	defer c.Close()
	s := serverSocket(t, srv.custom)
	if c.DisconnectReason() != "" {
		t.Errorf("DisconnectReason before disconnect = %q", c.DisconnectReason())
	}

	s.Emit("bye", "now")
	s.Disconnect(false)
	select {
	case <-c.Disconnected():
	case <-ctx.Done():
		t.Fatal("timed out waiting for the disconnection")
	}
	if got := c.DisconnectReason(); got != "io server disconnect" {
		t.Errorf("DisconnectReason = %q, want io server disconnect", got)
	}
	// Events sent before the DISCONNECT are still available; waiting for more
	// fails fast instead of hanging.
	if evs, err := c.WaitFor(ctx, "bye", 1); err != nil || len(evs) != 1 {
		t.Errorf("WaitFor(bye) = %v, %v", evs, err)
	}
	if _, err := c.WaitFor(ctx, "bye", 2); !errors.Is(err, ErrDisconnected) {
		t.Errorf("WaitFor after disconnect = %v, want ErrDisconnected", err)
	}
	if err := c.Emit("late"); !errors.Is(err, ErrDisconnected) {
		t.Errorf("Emit after disconnect = %v, want ErrDisconnected", err)
	}
	if _, err := c.EmitWithAck(ctx, "late"); !errors.Is(err, ErrDisconnected) {
		t.Errorf("EmitWithAck after disconnect = %v, want ErrDisconnected", err)
	}
	checkNoErrors(t, c)
}

func TestTransportClose(t *testing.T) {
	defer verifyNoLeaks(t, goleak.IgnoreCurrent())
	srv := newTestServer(t, nil)
	defer srv.Close()
	ctx, cancel := testCtx(t)
	defer cancel()

	c := mustDial(t, ctx, srv.URL(), "/")
	defer c.Close()
	serverSocket(t, srv.root)

	pending := make(chan error, 1)
	go func() {
		_, err := c.EmitWithAck(ctx, "never-acked")
		pending <- err
	}()

	srv.Close()
	select {
	case <-c.Disconnected():
	case <-ctx.Done():
		t.Fatal("timed out waiting for the disconnection")
	}
	if got := c.DisconnectReason(); got != "transport close" {
		t.Errorf("DisconnectReason = %q, want transport close", got)
	}
	select {
	case err := <-pending:
		if !errors.Is(err, ErrDisconnected) {
			t.Errorf("pending EmitWithAck = %v, want ErrDisconnected", err)
		}
	case <-ctx.Done():
		t.Fatal("pending EmitWithAck did not return")
	}
	if _, err := c.Next(ctx); !errors.Is(err, ErrDisconnected) {
		t.Errorf("Next after close = %v, want ErrDisconnected", err)
	}
}

func TestClientClose(t *testing.T) {
	defer verifyNoLeaks(t, goleak.IgnoreCurrent())
	srv := newTestServer(t, nil)
	defer srv.Close()
	ctx, cancel := testCtx(t)
	defer cancel()

	c := mustDial(t, ctx, srv.URL(), "/")
	s := serverSocket(t, srv.root)
	reason := make(chan any, 1)
	s.On("disconnect", func(args ...any) { reason <- args[0] })

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if got := c.DisconnectReason(); got != "io client disconnect" {
		t.Errorf("DisconnectReason = %q", got)
	}
	select {
	case r := <-reason:
		// The server handles Socket.IO packets on separate goroutines, so the
		// WebSocket close may overtake the DISCONNECT packet.
		if r != "client namespace disconnect" && r != "transport close" {
			t.Errorf("server-side disconnect reason = %v", r)
		}
	case <-ctx.Done():
		t.Fatal("the server did not notice the disconnection")
	}
}

func TestPingPong(t *testing.T) {
	defer verifyNoLeaks(t, goleak.IgnoreCurrent())
	opts := socket.DefaultServerOptions()
	opts.SetPingInterval(20 * time.Millisecond)
	opts.SetPingTimeout(200 * time.Millisecond)
	srv := newTestServer(t, opts)
	defer srv.Close()
	ctx, cancel := testCtx(t)
	defer cancel()

	c := mustDial(t, ctx, srv.URL(), "/")
	defer c.Close()
	s := serverSocket(t, srv.root)

	heartbeats := make(chan struct{}, 16)
	s.Conn().On("heartbeat", func(...any) {
		select {
		case heartbeats <- struct{}{}:
		default:
		}
	})
	for i := range 3 {
		select {
		case <-heartbeats:
		case <-c.Disconnected():
			t.Fatalf("disconnected after %d pongs: %s", i, c.DisconnectReason())
		case <-ctx.Done():
			t.Fatalf("timed out after %d pongs", i)
		}
	}
	// The connection is still usable.
	if err := s.Emit("alive"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitFor(ctx, "alive", 1); err != nil {
		t.Fatal(err)
	}
	checkNoErrors(t, c)
}

// fakeServer is a scripted Engine.IO/Socket.IO WebSocket server used to feed
// malformed input to the client.
func fakeServer(t *testing.T, script func(conn *websocket.Conn)) (*httptest.Server, func()) {
	t.Helper()
	var wg sync.WaitGroup
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		conn.WriteMessage(websocket.TextMessage, []byte(`0{"sid":"engine-sid","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`))
		// Like a socket.io/v2 server that is not listening yet, drop the
		// first readiness probe; answer the next ones.
		probes := 0
		for {
			_, msg, err := conn.ReadMessage()
			if err != nil {
				t.Errorf("fake server: reading CONNECT: %v", err)
				return
			}
			if string(msg) == "40" {
				break
			}
			if string(msg) != "40/sioclient-readiness-probe," {
				t.Errorf("fake server: unexpected packet %q before CONNECT", msg)
				return
			}
			probes++
			if probes > 1 {
				conn.WriteMessage(websocket.TextMessage, []byte(`44/sioclient-readiness-probe,{"message":"Invalid namespace"}`))
			}
		}
		if probes < 2 {
			t.Errorf("fake server: CONNECT after %d probes, want at least 2", probes)
		}
		conn.WriteMessage(websocket.TextMessage, []byte(`40{"sid":"socket-sid"}`))
		script(conn)
	}))
	return hs, func() {
		hs.Close()
		wg.Wait()
	}
}

func TestMalformedInput(t *testing.T) {
	defer verifyNoLeaks(t, goleak.IgnoreCurrent())
	done := make(chan struct{})
	hs, stop := fakeServer(t, func(conn *websocket.Conn) {
		text := func(s string) { conn.WriteMessage(websocket.TextMessage, []byte(s)) }
		bin := func(b []byte) { conn.WriteMessage(websocket.BinaryMessage, b) }
		text("")
		text("9")
		text("4")
		text("49")
		text("42")
		text("42[")
		text("42{}")
		text("42[1]")
		text("42[]")
		text("45x-[]")
		text("45")
		text(`451-["e",{"_placeholder":true,"num":0}]`)
		text(`42["interrupts-binary"]`)
		bin([]byte{1})
		text(`451-["e",{"_placeholder":true,"num":3}]`)
		bin([]byte{1})
		text(`42/other,["wrong-nsp"]`)
		text(`43[]`)
		text(`4399[]`)
		text(`43`)
		text(`40{"sid":"again"}`)
		text(`4218446744073709551616["overflow"]`)
		text(`42["ok",{"_placeholder":"no","num":0}]`)
		text(`42["ping-ack-check"]`)
		text(`2`)
		<-done
	})
	defer stop()
	defer close(done)

	ctx, cancel := testCtx(t)
	defer cancel()
	c := mustDial(t, ctx, hs.URL, "/")
	defer c.Close()
	if c.ID() != "socket-sid" || c.EngineID() != "engine-sid" {
		t.Errorf("ids = %q / %q", c.ID(), c.EngineID())
	}
	evs, err := c.WaitFor(ctx, "ping-ack-check", 1)
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].AckID != nil {
		t.Errorf("unexpected ack id %v", *evs[0].AckID)
	}
	ok := c.Received("ok")
	if len(ok) != 1 || !reflect.DeepEqual(ok[0].Args, []any{map[string]any{"_placeholder": "no", "num": float64(0)}}) {
		t.Errorf("Received(ok) = %+v", ok)
	}
	if got := len(c.Received("interrupts-binary")); got != 1 {
		t.Errorf("the text packet after an incomplete binary packet was dropped (%d)", got)
	}
	if got := len(c.Received("e")) + len(c.Received("wrong-nsp")); got != 0 {
		t.Errorf("malformed events were recorded: %d", got)
	}
	if errs := c.Errors(); len(errs) < 15 {
		t.Errorf("got %d recorded errors, want at least 15: %v", len(errs), errs)
	}
	select {
	case <-c.Disconnected():
		t.Errorf("malformed input disconnected the client: %s", c.DisconnectReason())
	default:
	}
}

func TestDecodePacket(t *testing.T) {
	id := func(v uint64) *uint64 { return &v }
	tests := []struct {
		in   string
		want packet
	}{
		{`0`, packet{typ: '0', nsp: "/"}},
		{`0/admin,{"sid":"x"}`, packet{typ: '0', nsp: "/admin", data: map[string]any{"sid": "x"}}},
		{`1/admin,`, packet{typ: '1', nsp: "/admin"}},
		{`2["a",1]`, packet{typ: '2', nsp: "/", data: []any{"a", float64(1)}}},
		{`2/admin,17["a"]`, packet{typ: '2', nsp: "/admin", id: id(17), data: []any{"a"}}},
		{`317[]`, packet{typ: '3', nsp: "/", id: id(17), data: []any{}}},
		{`52-/admin,3["a",{"_placeholder":true,"num":0}]`, packet{typ: '5', attachments: 2, nsp: "/admin", id: id(3),
			data: []any{"a", map[string]any{"_placeholder": true, "num": float64(0)}}}},
		{`61-0[{"_placeholder":true,"num":0}]`, packet{typ: '6', attachments: 1, nsp: "/", id: id(0),
			data: []any{map[string]any{"_placeholder": true, "num": float64(0)}}}},
	}
	for _, tt := range tests {
		got, err := decodePacket([]byte(tt.in))
		if err != nil {
			t.Errorf("decodePacket(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(*got, tt.want) {
			t.Errorf("decodePacket(%q) = %+v, want %+v", tt.in, *got, tt.want)
		}
	}
	for _, bad := range []string{``, `7`, `5`, `5-`, `5a-[]`, `2[`, `2/a,["x"`} {
		if _, err := decodePacket([]byte(bad)); err == nil {
			t.Errorf("decodePacket(%q) succeeded", bad)
		}
	}
}

// TestEmitRightAfterDial covers the two server-side races worked around by
// Dial: a CONNECT sent before the server listens (readiness probe) and a
// packet sent before the server registered the new socket (post-connect
// delay). Without the workarounds some iterations hang in Dial or get their
// connection closed by the server.
func TestEmitRightAfterDial(t *testing.T) {
	defer verifyNoLeaks(t, goleak.IgnoreCurrent())
	srv := newTestServer(t, nil)
	defer srv.Close()
	ctx, cancel := testCtx(t)
	defer cancel()

	for i := range 100 {
		c := mustDial(t, ctx, srv.URL(), "/")
		if err := c.Emit("early", i); err != nil {
			c.Close()
			t.Fatalf("iteration %d: Emit: %v", i, err)
		}
		s := serverSocket(t, srv.root)
		s.On("echo", func(args ...any) { args[len(args)-1].(socket.Ack)(nil, nil) })
		_, err := c.EmitWithAck(ctx, "echo")
		c.Close()
		if err != nil {
			t.Fatalf("iteration %d: EmitWithAck: %v", i, err)
		}
	}
}
