package sioclient

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

// The connection state recovery side of the client (PID, LastOffset,
// Recovered, Drop, Reconnect, WithSession), against a scripted server that
// writes exactly the packets a recovering Socket.IO server writes: missed
// events before the CONNECT reply, which carries the private session id.

// scriptedServer accepts WebSocket connections, answers the readiness probe
// and hands each connection to the test once its CONNECT packet arrived.
type scriptedServer struct {
	http  *httptest.Server
	conns chan *scriptedConn
}

// scriptedConn is one accepted connection; connect is the payload of its
// CONNECT packet (after "40").
type scriptedConn struct {
	t       *testing.T
	ws      *websocket.Conn
	connect string
}

func newScriptedServer(t *testing.T) *scriptedServer {
	t.Helper()
	ss := &scriptedServer{conns: make(chan *scriptedConn, 4)}
	up := websocket.Upgrader{}
	ss.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		_ = ws.WriteMessage(websocket.TextMessage, []byte(`0{"sid":"eio","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}`))
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				_ = ws.Close()
				return
			}
			m := string(msg)
			switch {
			case m == "40"+probeNamespace+",":
				_ = ws.WriteMessage(websocket.TextMessage, []byte("44"+probeNamespace+`,{"message":"Invalid namespace"}`))
			case strings.HasPrefix(m, "40"):
				ss.conns <- &scriptedConn{t: t, ws: ws, connect: m[2:]}
				return // the hijacked connection stays open
			}
		}
	}))
	t.Cleanup(ss.http.Close)
	return ss
}

// accept returns the next connection whose CONNECT arrived.
func (ss *scriptedServer) accept(t *testing.T) *scriptedConn {
	t.Helper()
	select {
	case c := <-ss.conns:
		t.Cleanup(func() { _ = c.ws.Close() })
		return c
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting for a CONNECT packet")
		return nil
	}
}

// send writes Engine.IO message packets ("4" + each Socket.IO packet); a
// []byte element is written as a binary frame (an attachment).
func (c *scriptedConn) send(packets ...any) {
	c.t.Helper()
	for _, p := range packets {
		var err error
		switch p := p.(type) {
		case string:
			err = c.ws.WriteMessage(websocket.TextMessage, []byte("4"+p))
		case []byte:
			err = c.ws.WriteMessage(websocket.BinaryMessage, p)
		}
		if err != nil {
			c.t.Fatalf("scripted server: write: %v", err)
		}
	}
}

// connectPayload decodes the CONNECT payload after its namespace (nil when
// there is none).
func (c *scriptedConn) connectPayload() map[string]any {
	c.t.Helper()
	payload := c.connect
	if strings.HasPrefix(payload, "/") {
		_, payload, _ = strings.Cut(payload, ",")
	}
	if payload == "" {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		c.t.Fatalf("CONNECT payload %q: %v", c.connect, err)
	}
	return m
}

// dialScripted dials ss in a goroutine, scripts the connection with script
// (which must answer the CONNECT) and returns the client.
func dialScripted(t *testing.T, ss *scriptedServer, dial func() (*Client, error), script func(*scriptedConn)) *Client {
	t.Helper()
	type result struct {
		c   *Client
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := dial()
		res <- result{c, err}
	}()
	script(ss.accept(t))
	r := <-res
	if r.err != nil {
		t.Fatalf("dial: %v", r.err)
	}
	t.Cleanup(func() { _ = r.c.Close() })
	return r.c
}

func TestSessionIDAndLastOffset(t *testing.T) {
	checkLeaksAtEnd(t)
	ss := newScriptedServer(t)
	ctx, cancel := testCtx(t)
	defer cancel()

	var conn *scriptedConn
	c := dialScripted(t, ss, func() (*Client, error) { return Dial(ctx, ss.http.URL, "/") }, func(sc *scriptedConn) {
		conn = sc
		if p := sc.connectPayload(); p != nil {
			t.Errorf("first CONNECT payload = %v, want none", p)
		}
		sc.send(`0{"sid":"sid1","pid":"pid1"}`)
	})
	if c.PID() != "pid1" || c.ID() != "sid1" || c.Recovered() || c.LastOffset() != "" {
		t.Fatalf("after CONNECT: PID %q ID %q Recovered %v LastOffset %q", c.PID(), c.ID(), c.Recovered(), c.LastOffset())
	}
	// socket.io-client's rule, step by step: the last element of every
	// event without ack that is a string, the event name included.
	steps := []struct {
		packet, want string
	}{
		{`2["ev",1,"100-0"]`, "100-0"},
		{`2["ev",2]`, "100-0"},        // not a string: unchanged
		{`21["ev","200-0"]`, "100-0"}, // an ack callback comes last: unchanged
		{`2["ev","volatile text"]`, "volatile text"},
		{`2["bare"]`, "bare"},
		{`2["ev",{"a":"300-0"}]`, "bare"},
	}
	for _, st := range steps {
		conn.send(st.packet)
		if _, err := c.Next(ctx); err != nil {
			t.Fatal(err)
		}
		if got := c.LastOffset(); got != st.want {
			t.Errorf("after %s: LastOffset = %q, want %q", st.packet, got, st.want)
		}
	}
	checkNoErrors(t, c)
}

