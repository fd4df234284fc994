//go:build interop

package interop

import (
	"reflect"
	"testing"
	"time"
)

// testServerCount: every server counts the four servers of the cluster, in
// both namespaces.
func testServerCount(t *testing.T, e *env) {
	for _, s := range e.servers {
		for _, nsp := range e.namespaces {
			var out struct {
				Count int `json:"count"`
			}
			s.call(t, "serverCount", M{"nsp": nsp}, &out)
			if out.Count != len(e.servers) {
				t.Errorf("%s server %s: serverCount of %s = %d, want %d", s.lang, s.name, nsp, out.Count, len(e.servers))
			}
		}
	}
}

// roomFixture is one client per server on "/", with two rooms:
// roomA = {go-1, node-0}, roomB = {node-0, node-1}.
type roomFixture struct {
	cs           []*client
	roomA, roomB string
	inA, inB     map[*client]bool
}

func (e *env) newRoomFixture(t *testing.T) *roomFixture {
	t.Helper()
	f := &roomFixture{cs: e.connectOnePerServer(t, "/", nil), roomA: e.uniq("roomA"), roomB: e.uniq("roomB"),
		inA: map[*client]bool{}, inB: map[*client]bool{}}
	for _, c := range f.cs {
		switch c.srv.name {
		case "go-1":
			f.inA[c] = true
		case "node-0":
			f.inA[c], f.inB[c] = true, true
		case "node-1":
			f.inB[c] = true
		}
		var rooms []any
		if f.inA[c] {
			rooms = append(rooms, f.roomA)
		}
		if f.inB[c] {
			rooms = append(rooms, f.roomB)
		}
		if len(rooms) > 0 {
			e.join(t, c, rooms...)
		}
	}
	return f
}

// expectDelivery checks, after a fence, that every client of cs received the
// event tagged tag exactly want(c) times.
func (e *env) expectDelivery(t *testing.T, actor *server, cs []*client, event, tag string, want func(c *client) int) {
	t.Helper()
	e.fence(t, cs)
	st := e.states(t, cs)
	for _, c := range cs {
		if got, w := count(st[c.k], event, tag), want(c); got != w {
			t.Errorf("%s: %s received %q %d times, want %d", dir(actor, c.srv), c, event, got, w)
		}
	}
}

