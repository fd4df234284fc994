//go:build interop

package interop

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter"
	"github.com/redis/go-redis/v9"
)

// The sharded interop suite: two Go servers on redisadapter.NewSharded and two
// Node servers on the official createShardedAdapter (sharded-server.js: server.js
// with the sharded adapter, node-redis 4.7 with pubClient.duplicate()), on a
// redis-server 7 of their own, in each subscription mode. Every operation runs
// from every server, so each direction (Go→Go, Go→Node, Node→Go, Node→Node) is
// covered. Private messages to Go sockets matter most: Go socket ids have 24
// characters, so in dynamic mode Node publishes them on the socket's room
// channel, which only a Go server that subscribes to its own socket ids hears.

// waitRoomChannel waits until n servers subscribe to the channel of room on
// "/" (Node's subscriptions after a join are asynchronous).
func (e *env) waitRoomChannel(t *testing.T, room string, n int) {
	t.Helper()
	ch := e.key + "#/#" + room + "#"
	waitUntil(t, "subscriptions of "+ch, func() (bool, string) {
		got := e.shardNumSub(ch)
		return got == int64(n), fmt.Sprintf("SHARDNUMSUB %s = %d, want %d", ch, got, n)
	})
}

// roomSubscribers is how many servers subscribe to the channel of a room
// held by servers holders, in a mode.
func roomSubscribers(mode string, holders int) int {
	if mode == "static" {
		return 0
	}
	return holders
}

func TestSharded(t *testing.T) {
	for _, mode := range []string{"dynamic", "static", "dynamic-private"} {
		t.Run(mode, func(t *testing.T) {
			testShardedInterop(t, startCluster(t, shardedSpec(mode, false)), mode)
		})
	}
}

// shardedSpec is the sharded cluster in one subscription mode, on a
// redis-server or on a Redis Cluster.
func shardedSpec(mode string, redisCluster bool) clusterSpec {
	suite := "sharded (" + mode + ")"
	if redisCluster {
		suite += " on a Redis Cluster"
	}
	return clusterSpec{
		suite:        suite,
		redisCluster: redisCluster,
		goAdapter: func(rdb redis.UniversalClient, key string) *redisadapter.Builder {
			return redisadapter.NewSharded(rdb, &redisadapter.ShardedOptions{
				Options:          redisadapter.Options{Key: key, RequestsTimeout: 5 * time.Second}, // Node's fixed value
				SubscriptionMode: redisadapter.SubscriptionMode(mode),
			})
		},
		nodeScript: "sharded-server.js",
		nodeEnv:    func(*env) []string { return []string{"SUBSCRIPTION_MODE=" + mode} },
		ready:      numSubReady(func(e *env, nsp string) string { return e.key + "#" + nsp + "#" }, true),
	}
}