func TestNoSessionNoOffset(t *testing.T) {
	checkLeaksAtEnd(t)
	ss := newScriptedServer(t)
	ctx, cancel := testCtx(t)
	defer cancel()
	c := dialScripted(t, ss, func() (*Client, error) { return Dial(ctx, ss.http.URL, "/") }, func(sc *scriptedConn) {
		sc.send(`0{"sid":"sid1"}`, `2["ev","100-0"]`)
	})
	if _, err := c.WaitFor(ctx, "ev", 1); err != nil {
		t.Fatal(err)
	}
	if c.PID() != "" || c.LastOffset() != "" {
		t.Errorf("without recovery: PID %q LastOffset %q, want both empty", c.PID(), c.LastOffset())
	}
}

func TestDropAndReconnectRecovered(t *testing.T) {
	checkLeaksAtEnd(t)
	a, b := newScriptedServer(t), newScriptedServer(t)
	ctx, cancel := testCtx(t)
	defer cancel()

	var connA *scriptedConn
	c1 := dialScripted(t, a, func() (*Client, error) {
		return Dial(ctx, a.http.URL, "/chat", WithAuth(map[string]any{"token": "t", "offset": "ignored?"}))
	}, func(sc *scriptedConn) {
		connA = sc
		if got := sc.connectPayload(); !reflect.DeepEqual(got, map[string]any{"token": "t", "offset": "ignored?"}) {
			t.Errorf("first CONNECT payload = %v", got)
		}
		sc.send(`0/chat,{"sid":"sid1","pid":"pid1"}`, `2/chat,["ev","5-1"]`)
	})
	if _, err := c1.Next(ctx); err != nil {
		t.Fatal(err)
	}

	// A transport-level drop: no DISCONNECT packet, no close frame.
	c1.Drop()
	if got := c1.DisconnectReason(); got != ReasonTransportClose {
		t.Errorf("DisconnectReason after Drop = %q", got)
	}
	_ = connA.ws.SetReadDeadline(time.Now().Add(testTimeout))
	for {
		_, msg, err := connA.ws.ReadMessage()
		if err != nil {
			if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
				t.Errorf("Drop sent a close frame: %v", err)
			}
			break
		}
		if strings.HasPrefix(string(msg), "41") {
			t.Errorf("Drop sent a DISCONNECT packet %q", msg)
		}
	}

	// Reconnect to another server: the auth keys win over the session's
	// (socket.io-client's Object.assign({pid, offset}, auth)); the missed
	// packets come before the CONNECT reply, one of them binary.
	c2 := dialScripted(t, b, func() (*Client, error) { return c1.Reconnect(ctx, b.http.URL) }, func(sc *scriptedConn) {
		if got := sc.connectPayload(); !reflect.DeepEqual(got, map[string]any{"pid": "pid1", "offset": "ignored?", "token": "t"}) {
			t.Errorf("reconnection CONNECT payload = %v", got)
		}
		sc.send(`2/chat,["missed",1,"6-0"]`,
			`51-/chat,["bin",{"_placeholder":true,"num":0},"7-0"]`, []byte{1, 2, 3},
			`0/chat,{"sid":"sid1","pid":"pid1"}`,
			`2/chat,["live","8-0"]`)
	})
	var names []string
	for range 3 {
		ev, err := c2.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, ev.Name)
	}
	if !c2.Recovered() || c2.ID() != "sid1" || c2.PID() != "pid1" || c2.Namespace() != "/chat" {
		t.Errorf("after reconnection: Recovered %v ID %q PID %q Namespace %q", c2.Recovered(), c2.ID(), c2.PID(), c2.Namespace())
	}
	if want := []string{"missed", "bin", "live"}; !reflect.DeepEqual(names, want) {
		t.Errorf("events = %v, want %v", names, want)
	}
	if bin := c2.Received("bin"); len(bin) != 1 || !bin[0].Binary || !reflect.DeepEqual(bin[0].Args, []any{[]byte{1, 2, 3}, "7-0"}) {
		t.Errorf("binary missed event = %+v", bin)
	}
	if got := c2.LastOffset(); got != "8-0" {
		t.Errorf("LastOffset = %q, want 8-0", got)
	}
	checkNoErrors(t, c2)
}

func TestReconnectNotRecovered(t *testing.T) {
	checkLeaksAtEnd(t)
	ss := newScriptedServer(t)
	ctx, cancel := testCtx(t)
	defer cancel()
	c := dialScripted(t, ss, func() (*Client, error) { return Dial(ctx, ss.http.URL, "/", WithSession("old", "")) }, func(sc *scriptedConn) {
		// An empty offset is left out, as an undefined one in JavaScript.
		if got := sc.connectPayload(); !reflect.DeepEqual(got, map[string]any{"pid": "old"}) {
			t.Errorf("CONNECT payload = %v", got)
		}
		sc.send(`0{"sid":"new-sid","pid":"new-pid"}`)
	})
	if c.Recovered() || c.PID() != "new-pid" || c.ID() != "new-sid" {
		t.Errorf("Recovered %v PID %q ID %q", c.Recovered(), c.PID(), c.ID())
	}
}

// checkLeaksAtEnd checks goroutine leaks after every cleanup of the test
// (the scripted servers and clients close in cleanups).
func checkLeaksAtEnd(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { verifyNoLeaks(t, ignore) })
}