func testBroadcast(t *testing.T, e *env) {
	f := e.newRoomFixture(t)
	cases := []struct {
		name string
		opts func(actor *server) M
		want func(actor *server, c *client) int
	}{
		{"to all", func(*server) M { return M{} }, func(_ *server, c *client) int { return 1 }},
		{"to one room", func(*server) M { return M{"in": []any{f.roomA}} }, func(_ *server, c *client) int { return b2i(f.inA[c]) }},
		{"to two rooms, once to a member of both", func(*server) M { return M{"in": []any{f.roomA, f.roomB}} },
			func(_ *server, c *client) int { return b2i(f.inA[c] || f.inB[c]) }},
		{"except a room", func(*server) M { return M{"except": []any{f.roomA}} }, func(_ *server, c *client) int { return b2i(!f.inA[c]) }},
		{"to a room except a room", func(*server) M { return M{"in": []any{f.roomB}, "except": []any{f.roomA}} },
			func(_ *server, c *client) int { return b2i(f.inB[c] && !f.inA[c]) }},
		{"local", func(*server) M { return M{"local": true} }, func(actor *server, c *client) int { return b2i(c.srv == actor) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.forEachActor(t, func(t *testing.T, actor *server) {
				tag := e.uniq("bc")
				body := tc.opts(actor)
				body["nsp"], body["event"], body["args"] = "/", "bc", []any{tag, 1, "two", M{"three": []any{3.5, true, nil}}}
				actor.call(t, "emit", body, nil)
				e.expectDelivery(t, actor, f.cs, "bc", tag, func(c *client) int { return tc.want(actor, c) })
				// Arguments arrive intact (with the stream offset when the
				// cluster recovers, but for a local broadcast).
				e.expectArgs(t, actor, f.cs, "bc", body["args"].([]any), body["local"] != true)
			})
		})
	}

	// One emit to the private room of each socket, from every server: each
	// client gets its own message only.
	t.Run("to a socket id", func(t *testing.T) {
		e.forEachActor(t, func(t *testing.T, actor *server) {
			tags := map[*client]string{}
			for _, target := range f.cs {
				tags[target] = e.uniq("private")
				actor.call(t, "emit", M{"nsp": "/", "in": []any{target.id}, "event": "private", "args": []any{tags[target]}}, nil)
			}
			e.fence(t, f.cs)
			st := e.states(t, f.cs)
			for _, c := range f.cs {
				for target, tag := range tags {
					if got, want := count(st[c.k], "private", tag), b2i(c == target); got != want {
						t.Errorf("%s: %s received the message to socket %s (of %s) %d times, want %d",
							dir(actor, c.srv), c, target.id, target.srv.name, got, want)
					}
				}
			}
		})
	})

	t.Run("binary", func(t *testing.T) {
		e.forEachActor(t, func(t *testing.T, actor *server) {
			tag := e.uniq("bin")
			args := []any{tag, M{"$binary": "AAECA/+A"}, M{"nested": M{"$binary": "aGVsbG8="}, "list": []any{M{"$binary": ""}, 7}}}
			actor.call(t, "emit", M{"nsp": "/", "event": "bin", "args": args}, nil)
			e.expectDelivery(t, actor, f.cs, "bin", tag, func(*client) int { return 1 })
			e.expectArgs(t, actor, f.cs, "bin", args, true) // binary as Node Buffers
		})
	})

	// Room names that mean something in channel names or Redis patterns:
	// a single room goes to the channel key#nsp#room#, which every server's
	// pattern must match and parse back.
	t.Run("room names with separators and glob characters", func(t *testing.T) {
		names := []string{"a#b", "x*y?[z]\\", "é 房间", "#", "trailing#"}
		rooms := map[string]string{}
		for _, n := range names {
			rooms[n] = n + e.uniq("")
		}
		members := map[*client]bool{}
		for _, c := range f.cs {
			if c.srv.name == "go-1" || c.srv.name == "node-1" {
				members[c] = true
				for _, r := range rooms {
					e.join(t, c, r)
				}
			}
		}
		e.forEachActor(t, func(t *testing.T, actor *server) {
			tags := map[string]string{}
			for n, r := range rooms {
				tags[n] = e.uniq("special")
				actor.call(t, "emit", M{"nsp": "/", "in": []any{r}, "event": "special", "args": []any{tags[n]}}, nil)
			}
			e.fence(t, f.cs)
			st := e.states(t, f.cs)
			for _, c := range f.cs {
				for n, tag := range tags {
					if got, want := count(st[c.k], "special", tag), b2i(members[c]); got != want {
						t.Errorf("%s: %s received the broadcast to room %q %d times, want %d", dir(actor, c.srv), c, n, got, want)
					}
				}
			}
		})
	})

	// Node's io.to(123): a numeric room. Go servers hold it as "123".
	t.Run("numeric room from Node", func(t *testing.T) {
		room := 100000 + int(e.seq.Add(1))
		members := map[*client]bool{}
		for _, c := range f.cs {
			if c.srv.name == "go-0" || c.srv.name == "node-1" {
				members[c] = true
				e.join(t, c, room) // a number: Node keeps it as one
			}
		}
		for _, actor := range e.servers {
			if actor.lang != "Node" {
				continue
			}
			t.Run("from "+actor.name, func(t *testing.T) {
				tag := e.uniq("num")
				actor.call(t, "emit", M{"nsp": "/", "in": []any{room}, "event": "num", "args": []any{tag}}, nil)
				e.expectDelivery(t, actor, f.cs, "num", tag, func(c *client) int { return b2i(members[c]) })
			})
		}
	})
}

