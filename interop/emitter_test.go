//go:build interop

package interop

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"reflect"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/emitter"
	"github.com/redis/go-redis/v9"
)

// emitterSource is where frames of an emitter test come from: the official
// Node emitter (emitter.js) or the Go emitter package.
type emitterSource struct {
	name string // for failure messages: "Node emitter", "Go emitter"
	lang string
	run  func(t *testing.T, ops ...M)
}

// nodeEmitter runs ops through @socket.io/redis-emitter; it returns once
// Redis has processed every PUBLISH.
func (e *env) nodeEmitter() emitterSource {
	return emitterSource{name: "Node @socket.io/redis-emitter", lang: "Node emitter", run: func(t *testing.T, ops ...M) {
		t.Helper()
		raw, err := json.Marshal(ops)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "node", "emitter.js", string(raw))
		cmd.Env = append(cmd.Environ(), "REDIS_URL=redis://"+e.redisAddr, "KEY="+e.key)
		cmd.SysProcAttr = procAttr()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("node emitter.js %s: %v\n%s", raw, err, out)
		}
	}}
}

// goEmitter runs ops through the Go emitter package (classic: PUBLISH);
// each call returns once Redis has accepted the PUBLISH.
func (e *env) goEmitter() emitterSource {
	return emitterSource{name: "Go emitter package", lang: "Go emitter", run: func(t *testing.T, ops ...M) {
		t.Helper()
		rdb := redis.NewClient(&redis.Options{Addr: e.redisAddr})
		defer rdb.Close()
		runGoEmitter(t, emitter.New(rdb, &emitter.Options{Key: e.key}), ops)
	}}
}

// goStreamsEmitter runs ops through the Go streams emitter
// (emitter.NewStreams: XADD to the namespace's stream, serverSideEmit by
// PUBLISH) with opts; each call returns once Redis has accepted the command.
func (e *env) goStreamsEmitter(opts emitter.StreamsOptions) emitterSource {
	return emitterSource{name: "Go streams emitter", lang: "Go emitter", run: func(t *testing.T, ops ...M) {
		t.Helper()
		rdb := redis.NewClient(&redis.Options{Addr: e.redisAddr})
		defer rdb.Close()
		runGoEmitter(t, emitter.NewStreams(rdb, &opts), ops)
	}}
}

// goEmitterAPI is what the classic and streams Go emitters have in common.
type goEmitterAPI[T any] interface {
	Of(nsp string) T
	In(rooms ...string) T
	Except(rooms ...string) T
	Emit(ev string, args ...any) error
	SocketsJoin(rooms ...string) error
	SocketsLeave(rooms ...string) error
	DisconnectSockets(close bool) error
	ServerSideEmit(args ...any) error
}

// runGoEmitter runs ops (see emitter.js) through em.
func runGoEmitter[T goEmitterAPI[T]](t *testing.T, em T, ops []M) {
	t.Helper()
	strs := func(v any) []string {
		list, _ := v.([]any)
		out := make([]string, len(list))
		for i, r := range list {
			out[i] = fmt.Sprint(r)
		}
		return out
	}
	for _, o := range ops {
		nsp, _ := o["nsp"].(string)
		target := em.Of(nsp)
		if o["op"] != "serverSideEmit" {
			target = target.In(strs(o["in"])...).Except(strs(o["except"])...)
		}
		args, _ := fromWire(o["args"]).([]any)
		var err error
		switch o["op"] {
		case "emit":
			err = target.Emit(o["event"].(string), args...)
		case "socketsJoin":
			err = target.SocketsJoin(strs(o["rooms"])...)
		case "socketsLeave":
			err = target.SocketsLeave(strs(o["rooms"])...)
		case "disconnectSockets":
			err = target.DisconnectSockets(o["close"] == true)
		case "serverSideEmit":
			err = target.ServerSideEmit(append([]any{o["event"]}, args...)...)
		default:
			err = fmt.Errorf("unknown op %v", o["op"])
		}
		if err != nil {
			t.Fatalf("Go emitter %v: %v", o, err)
		}
	}
}