func testShardedInterop(t *testing.T, e *env, mode string) {
	t.Run("serverCount", func(t *testing.T) {
		for _, s := range e.servers {
			for _, nsp := range e.namespaces {
				var out struct {
					Count int `json:"count"`
				}
				s.call(t, "serverCount", M{"nsp": nsp}, &out)
				if out.Count != len(e.servers) {
					t.Errorf("%s: serverCount of %s = %d, want %d", s.name, nsp, out.Count, len(e.servers))
				}
			}
		}
	})

	f := e.newRoomFixture(t)
	e.waitRoomChannel(t, f.roomA, roomSubscribers(mode, 2))
	e.waitRoomChannel(t, f.roomB, roomSubscribers(mode, 2))

	// Own-id channels: Go sockets (24 characters) are subscribed in both
	// dynamic modes, Node sockets (20 characters) only in dynamic-private.
	t.Run("socket-id subscriptions", func(t *testing.T) {
		for _, c := range f.cs {
			want := 0
			switch {
			case mode == "dynamic-private":
				want = 1
			case mode == "dynamic" && len(c.id) != 20:
				want = 1
			}
			e.waitRoomChannel(t, c.id, want)
			t.Logf("%s: socket id of %d characters, %d subscriber(s) on its channel", c, len(c.id), want)
		}
	})

	t.Run("broadcasts", func(t *testing.T) {
		cases := []struct {
			name string
			opts M
			want func(actor *server, c *client) int
		}{
			{"to all", M{}, func(_ *server, c *client) int { return 1 }},
			{"to one room", M{"in": []any{f.roomA}}, func(_ *server, c *client) int { return b2i(f.inA[c]) }},
			{"to two rooms", M{"in": []any{f.roomA, f.roomB}}, func(_ *server, c *client) int { return b2i(f.inA[c] || f.inB[c]) }},
			{"except a room", M{"except": []any{f.roomA}}, func(_ *server, c *client) int { return b2i(!f.inA[c]) }},
			{"to a room except a room", M{"in": []any{f.roomB}, "except": []any{f.roomA}}, func(_ *server, c *client) int { return b2i(f.inB[c] && !f.inA[c]) }},
			{"local", M{"local": true}, func(actor *server, c *client) int { return b2i(c.srv == actor) }},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e.forEachActor(t, func(t *testing.T, actor *server) {
					tag := e.uniq("bc")
					body := M{"nsp": "/", "event": "bc", "args": []any{tag, 1, "two", M{"three": []any{3.5, true, nil}}}}
					for k, v := range tc.opts {
						body[k] = v
					}
					actor.call(t, "emit", body, nil)
					e.expectDelivery(t, actor, f.cs, "bc", tag, func(c *client) int { return tc.want(actor, c) })
				})
			})
		}
	})

	t.Run("private messages to every socket id", func(t *testing.T) {
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
						t.Errorf("%s: %s received the message to socket %s (%d characters, of %s) %d times, want %d",
							dir(actor, c.srv), c, target.id, len(target.id), target.srv.name, got, want)
					}
				}
			}
		})
	})

	t.Run("binary", func(t *testing.T) {
		e.forEachActor(t, func(t *testing.T, actor *server) {
			tag := e.uniq("bin")
			args := []any{tag, M{"$binary": "AAECA/+A"}, M{"nested": M{"$binary": "aGVsbG8="}}}
			for _, in := range [][]any{nil, {f.roomB}} {
				body := M{"nsp": "/", "event": "bin", "args": args}
				if in != nil {
					body["in"] = in
				}
				actor.call(t, "emit", body, nil)
			}
			e.expectDelivery(t, actor, f.cs, "bin", tag, func(c *client) int { return 1 + b2i(f.inB[c]) })
			st := e.states(t, f.cs)
			for _, c := range f.cs {
				for _, ev := range st[c.k].Events {
					if ev.Event == "bin" && ev.Args[0] == tag && !reflect.DeepEqual(ev.Args, roundTrip(args)) {
						t.Errorf("%s: %s received %s, want %s", dir(actor, c.srv), c, jsonString(ev.Args), jsonString(args))
					}
				}
			}
		})
	})

	t.Run("broadcast with acks", func(t *testing.T) {
		for _, c := range f.cs {
			e.setAck(t, c, "ackme", []any{ackReply(c)})
		}
		type ackAnswer struct {
			Err  any   `json:"err"`
			Acks []any `json:"acks"`
		}
		e.forEachActor(t, func(t *testing.T, actor *server) {
			for _, in := range [][]any{nil, {f.roomA}} {
				var got ackAnswer
				body := M{"nsp": "/", "event": "ackme", "args": []any{e.uniq("ack"), M{"$binary": "AQID"}}, "timeout": 5000}
				from := func(*client) bool { return true }
				if in != nil {
					body["in"] = in
					from = func(c *client) bool { return f.inA[c] }
				}
				actor.call(t, "emit", body, &got)
				var want []any
				for _, c := range f.cs {
					if from(c) {
						want = append(want, ackReply(c))
					}
				}
				if got.Err != nil || !reflect.DeepEqual(multiset(got.Acks), multiset(want)) {
					t.Errorf("from %s (in %v): err %v, acks %v, want %v", actor.name, in, got.Err, multiset(got.Acks), multiset(want))
				}
			}
		})
	})

	t.Run("fetchSockets", func(t *testing.T) {
		for _, c := range f.cs {
			c.srv.call(t, "setData", M{"nsp": "/", "id": c.id, "data": M{"owner": c.srv.name, "blob": M{"$binary": "/wA="}}}, nil)
		}
		e.forEachActor(t, func(t *testing.T, actor *server) {
			var out struct {
				Err     any `json:"err"`
				Sockets []struct {
					ID    string `json:"id"`
					Rooms []any  `json:"rooms"`
					Data  M      `json:"data"`
				} `json:"sockets"`
			}
			actor.call(t, "fetchSockets", M{"nsp": "/"}, &out)
			if out.Err != nil || len(out.Sockets) != len(f.cs) {
				t.Fatalf("from %s: %d sockets, err %v", actor.name, len(out.Sockets), out.Err)
			}
			byID := map[string]bool{}
			for _, s := range out.Sockets {
				byID[s.ID] = true
				if s.Data["owner"] == nil || !reflect.DeepEqual(s.Data["blob"], M{"$binary": "/wA="}) {
					t.Errorf("from %s: socket %s data %s", actor.name, s.ID, jsonString(s.Data))
				}
			}
			for _, c := range f.cs {
				if !byID[c.id] {
					t.Errorf("%s: socket of %s missing", dir(actor, c.srv), c)
				}
			}
			out.Sockets = nil
			actor.call(t, "fetchSockets", M{"nsp": "/", "in": []any{f.roomB}}, &out)
			if out.Err != nil || len(out.Sockets) != 2 {
				t.Errorf("from %s, room B: %d sockets, err %v", actor.name, len(out.Sockets), out.Err)
			}
		})
	})

	t.Run("socketsJoin and socketsLeave", func(t *testing.T) {
		e.forEachActor(t, func(t *testing.T, actor *server) {
			x := e.uniq("joinX")
			actor.call(t, "socketsJoin", M{"nsp": "/", "in": []any{f.roomA}, "rooms": []any{x}}, nil)
			e.settle(t, actor, "/", nil)
			e.expectMembers(t, actor, f.cs, x, func(c *client) bool { return f.inA[c] })
			e.waitRoomChannel(t, x, roomSubscribers(mode, 2))
			for _, from := range e.servers {
				tag := e.uniq("joined")
				from.call(t, "emit", M{"nsp": "/", "in": []any{x}, "event": "joined", "args": []any{tag}}, nil)
				e.expectDelivery(t, from, f.cs, "joined", tag, func(c *client) int { return b2i(f.inA[c]) })
			}
			actor.call(t, "socketsLeave", M{"nsp": "/", "in": []any{f.roomB}, "rooms": []any{x}}, nil)
			e.settle(t, actor, "/", nil)
			e.expectMembers(t, actor, f.cs, x, func(c *client) bool { return f.inA[c] && !f.inB[c] })
		})
	})

	t.Run("serverSideEmit with ack", func(t *testing.T) {
		event := e.uniq("sse")
		for _, s := range e.servers {
			s.call(t, "listen", M{"nsp": "/", "event": event, "reply": sseReply(s)}, nil)
		}
		e.forEachActor(t, func(t *testing.T, actor *server) {
			var out struct {
				Err       any   `json:"err"`
				Responses []any `json:"responses"`
			}
			actor.call(t, "serverSideEmit", M{"nsp": "/", "event": event, "args": []any{"ping", M{"$binary": "AQ=="}}, "ack": true}, &out)
			var want []any
			for _, s := range e.servers {
				if s != actor {
					want = append(want, sseReply(s))
				}
			}
			if out.Err != nil || !reflect.DeepEqual(multiset(out.Responses), multiset(want)) {
				t.Errorf("from %s: err %v, responses %v, want %v", actor.name, out.Err, multiset(out.Responses), multiset(want))
			}
		})
	})

	t.Run("disconnectSockets", func(t *testing.T) {
		e.forEachActor(t, func(t *testing.T, actor *server) {
			g := e.newRoomFixture(t)
			actor.call(t, "disconnectSockets", M{"nsp": "/", "in": []any{g.roomA}}, nil)
			waitUntil(t, "disconnections", func() (bool, string) {
				st := e.states(t, g.cs)
				for _, c := range g.cs {
					if n := len(st[c.k].Disconnects); n != b2i(g.inA[c]) {
						return false, fmt.Sprintf("%s: %s disconnected %d times", dir(actor, c.srv), c, n)
					}
				}
				return true, ""
			})
			var kept []*client
			for _, c := range g.cs {
				if !g.inA[c] {
					kept = append(kept, c)
				}
			}
			e.settle(t, actor, "/", kept)
			st := e.states(t, g.cs)
			for _, c := range g.cs {
				if want := b2i(g.inA[c]); len(st[c.k].Disconnects) != want {
					t.Errorf("%s: %s disconnected %v, want %d time(s)", dir(actor, c.srv), c, st[c.k].Disconnects, want)
				}
			}
		})
	})

	if t.Failed() {
		t.Logf("logs:\n%s", strings.TrimSpace(e.logs()))
	}
}