// testBroadcastDate: a Date (msgpack timestamp) crossing Redis keeps its
// instant, and the clients of the servers of one language receive the same
// text for it whichever server sent it. (Node's clients receive JavaScript's
// Date.toJSON text, Go's clients Go's time.Time JSON text: the two languages
// format differently, but each must be consistent.) Where a Date crosses
// Redis as JSON text (streams entries without binary), the clients of every
// server but the sender's receive the text Node writes, Date.toJSON.
func testBroadcastDate(t *testing.T, e *env) {
	cs := e.connectOnePerServer(t, "/", nil)
	dates := []string{"2000-06-13T00:00:00Z", "2021-01-02T03:04:05.678Z"}
	// texts[receiver language][i] = the texts received for dates[i], with
	// the direction that produced each.
	texts := map[string][]map[string][]string{}
	for _, actor := range e.servers {
		tag := e.uniq("date")
		args := []any{tag}
		for _, d := range dates {
			args = append(args, M{"$date": d})
		}
		actor.call(t, "emit", M{"nsp": "/", "event": "date", "args": args}, nil)
		e.fence(t, cs)
		st := e.states(t, cs)
		for _, c := range cs {
			if count(st[c.k], "date", tag) != 1 {
				t.Errorf("%s: %s did not receive the dates once", dir(actor, c.srv), c)
				continue
			}
			for _, ev := range st[c.k].Events {
				if ev.Event != "date" || ev.Args[0] != tag {
					continue
				}
				if texts[c.srv.lang] == nil {
					texts[c.srv.lang] = make([]map[string][]string, len(dates))
				}
				for i, d := range dates {
					text, _ := ev.Args[1+i].(string)
					want, _ := time.Parse(time.RFC3339Nano, d)
					if got, err := time.Parse(time.RFC3339Nano, text); err != nil || !got.Equal(want) {
						t.Errorf("%s: %s received %q for the date %s", dir(actor, c.srv), c, text, d)
					}
					if e.spec.datesAsText {
						// The wire carries the text: the other servers'
						// clients get Node's, the sender's its server's own.
						if js := want.UTC().Format("2006-01-02T15:04:05.000Z"); c.srv != actor && text != js {
							t.Errorf("%s: %s received %q for the date %s, want JavaScript's %q", dir(actor, c.srv), c, text, d, js)
						}
						continue
					}
					if texts[c.srv.lang][i] == nil {
						texts[c.srv.lang][i] = map[string][]string{}
					}
					texts[c.srv.lang][i][text] = append(texts[c.srv.lang][i][text], dir(actor, c.srv))
				}
			}
		}
	}
	for lang, perDate := range texts {
		for i, byText := range perDate {
			if len(byText) > 1 {
				t.Errorf("clients of %s servers received the date %s as different texts, depending on the direction: %v", lang, dates[i], byText)
			}
		}
	}
}

// testBroadcastNamespace: a broadcast in "/custom" reaches the "/custom"
// clients of every server and none of the "/" clients, and the reverse.
func testBroadcastNamespace(t *testing.T, e *env) {
	custom := e.connectOnePerServer(t, "/custom", nil)
	root := e.connectOnePerServer(t, "/", nil)
	both := append(append([]*client{}, custom...), root...)
	e.forEachActor(t, func(t *testing.T, actor *server) {
		tagC, tagR := e.uniq("custom"), e.uniq("root")
		actor.call(t, "emit", M{"nsp": "/custom", "event": "ns", "args": []any{tagC}}, nil)
		actor.call(t, "emit", M{"nsp": "/", "event": "ns", "args": []any{tagR}}, nil)
		e.fence(t, both)
		st := e.states(t, both)
		for _, c := range both {
			for _, x := range []struct {
				tag, nsp string
			}{{tagC, "/custom"}, {tagR, "/"}} {
				if got, want := count(st[c.k], "ns", x.tag), b2i(c.nsp == x.nsp); got != want {
					t.Errorf("%s: %s received the broadcast to %s %d times, want %d", dir(actor, c.srv), c, x.nsp, got, want)
				}
			}
		}
	})
}

// expectArgs checks the arguments of every event of cs named event whose first
// argument is args[0]: they are args, followed, when the cluster recovers
// state and the broadcast is recoverable (recoverable), by its stream offset,
// the same one on every client (the sender stamps the entry id its XADD
// returned, the other servers the id they read).
func (e *env) expectArgs(t *testing.T, actor *server, cs []*client, event string, args []any, recoverable bool) {
	t.Helper()
	want := roundTrip(args)
	offsets := map[string][]string{}
	st := e.states(t, cs)
	for _, c := range cs {
		for _, ev := range st[c.k].Events {
			if ev.Event != event || len(ev.Args) == 0 || ev.Args[0] != args[0] {
				continue
			}
			got, off := e.payload(ev)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: %s received args %s, want %s", dir(actor, c.srv), c, jsonString(ev.Args), jsonString(want))
			}
			if e.spec.offsets && (off != "") != recoverable {
				t.Errorf("%s: %s received args %s: stream offset present %v, want %v", dir(actor, c.srv), c, jsonString(ev.Args), off != "", recoverable)
			}
			if off != "" {
				offsets[off] = append(offsets[off], c.srv.name)
			}
		}
	}
	if len(offsets) > 1 {
		t.Errorf("from %s (%s): one broadcast arrived with different offsets: %v", actor.name, actor.lang, offsets)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