// emitterDir names a direction from an emitter to a server.
func emitterDir(src emitterSource, to *server) string {
	return fmt.Sprintf("%s→%s (%s → %s)", src.lang, to.lang, src.name, to.name)
}

// testEmitter checks what an emitter can do against the clients and servers
// of both languages.
func (e *env) testEmitter(t *testing.T, src emitterSource) {
	t.Run("broadcasts", func(t *testing.T) {
		f := e.newRoomFixture(t)
		custom := e.connectOnePerServer(t, "/custom", nil)
		all := append(append([]*client{}, f.cs...), custom...)
		type bc struct {
			name string
			op   M
			want func(c *client) int
		}
		var cases []bc
		add := func(name string, op M, want func(c *client) int) {
			op["op"], op["event"] = "emit", "em"
			if op["nsp"] == nil {
				op["nsp"] = "/"
			}
			tag := e.uniq("em")
			op["args"] = append([]any{tag}, op["args"].([]any)...)
			cases = append(cases, bc{name + " " + tag, op, want})
		}
		inRoot := func(c *client) bool { return c.nsp == "/" }
		add("to all", M{"args": []any{1.0, M{"k": []any{"v", nil}}}}, func(c *client) int { return b2i(inRoot(c)) })
		add("to one room", M{"in": []any{f.roomA}, "args": []any{}}, func(c *client) int { return b2i(inRoot(c) && f.inA[c]) })
		add("to two rooms", M{"in": []any{f.roomA, f.roomB}, "args": []any{}}, func(c *client) int { return b2i(inRoot(c) && (f.inA[c] || f.inB[c])) })
		add("except a room", M{"except": []any{f.roomA}, "args": []any{}}, func(c *client) int { return b2i(inRoot(c) && !f.inA[c]) })
		add("binary", M{"args": []any{M{"$binary": "AAEC/w=="}, M{"deep": []any{M{"$binary": "aGk="}}}}}, func(c *client) int { return b2i(inRoot(c)) })
		add("custom namespace", M{"nsp": "/custom", "args": []any{}}, func(c *client) int { return b2i(c.nsp == "/custom") })
		for _, target := range f.cs {
			add("to socket of "+target.srv.name, M{"in": []any{target.id}, "args": []any{}}, func(c *client) int { return b2i(c == target) })
		}
		var ops []M
		for _, tc := range cases {
			ops = append(ops, tc.op)
		}
		src.run(t, ops...)
		e.fence(t, all)
		st := e.states(t, all)
		for _, tc := range cases {
			args := tc.op["args"].([]any)
			for _, c := range all {
				if got, want := count(st[c.k], "em", args[0]), tc.want(c); got != want {
					t.Errorf("%s: %s: %s received it %d times, want %d", emitterDir(src, c.srv), tc.name, c, got, want)
				}
				for _, ev := range st[c.k].Events {
					if ev.Event != "em" || ev.Args[0] != args[0] {
						continue
					}
					got, off := e.payload(ev)
					if !reflect.DeepEqual(got, roundTrip(args)) {
						t.Errorf("%s: %s: %s received %s, want %s", emitterDir(src, c.srv), tc.name, c, jsonString(ev.Args), jsonString(args))
					}
					if e.spec.offsets && off == "" {
						t.Errorf("%s: %s: %s received %s without its stream offset", emitterDir(src, c.srv), tc.name, c, jsonString(ev.Args))
					}
				}
			}
		}
	})

	t.Run("socketsJoin and socketsLeave", func(t *testing.T) {
		f := e.newRoomFixture(t)
		x, y := e.uniq("emjoinX"), e.uniq("emjoinY")
		src.run(t,
			M{"op": "socketsJoin", "nsp": "/", "in": []any{f.roomA}, "rooms": []any{x}},
			M{"op": "socketsJoin", "nsp": "/", "except": []any{f.roomA}, "rooms": []any{y}},
		)
		e.fence(t, f.cs)
		e.expectMembersFrom(t, src, f.cs, x, func(c *client) bool { return f.inA[c] })
		e.expectMembersFrom(t, src, f.cs, y, func(c *client) bool { return !f.inA[c] })
		src.run(t, M{"op": "socketsLeave", "nsp": "/", "in": []any{f.roomB}, "rooms": []any{x, y}})
		e.fence(t, f.cs)
		e.expectMembersFrom(t, src, f.cs, x, func(c *client) bool { return f.inA[c] && !f.inB[c] })
		e.expectMembersFrom(t, src, f.cs, y, func(c *client) bool { return !f.inA[c] && !f.inB[c] })
	})

	t.Run("disconnectSockets", func(t *testing.T) {
		f := e.newRoomFixture(t)
		src.run(t, M{"op": "disconnectSockets", "nsp": "/", "in": []any{f.roomA}, "close": false})
		var kept []*client
		for _, c := range f.cs {
			if !f.inA[c] {
				kept = append(kept, c)
			}
		}
		e.fence(t, kept)
		waitUntil(t, "disconnections", func() (bool, string) {
			st := e.states(t, f.cs)
			for _, c := range f.cs {
				if f.inA[c] && len(st[c.k].Disconnects) == 0 {
					return false, fmt.Sprintf("%s: %s not disconnected", emitterDir(src, c.srv), c)
				}
			}
			return true, ""
		})
		st := e.states(t, f.cs)
		for _, c := range f.cs {
			s := st[c.k]
			if !f.inA[c] && (len(s.Disconnects) > 0 || !s.Connected) {
				t.Errorf("%s: %s, which does not match, was disconnected: %v", emitterDir(src, c.srv), c, s.Disconnects)
			}
			if f.inA[c] && (len(s.Disconnects) != 1 || s.Disconnects[0] != "io server disconnect") {
				t.Errorf("%s: %s disconnections %v, want [io server disconnect]", emitterDir(src, c.srv), c, s.Disconnects)
			}
		}
	})

	t.Run("serverSideEmit", func(t *testing.T) {
		event := e.uniq("emsse")
		for _, s := range e.servers {
			s.call(t, "listen", M{"nsp": "/", "event": event}, nil)
		}
		args := []any{"from the emitter", 2.0, M{"k": "v"}}
		src.run(t, M{"op": "serverSideEmit", "nsp": "/", "event": event, "args": args})
		// The PUBLISH is done: a round trip through every server orders
		// their processing of it before our checks.
		e.settle(t, e.servers[0], "/", nil)
		e.settle(t, e.servers[len(e.servers)-1], "/", nil)
		for _, s := range e.servers {
			var out serverEventsAnswer
			waitUntil(t, "server-side event on "+s.name, func() (bool, string) {
				s.call(t, "serverEvents", M{"nsp": "/", "event": event}, &out)
				return len(out.Events) > 0, emitterDir(src, s) + ": no event"
			})
			if len(out.Events) != 1 || !reflect.DeepEqual(out.Events[0].Args, roundTrip(args)) || out.Events[0].Ack {
				t.Errorf("%s: received %s, want once %s without ack", emitterDir(src, s), jsonString(out.Events), jsonString(args))
			}
		}
	})
}

// expectMembersFrom is expectMembers with an emitter's direction names.
func (e *env) expectMembersFrom(t *testing.T, src emitterSource, cs []*client, room string, want func(c *client) bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		members := e.roomMembers(t, cs, room)
		var bad []string
		for _, c := range cs {
			if members[c] != want(c) {
				bad = append(bad, fmt.Sprintf("%s: %s in room %s: %v, want %v", emitterDir(src, c.srv), c, room, members[c], want(c)))
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, b := range bad {
				t.Error(b)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testNodeEmitter: the official Node emitter drives the Go servers (and the
// Node ones, as the reference).
func testNodeEmitter(t *testing.T, e *env) {
	e.testEmitter(t, e.nodeEmitter())
}

// testGoEmitter: the Go emitter package drives the Go and the Node servers.
func testGoEmitter(t *testing.T, e *env) {
	e.testEmitter(t, e.goEmitter())
}
