//go:build interop

package interop

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// ackReply gives each client a reply of a different shape, binary included.
func ackReply(c *client) any {
	switch c.srv.name {
	case "go-0":
		return "ack from client of go-0"
	case "go-1":
		return M{"from": "go-1", "n": 1.5, "list": []any{true, nil, "x"}}
	case "node-0":
		return M{"$binary": "bm9kZS0w/wA="} // a Buffer
	default:
		return 42.0
	}
}

// multiset returns the JSON forms of vs, sorted.
func multiset(vs []any) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = jsonString(roundTrip(v))
	}
	sort.Strings(out)
	return out
}

// testBroadcastWithAck: io.timeout(ms).emit(..., ack) collects the
// acknowledgements of the clients of every server, whatever their server's
// language and the emitter's, binary included.
func testBroadcastWithAck(t *testing.T, e *env) {
	f := e.newRoomFixture(t)
	for _, c := range f.cs {
		e.setAck(t, c, "ackme", []any{ackReply(c)})
	}
	type ackAnswer struct {
		Err  any   `json:"err"`
		Acks []any `json:"acks"`
	}
	// check compares the acks with the replies of the expected clients and
	// names the direction of a missing or unexpected one.
	check := func(t *testing.T, actor *server, got ackAnswer, wantErr bool, from func(c *client) bool) {
		t.Helper()
		if (got.Err != nil) != wantErr {
			t.Errorf("from %s (%s): err = %v, want error: %v", actor.name, actor.lang, got.Err, wantErr)
		}
		gotSet := multiset(got.Acks)
		remaining := append([]string(nil), gotSet...)
		for _, c := range f.cs {
			if !from(c) {
				continue
			}
			want := jsonString(roundTrip(ackReply(c)))
			i := indexOf(remaining, want)
			if i < 0 {
				t.Errorf("%s: ack %s of %s missing from %s", dir(c.srv, actor), want, c, strings.Join(gotSet, " "))
				continue
			}
			remaining = append(remaining[:i], remaining[i+1:]...)
		}
		if len(remaining) > 0 {
			t.Errorf("from %s (%s): unexpected acks %v (all: %v)", actor.name, actor.lang, remaining, gotSet)
		}
	}

	t.Run("to all", func(t *testing.T) {
		e.forEachActor(t, func(t *testing.T, actor *server) {
			var got ackAnswer
			actor.call(t, "emit", M{"nsp": "/", "event": "ackme", "args": []any{e.uniq("ack")}, "timeout": 5000}, &got)
			check(t, actor, got, false, func(*client) bool { return true })
		})
	})
	t.Run("to a room", func(t *testing.T) {
		e.forEachActor(t, func(t *testing.T, actor *server) {
			var got ackAnswer
			actor.call(t, "emit", M{"nsp": "/", "in": []any{f.roomA}, "event": "ackme", "args": []any{e.uniq("ack")}, "timeout": 5000}, &got)
			check(t, actor, got, false, func(c *client) bool { return f.inA[c] })
		})
	})
	t.Run("binary argument", func(t *testing.T) {
		e.forEachActor(t, func(t *testing.T, actor *server) {
			var got ackAnswer
			tag := e.uniq("ackbin")
			args := []any{tag, M{"$binary": "AQID"}}
			actor.call(t, "emit", M{"nsp": "/", "event": "ackme", "args": args, "timeout": 5000}, &got)
			check(t, actor, got, false, func(*client) bool { return true })
			st := e.states(t, f.cs)
			for _, c := range f.cs {
				for _, ev := range st[c.k].Events {
					if ev.Event == "ackme" && ev.Args[0] == tag && (!reflect.DeepEqual(ev.Args, roundTrip(args)) || !ev.Ack) {
						t.Errorf("%s: %s received %s (ack requested: %v), want %s with an ack", dir(actor, c.srv), c, jsonString(ev.Args), ev.Ack, jsonString(args))
					}
				}
			}
		})
	})
	// Node's BroadcastOperator keeps one response per client, the first
	// argument of its ack (undefined for an ack without arguments), and the
	// adapters forward only that across servers. A Go server must do the same
	// for its own clients, or the responses of one client count for several
	// and the emit completes before the others answered.
	t.Run("one response per client, its first argument", func(t *testing.T) {
		multi, empty := e.uniq("ackmulti"), e.uniq("ackempty")
		for _, c := range f.cs {
			e.setAck(t, c, multi, []any{ackReply(c), "second argument"})
			e.setAck(t, c, empty, []any{})
		}
		e.forEachActor(t, func(t *testing.T, actor *server) {
			var got ackAnswer
			actor.call(t, "emit", M{"nsp": "/", "event": multi, "args": []any{"x"}, "timeout": 1500}, &got)
			check(t, actor, got, false, func(*client) bool { return true })

			got = ackAnswer{}
			actor.call(t, "emit", M{"nsp": "/", "event": empty, "args": []any{"x"}, "timeout": 1500}, &got)
			if got.Err != nil || !reflect.DeepEqual(got.Acks, []any{nil, nil, nil, nil}) {
				t.Errorf("from %s (%s): acks without arguments gave err %v and responses %s, want no error and [null,null,null,null] (one undefined per client, as in Node)",
					actor.name, actor.lang, got.Err, jsonString(got.Acks))
			}
		})
	})

	// A client that never answers: the emitter gets the other acks and the
	// timeout error, once the timeout has passed.
	t.Run("a client does not answer", func(t *testing.T) {
		for i, actor := range e.servers {
			silent := f.cs[(i+1)%len(f.cs)]
			if silent.srv.lang == actor.lang {
				silent = f.cs[(i+2)%len(f.cs)]
			}
			t.Run(fmt.Sprintf("from %s, silent client on %s", actor.name, silent.srv.name), func(t *testing.T) {
				t.Parallel() // each waits for its timeout
				event := e.uniq("ackpartial")
				for _, c := range f.cs {
					if c == silent {
						e.setAck(t, c, event, nil)
					} else {
						e.setAck(t, c, event, []any{ackReply(c)})
					}
				}
				var got ackAnswer
				actor.call(t, "emit", M{"nsp": "/", "event": event, "args": []any{"x"}, "timeout": 500}, &got)
				check(t, actor, got, true, func(c *client) bool { return c != silent })
				if got.Err != "operation has timed out" {
					t.Errorf("from %s: err = %q, want %q", actor.name, got.Err, "operation has timed out")
				}
			})
		}
	})
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// fetchedSocket is an element of a fetchSockets answer, Go or Node shaped.
type fetchedSocket struct {
	ID        string `json:"id"`
	Handshake struct {
		Headers map[string]any `json:"headers"`
		Query   map[string]any `json:"query"`
		Address string         `json:"address"`
		Time    string         `json:"time"`
		Issued  float64        `json:"issued"`
		URL     string         `json:"url"`
		Auth    any            `json:"auth"`
	} `json:"handshake"`
	Rooms []any `json:"rooms"`
	Data  any   `json:"data"`
}

// single returns the value of a header or query parameter, which Node holds
// as a string and Go as a list of strings; header names are compared without
// case.
func single(m map[string]any, name string) (string, bool) {
	for k, v := range m {
		if !strings.EqualFold(k, name) {
			continue
		}
		switch t := v.(type) {
		case string:
			return t, true
		case []any:
			if len(t) == 1 {
				s, ok := t[0].(string)
				return s, ok
			}
		}
		return fmt.Sprint(v), false
	}
	return "", false
}

func dataOf(s *server) M {
	return M{"server": s.name, "lang": s.lang, "n": 3.0, "list": []any{1.0, "two", nil}, "nested": M{"ok": true}}
}

// testFetchSockets: fetchSockets from every server returns the sockets of
// all four with their id, rooms, data and handshake (headers, query, address,
// auth), each language reading the other's.
func testFetchSockets(t *testing.T, e *env) {
	room, other := e.uniq("fetch"), e.uniq("fetch-other")
	cs := e.connectOnePerServer(t, "/", func(s *server) clientSpec {
		return clientSpec{
			query:   map[string]string{"who": s.name},
			headers: map[string]string{"x-interop": "header of " + s.name},
			auth:    M{"token": "token of " + s.name},
		}
	})
	inOther := map[*client]bool{}
	for _, c := range cs {
		c.srv.call(t, "setData", M{"nsp": "/", "id": c.id, "data": dataOf(c.srv)}, nil)
		e.join(t, c, room)
		if c.srv.name == "go-0" || c.srv.name == "node-1" {
			inOther[c] = true
			e.join(t, c, other)
		}
	}
	fetch := func(t *testing.T, actor *server, body M) []fetchedSocket {
		t.Helper()
		var out struct {
			Err     any             `json:"err"`
			Sockets []fetchedSocket `json:"sockets"`
		}
		body["nsp"] = "/"
		actor.call(t, "fetchSockets", body, &out)
		if out.Err != nil {
			t.Fatalf("fetchSockets from %s (%s): %v", actor.name, actor.lang, out.Err)
		}
		return out.Sockets
	}
	// expect checks that the fetched sockets are exactly those of cs for
	// which want holds, with everything they carry.
	expect := func(t *testing.T, actor *server, got []fetchedSocket, want func(c *client) bool) {
		t.Helper()
		byID := map[string]fetchedSocket{}
		for _, s := range got {
			if _, dup := byID[s.ID]; dup {
				t.Errorf("from %s: socket %s returned twice", actor.name, s.ID)
			}
			byID[s.ID] = s
		}
		for _, c := range cs {
			s, ok := byID[c.id]
			delete(byID, c.id)
			d := dir(actor, c.srv)
			if !want(c) {
				if ok {
					t.Errorf("%s: fetchSockets returned %s, which does not match", d, c)
				}
				continue
			}
			if !ok {
				t.Errorf("%s: fetchSockets did not return %s (socket %s)", d, c, c.id)
				continue
			}
			wantRooms := []string{c.id, room}
			if inOther[c] {
				wantRooms = append(wantRooms, other)
			}
			sort.Strings(wantRooms)
			gotRooms := make([]string, len(s.Rooms))
			for i, r := range s.Rooms {
				gotRooms[i] = fmt.Sprint(r)
			}
			sort.Strings(gotRooms)
			if !reflect.DeepEqual(gotRooms, wantRooms) {
				t.Errorf("%s: rooms of %s = %v, want %v", d, c, gotRooms, wantRooms)
			}
			if want := roundTrip(dataOf(c.srv)); !reflect.DeepEqual(s.Data, want) {
				t.Errorf("%s: data of %s = %s, want %s", d, c, jsonString(s.Data), jsonString(want))
			}
			h := s.Handshake
			if v, _ := single(h.Headers, "x-interop"); v != "header of "+c.srv.name {
				t.Errorf("%s: handshake header x-interop of %s = %q, want %q (headers %s)", d, c, v, "header of "+c.srv.name, jsonString(h.Headers))
			}
			if v, _ := single(h.Query, "who"); v != c.srv.name {
				t.Errorf("%s: handshake query who of %s = %q, want %q (query %s)", d, c, v, c.srv.name, jsonString(h.Query))
			}
			if v, _ := single(h.Query, "EIO"); v != "4" {
				t.Errorf("%s: handshake query EIO of %s = %q, want 4", d, c, v)
			}
			if !strings.Contains(h.Address, "127.0.0.1") {
				t.Errorf("%s: handshake address of %s = %q, want the loopback address", d, c, h.Address)
			}
			if want := (M{"token": "token of " + c.srv.name}); !reflect.DeepEqual(h.Auth, roundTrip(want)) {
				t.Errorf("%s: handshake auth of %s = %s, want %s", d, c, jsonString(h.Auth), jsonString(want))
			}
			if h.Time == "" || h.Issued <= 0 || !strings.Contains(h.URL, "who=") {
				t.Errorf("%s: handshake of %s: time %q, issued %v, url %q", d, c, h.Time, h.Issued, h.URL)
			}
		}
		for id := range byID {
			t.Errorf("from %s: fetchSockets returned unknown socket %s", actor.name, id)
		}
	}
	t.Run("in a room", func(t *testing.T) {
		e.forEachActor(t, func(t *testing.T, actor *server) {
			expect(t, actor, fetch(t, actor, M{"in": []any{room}}), func(*client) bool { return true })
		})
	})
	t.Run("in a room except a room", func(t *testing.T) {
		e.forEachActor(t, func(t *testing.T, actor *server) {
			expect(t, actor, fetch(t, actor, M{"in": []any{room}, "except": []any{other}}), func(c *client) bool { return !inOther[c] })
		})
	})
	t.Run("by socket id", func(t *testing.T) {
		e.forEachActor(t, func(t *testing.T, actor *server) {
			for _, target := range cs {
				expect(t, actor, fetch(t, actor, M{"in": []any{target.id}}), func(c *client) bool { return c == target })
			}
		})
	})
	t.Run("local", func(t *testing.T) {
		e.forEachActor(t, func(t *testing.T, actor *server) {
			expect(t, actor, fetch(t, actor, M{"in": []any{room}, "local": true}), func(c *client) bool { return c.srv == actor })
		})
	})
}

// roomMembers returns, for each client of cs, whether its server says it is
// in room.
func (e *env) roomMembers(t *testing.T, cs []*client, room string) map[*client]bool {
	t.Helper()
	out := map[*client]bool{}
	local := map[*server]map[string]localSocket{}
	for _, c := range cs {
		if local[c.srv] == nil {
			local[c.srv] = c.srv.localSockets(t, c.nsp)
		}
		for _, r := range local[c.srv][c.id].Rooms {
			if fmt.Sprint(r) == room {
				out[c] = true
			}
		}
	}
	return out
}

// expectMembers waits until exactly the clients for which want holds are in
// room, on their own servers.
func (e *env) expectMembers(t *testing.T, actor *server, cs []*client, room string, want func(c *client) bool) {
	t.Helper()
	var last map[*client]bool
	waitUntil(t, "room "+room+" membership", func() (bool, string) {
		last = e.roomMembers(t, cs, room)
		for _, c := range cs {
			if last[c] != want(c) {
				return false, fmt.Sprintf("%s: %s in room %s: %v, want %v", dir(actor, c.srv), c, room, last[c], want(c))
			}
		}
		return true, ""
	})
}

// testSocketsJoinLeave: socketsJoin and socketsLeave with in/except
// selectors reach the matching sockets of every server and only those.
func testSocketsJoinLeave(t *testing.T, e *env) {
	f := e.newRoomFixture(t)
	e.forEachActor(t, func(t *testing.T, actor *server) {
		x, y := e.uniq("joinX"), e.uniq("joinY")
		actor.call(t, "socketsJoin", M{"nsp": "/", "in": []any{f.roomA}, "rooms": []any{x}}, nil)
		actor.call(t, "socketsJoin", M{"nsp": "/", "except": []any{f.roomA}, "rooms": []any{y}}, nil)
		e.settle(t, actor, "/", nil)
		e.expectMembers(t, actor, f.cs, x, func(c *client) bool { return f.inA[c] })
		e.expectMembers(t, actor, f.cs, y, func(c *client) bool { return !f.inA[c] })

		actor.call(t, "socketsLeave", M{"nsp": "/", "in": []any{f.roomB}, "rooms": []any{x, y}}, nil)
		e.settle(t, actor, "/", nil)
		e.expectMembers(t, actor, f.cs, x, func(c *client) bool { return f.inA[c] && !f.inB[c] })
		e.expectMembers(t, actor, f.cs, y, func(c *client) bool { return !f.inA[c] && !f.inB[c] })

		// The rooms joined through another server work for broadcasts from
		// every server.
		for _, from := range e.servers {
			tagX, tagY := e.uniq("x"), e.uniq("y")
			from.call(t, "emit", M{"nsp": "/", "in": []any{x}, "event": "joined", "args": []any{tagX}}, nil)
			from.call(t, "emit", M{"nsp": "/", "in": []any{y}, "event": "joined", "args": []any{tagY}}, nil)
			e.fence(t, f.cs)
			st := e.states(t, f.cs)
			for _, c := range f.cs {
				if got, want := count(st[c.k], "joined", tagX), b2i(f.inA[c] && !f.inB[c]); got != want {
					t.Errorf("%s then broadcast %s: %s received the broadcast to the joined room %d times, want %d", dir(actor, c.srv), dir(from, c.srv), c, got, want)
				}
				if got, want := count(st[c.k], "joined", tagY), b2i(!f.inA[c] && !f.inB[c]); got != want {
					t.Errorf("%s then broadcast %s: %s received the broadcast to the joined room %d times, want %d", dir(actor, c.srv), dir(from, c.srv), c, got, want)
				}
			}
		}
	})
}

// testDisconnectSockets: disconnectSockets with selectors disconnects the
// matching clients of every server, and only those.
func testDisconnectSockets(t *testing.T, e *env) {
	for _, closeConn := range []bool{false, true} {
		t.Run(fmt.Sprintf("close=%v", closeConn), func(t *testing.T) {
			e.forEachActor(t, func(t *testing.T, actor *server) {
				f := e.newRoomFixture(t)
				body := M{"nsp": "/", "in": []any{f.roomA}, "close": closeConn}
				target := func(c *client) bool { return f.inA[c] }
				if closeConn {
					body = M{"nsp": "/", "except": []any{f.roomA}, "close": closeConn}
					target = func(c *client) bool { return !f.inA[c] }
				}
				actor.call(t, "disconnectSockets", body, nil)
				var kept []*client
				for _, c := range f.cs {
					if !target(c) {
						kept = append(kept, c)
					}
				}
				e.settle(t, actor, "/", kept)
				waitUntil(t, "disconnections", func() (bool, string) {
					st := e.states(t, f.cs)
					for _, c := range f.cs {
						s := st[c.k]
						if target(c) && len(s.Disconnects) == 0 {
							return false, fmt.Sprintf("%s: %s not disconnected", dir(actor, c.srv), c)
						}
					}
					return true, ""
				})
				st := e.states(t, f.cs)
				for _, c := range f.cs {
					s := st[c.k]
					d := dir(actor, c.srv)
					if !target(c) {
						if len(s.Disconnects) != 0 || !s.Connected {
							t.Errorf("%s: %s, which does not match, was disconnected: %v", d, c, s.Disconnects)
						}
						continue
					}
					if len(s.Disconnects) != 1 {
						t.Errorf("%s: %s disconnected %d times (%v), want once", d, c, len(s.Disconnects), s.Disconnects)
						continue
					}
					reason := s.Disconnects[0]
					switch {
					case !closeConn && reason != "io server disconnect":
						t.Errorf("%s: %s disconnected with reason %q, want %q", d, c, reason, "io server disconnect")
					case closeConn && reason != "io server disconnect" && reason != "transport close":
						t.Errorf("%s: %s disconnected with reason %q, want the connection closed", d, c, reason)
					}
					if _, still := c.srv.localSockets(t, "/")[c.id]; still {
						t.Errorf("%s: %s still has socket %s of %s", d, c.srv.name, c.id, c)
					}
				}
				t.Logf("disconnect reasons: %v", reasons(f.cs, st))
			})
		})
	}
}

func reasons(cs []*client, st map[string]clientState) string {
	var parts []string
	for _, c := range cs {
		if r := st[c.k].Disconnects; len(r) > 0 {
			parts = append(parts, fmt.Sprintf("%s: %v", c.srv.name, r))
		}
	}
	return strings.Join(parts, ", ")
}

// sseReply gives every server's listener a reply of a different JSON shape.
func sseReply(s *server) any {
	switch s.name {
	case "go-0":
		return "reply of go-0"
	case "go-1":
		return M{"from": "go-1", "n": 2.0}
	case "node-0":
		return []any{1.0, "node-0", nil}
	default:
		return M{"from": "node-1", "nested": M{"ok": true, "list": []any{false}}}
	}
}

type serverEventsAnswer struct {
	Events []struct {
		Args []any `json:"args"`
		Ack  bool  `json:"ack"`
	} `json:"events"`
}

// testServerSideEmit: serverSideEmit reaches every other server once and
// never the sender, with or without an acknowledgement, and the ack values
// cross languages.
func testServerSideEmit(t *testing.T, e *env) {
	events := func(t *testing.T, s *server, nsp, event string) serverEventsAnswer {
		t.Helper()
		var out serverEventsAnswer
		s.call(t, "serverEvents", M{"nsp": nsp, "event": event}, &out)
		return out
	}
	// received waits until every server but actor has the event, settles,
	// then checks each got it exactly once with args and actor never did.
	received := func(t *testing.T, actor *server, nsp, event string, args []any, ack bool) {
		t.Helper()
		waitUntil(t, "server-side event "+event, func() (bool, string) {
			for _, s := range e.servers {
				if s != actor && len(events(t, s, nsp, event).Events) == 0 {
					return false, fmt.Sprintf("%s: no %q on %s", dir(actor, s), event, s.name)
				}
			}
			return true, ""
		})
		e.settle(t, actor, nsp, nil)
		for _, s := range e.servers {
			got := events(t, s, nsp, event).Events
			if s == actor {
				if len(got) != 0 {
					t.Errorf("%s: the sender received its own server-side event %d times", dir(actor, s), len(got))
				}
				continue
			}
			if len(got) != 1 {
				t.Errorf("%s: received %q %d times, want once", dir(actor, s), event, len(got))
				continue
			}
			if !reflect.DeepEqual(got[0].Args, roundTrip(args)) || got[0].Ack != ack {
				t.Errorf("%s: received args %s (ack %v), want %s (ack %v)", dir(actor, s), jsonString(got[0].Args), got[0].Ack, jsonString(args), ack)
			}
		}
	}
	for _, nsp := range e.namespaces {
		t.Run(nsp, func(t *testing.T) {
			t.Run("without ack", func(t *testing.T) {
				e.forEachActor(t, func(t *testing.T, actor *server) {
					event := e.uniq("sse")
					for _, s := range e.servers {
						s.call(t, "listen", M{"nsp": nsp, "event": event}, nil)
					}
					args := []any{"hello", 1.0, M{"k": "v", "list": []any{1.0, "x", nil}}}
					actor.call(t, "serverSideEmit", M{"nsp": nsp, "event": event, "args": args}, nil)
					received(t, actor, nsp, event, args, false)
				})
			})
			t.Run("with ack", func(t *testing.T) {
				e.forEachActor(t, func(t *testing.T, actor *server) {
					event := e.uniq("sseack")
					for _, s := range e.servers {
						s.call(t, "listen", M{"nsp": nsp, "event": event, "reply": sseReply(s)}, nil)
					}
					args := []any{"ping", M{"from": actor.name}}
					var out struct {
						Err       any   `json:"err"`
						Responses []any `json:"responses"`
					}
					actor.call(t, "serverSideEmit", M{"nsp": nsp, "event": event, "args": args, "ack": true}, &out)
					if out.Err != nil {
						t.Errorf("from %s (%s): err = %v", actor.name, actor.lang, out.Err)
					}
					remaining := multiset(out.Responses)
					for _, s := range e.servers {
						if s == actor {
							continue
						}
						want := jsonString(roundTrip(sseReply(s)))
						i := indexOf(remaining, want)
						if i < 0 {
							t.Errorf("%s: ack value %s missing from the responses %s", dir(s, actor), want, jsonString(out.Responses))
							continue
						}
						remaining = append(remaining[:i], remaining[i+1:]...)
					}
					if len(remaining) > 0 {
						t.Errorf("from %s: unexpected responses %v", actor.name, remaining)
					}
					received(t, actor, nsp, event, args, true)
				})
			})
		})
	}
	// One server does not answer: the sender gets the others' values and
	// Node's timeout error after requestsTimeout.
	t.Run("a server does not answer", func(t *testing.T) {
		for i, actor := range e.servers {
			silent := e.servers[(i+2)%len(e.servers)] // the other language
			t.Run(fmt.Sprintf("from %s, silent %s", actor.name, silent.name), func(t *testing.T) {
				t.Parallel() // each waits for requestsTimeout
				event := e.uniq("ssesilent")
				for _, s := range e.servers {
					body := M{"nsp": "/", "event": event, "reply": sseReply(s)}
					if s == silent {
						delete(body, "reply")
					}
					s.call(t, "listen", body, nil)
				}
				var out struct {
					Err       any   `json:"err"`
					Responses []any `json:"responses"`
				}
				actor.call(t, "serverSideEmit", M{"nsp": "/", "event": event, "args": []any{"ping"}, "ack": true}, &out)
				if want := "timeout reached: only 2 responses received out of 3"; out.Err != want {
					t.Errorf("from %s (%s): err = %v, want %q", actor.name, actor.lang, out.Err, want)
				}
				var want []any
				for _, s := range e.servers {
					if s != actor && s != silent {
						want = append(want, sseReply(s))
					}
				}
				if got, w := multiset(out.Responses), multiset(want); !reflect.DeepEqual(got, w) {
					t.Errorf("from %s (%s): responses %v, want %v", actor.name, actor.lang, got, w)
				}
			})
		}
	})
}

// testAllRooms: the union of the rooms of every server, from every server
// (Node's adapter.allRooms(), redisadapter's Adapter.AllRooms). In a streams
// cluster only the Go servers have it (built on fetchSockets there), and it
// lists the rooms of the Node servers' sockets too.
func testAllRooms(t *testing.T, e *env) {
	f := e.newRoomFixture(t)
	e.forEachActor(t, func(t *testing.T, actor *server) {
		var out struct {
			Err   any   `json:"err"`
			Rooms []any `json:"rooms"`
		}
		actor.call(t, "allRooms", M{"nsp": "/"}, &out)
		if e.spec.noAllRooms != nil && e.spec.noAllRooms(actor) {
			// Node's streams adapter (socket.io-adapter's ClusterAdapter)
			// has no allRooms(): the control API reports the TypeError.
			if s, _ := out.Err.(string); !strings.Contains(s, "allRooms is not a function") {
				t.Errorf("from %s (%s): err = %v, want the adapter to have no allRooms", actor.name, actor.lang, out.Err)
			}
			return
		}
		if out.Err != nil {
			t.Fatalf("from %s (%s): err = %v", actor.name, actor.lang, out.Err)
		}
		got := map[string]int{}
		for _, r := range out.Rooms {
			got[fmt.Sprint(r)]++
		}
		for _, c := range f.cs {
			want := []string{c.id}
			if f.inA[c] {
				want = append(want, f.roomA)
			}
			if f.inB[c] {
				want = append(want, f.roomB)
			}
			for _, r := range want {
				if got[r] != 1 {
					t.Errorf("%s: room %s of %s listed %d times, want once", dir(c.srv, actor), r, c, got[r])
				}
			}
		}
	})
}
