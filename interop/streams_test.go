//go:build interop

package interop

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter"
	"github.com/d38ad898/redisadapter/emitter"
	"github.com/redis/go-redis/v9"
)

// The streams suite: two Go servers on redisadapter.NewStreams and two Node
// servers on @socket.io/redis-streams-adapter 0.3.1 (streams-server.js), all
// with connection state recovery (2 minutes, middlewares skipped), on one
// redis-server of their own. The stream is the cluster's key (StreamName),
// the sessions are under <key>:session:. It runs the cluster operations of
// the classic suite where the streams protocol has them (Node's streams
// adapter has no allRooms), recovery across servers in every direction, the
// Go streams emitter, and a second cluster with StreamCount 4 on the same
// redis-server.

// streamsSpec is the cluster of the streams suite with count streams.
func streamsSpec(r *redisServer, suite string, count int, nsps []string) clusterSpec {
	return clusterSpec{
		suite:      suite,
		redis:      r,
		namespaces: nsps,
		goAdapter: func(rdb redis.UniversalClient, key string) *redisadapter.Builder {
			return redisadapter.NewStreams(rdb, &redisadapter.StreamsOptions{
				Options:          redisadapter.Options{Key: key, RequestsTimeout: requestsTimeout},
				StreamName:       key,
				StreamCount:      count,
				SessionKeyPrefix: key + ":session:",
			})
		},
		goRecovery: true,
		nodeScript: "streams-server.js",
		nodeEnv: func(e *env) []string {
			return []string{
				"STREAM_NAME=" + e.key, "STREAM_COUNT=" + strconv.Itoa(count), "SESSION_KEY_PREFIX=" + e.key + ":session:",
				"REQUESTS_TIMEOUT=" + strconv.Itoa(int(requestsTimeout.Milliseconds())),
			}
		},
		ready: func(e *env) (bool, string) {
			// Every server listens to the ephemeral messages of every
			// namespace (streams-server.js prints LISTENING only once its
			// own readers block in XREAD)...
			if ok, detail := numSubReady(func(e *env, nsp string) string { return e.key + "#" + nsp + "#" }, false)(e); !ok {
				return false, detail
			}
			// ...and every Go server reads the streams of its namespaces.
			streams := map[string]bool{}
			for _, nsp := range e.namespaces {
				streams[e.streamOf(nsp)] = true
			}
			list, err := e.rdb.ClientList(context.Background()).Result()
			if err != nil {
				return false, err.Error()
			}
			for _, s := range e.servers {
				if s.goS == nil {
					continue
				}
				name := e.key + "-" + s.name
				n := 0
				for _, line := range strings.Split(list, "\n") {
					if strings.Contains(line, " name="+name+" ") && strings.Contains(line, " cmd=xread") {
						n++
					}
				}
				if n < len(streams) {
					return false, fmt.Sprintf("%s: %d connections in XREAD, want %d", s.name, n, len(streams))
				}
			}
			return true, ""
		},
		offsets:     true,
		datesAsText: true,
		noAllRooms:  func(s *server) bool { return s.lang == "Node" },
	}
}

func TestStreams(t *testing.T) {
	r := startRedis(t)
	e := startCluster(t, streamsSpec(r, "streams", 1, nil))
	e.runTests(t, append(append([]suiteTest{}, clusterTests...),
		suiteTest{"GoStreamsEmitter", func(t *testing.T, e *env) {
			e.testEmitter(t, e.goStreamsEmitter(emitter.StreamsOptions{Key: e.key, StreamName: e.key}))
		}},
		suiteTest{"Recovery", testRecovery},
		suiteTest{"NoRecovery", testNoRecovery},
	))
	t.Run("StreamCount4", func(t *testing.T) { testStreamCount4(t, r) })
}

// jsHash is the hashCode of @socket.io/redis-streams-adapter 0.3.1: h*31 + c
// over the UTF-16 code units of s, in signed 32 bits.
func jsHash(s string) int32 {
	var h int32
	for _, c := range utf16Units(s) {
		h = h*31 + int32(c)
	}
	return h
}

func utf16Units(s string) []uint16 {
	var out []uint16
	for _, r := range s {
		if r >= 0x10000 {
			r -= 0x10000
			out = append(out, uint16(0xD800+(r>>10)), uint16(0xDC00+(r&0x3FF)))
			continue
		}
		out = append(out, uint16(r))
	}
	return out
}

// streamOf is the stream key of namespace nsp in e, as Node computes it
// (JavaScript's % keeps the sign of the dividend, as Go's does).
func (e *env) streamOf(nsp string) string {
	count := 1
	for _, kv := range e.spec.nodeEnv(e) {
		if v, ok := strings.CutPrefix(kv, "STREAM_COUNT="); ok {
			count, _ = strconv.Atoi(v)
		}
	}
	if count <= 1 {
		return e.key
	}
	return fmt.Sprintf("%s-%d", e.key, jsHash(nsp)%int32(count))
}

// entryData returns the data of a stream entry as bytes to search: the JSON
// text, or the MessagePack behind base64 (its strings are raw bytes).
func entryData(m redis.XMessage) []byte {
	d, _ := m.Values["data"].(string)
	if strings.HasPrefix(d, "{") {
		return []byte(d)
	}
	b, err := base64.StdEncoding.DecodeString(d)
	if err != nil {
		return []byte(d)
	}
	return b
}

// waitEntry waits until stream holds an entry whose data contains tag, and
// returns its id.
func (e *env) waitEntry(t *testing.T, stream, tag string) string {
	t.Helper()
	var id string
	waitUntil(t, "stream entry "+tag, func() (bool, string) {
		entries, err := e.rdb.XRevRangeN(context.Background(), stream, "+", "-", 200).Result()
		if err != nil {
			return false, err.Error()
		}
		for _, m := range entries {
			if bytes.Contains(entryData(m), []byte(tag)) {
				id = m.ID
				return true, ""
			}
		}
		return false, fmt.Sprintf("no entry with %q in the last %d entries of %s", tag, len(entries), stream)
	})
	return id
}

// serverOf returns the server of e named name.
func (e *env) serverOf(name string) *server {
	for _, s := range e.servers {
		if s.name == name {
			return s
		}
	}
	panic("no server " + name)
}

// connectionsOf returns the connections a server's connection handler saw
// in nsp (both control APIs have the action).
func connectionsOf(t *testing.T, s *server, nsp string) []connection {
	t.Helper()
	var out struct {
		Connections []connection `json:"connections"`
	}
	s.call(t, "connections", M{"nsp": nsp}, &out)
	return out.Connections
}

// recoveryCase is one direction of recovery: a client of from loses its
// connection, and reconnects to to.
type recoveryCase struct{ from, to string }

func (rc recoveryCase) name(e *env) string {
	f, to := e.serverOf(rc.from), e.serverOf(rc.to)
	if f == to {
		return fmt.Sprintf("%s same server (%s)", f.lang, f.name)
	}
	return fmt.Sprintf("%s→%s (%s to %s)", f.lang, to.lang, f.name, to.name)
}

// testRecovery: a client drops at the transport level, messages are sent
// meanwhile from a Go and a Node server, and the client reconnects to a
// server of either language carrying its pid and offset: it is recovered
// (same id, rooms and data) and gets the missed messages once, in stream
// order, each with its entry id. Volatile broadcasts are not replayed by a
// Go server; a Node server (0.3.1) replays them, which the test records as
// Node's behaviour.
func testRecovery(t *testing.T, e *env) {
	for _, rc := range []recoveryCase{
		{"go-0", "node-0"}, {"node-0", "go-0"}, {"go-0", "go-1"}, {"go-1", "go-1"},
		{"node-0", "node-1"}, {"node-1", "node-1"}, // Node→Node: the reference
	} {
		t.Run(rc.name(e), func(t *testing.T) {
			e.recover(t, "/", e.serverOf(rc.from), e.serverOf(rc.to), e.senders(rc))
		})
	}
}

// senders picks a Go and a Node server to send while a client of rc is
// away, others than its two servers when there are.
func (e *env) senders(rc recoveryCase) []*server {
	var out []*server
	for _, lang := range []string{"Go", "Node"} {
		var pick *server
		for _, s := range e.servers {
			if s.lang != lang {
				continue
			}
			if pick == nil || (pick.name == rc.from || pick.name == rc.to) && s.name != rc.from && s.name != rc.to {
				pick = s
			}
		}
		out = append(out, pick)
	}
	return out
}

// missed is a message sent while the client is away.
type missed struct {
	sender *server
	body   M
	tag    string
	want   bool   // replayed (by a Go server)
	node   bool   // replayed by a Node server (0.3.1 replays volatile ones too)
	id     string // its stream entry ("" when not in the stream)
}

// recover runs one recovery of a client of nsp from from to to, with
// messages sent by senders (alternately) while it is away.
func (e *env) recover(t *testing.T, nsp string, from, to *server, senders []*server) {
	t.Helper()
	stream := e.streamOf(nsp)
	room, other := e.uniq("rec-room"), e.uniq("rec-other")
	c := e.connect(t, clientSpec{srv: from, nsp: nsp})[0]
	e.join(t, c, room)
	data := M{"user": "u-" + c.id, "n": 2.0}
	from.call(t, "setData", M{"nsp": nsp, "id": c.id, "data": data}, nil)

	// A first message, so that the client has an offset.
	tag0 := e.uniq("rec0")
	senders[0].call(t, "emit", M{"nsp": nsp, "in": []any{room}, "event": "rec", "args": []any{tag0}}, nil)
	id0 := e.waitEntry(t, stream, tag0)
	var before clientState
	waitUntil(t, "first message", func() (bool, string) {
		before = e.states(t, []*client{c})[c.k]
		return count(before, "rec", tag0) == 1 && before.LastOffset != "", fmt.Sprintf("%s: events %s", c, jsonString(before.Events))
	})
	if before.LastOffset != id0 || before.PID == "" {
		t.Fatalf("%s: pid %q, last offset %q, want the entry id %s of the first message", c, before.PID, before.LastOffset, id0)
	}

	// The transport drops; the server persists the session.
	e.clientCall(t, "drop", M{"k": c.k, "reconnect": false}, nil)
	sessionKey := e.key + ":session:" + before.PID
	waitUntil(t, "session persisted by "+from.name, func() (bool, string) {
		_, still := from.localSockets(t, nsp)[c.id]
		n, err := e.rdb.Exists(context.Background(), sessionKey).Result()
		return !still && n == 1, fmt.Sprintf("%s still lists the socket: %v; EXISTS %s = %d (%v)", from.name, still, sessionKey, n, err)
	})
	if ttl, err := e.rdb.PTTL(context.Background(), sessionKey).Result(); err != nil || ttl <= 0 || ttl > 2*time.Minute {
		t.Errorf("%s persisted the session with PTTL %v (%v), want at most 2 minutes", from.name, ttl, err)
	}

	// Messages sent meanwhile, alternately by a Go and a Node server, each
	// waited for in the stream so that the stream order is the list order.
	msgs := []*missed{
		{body: M{}, want: true},
		{body: M{"volatile": true}, node: true},
		{body: M{"in": []any{room}}, want: true},
		{body: M{"in": []any{other}}},
		{body: M{"except": []any{room}}},
		{body: M{"in": []any{c.id}}, want: true},
		{body: M{"args": []any{M{"$binary": "AAEC/w=="}}}, want: true},
		{body: M{"in": []any{room}, "except": []any{other}}, want: true},
		{body: M{"local": true}},
	}
	if nsp == "/" && len(e.namespaces) > 1 {
		msgs = append(msgs, &missed{body: M{"nsp": e.namespaces[1]}})
	}
	msgs = append(msgs, &missed{body: M{"in": []any{room}, "volatile": true}, node: true}, &missed{body: M{}, want: true})
	for _, m := range msgs {
		m.node = m.node || m.want
	}
	for i, m := range msgs {
		m.sender = senders[i%len(senders)]
		m.tag = e.uniq("missed")
		args := append([]any{m.tag}, anyList(m.body["args"])...)
		m.body["args"], m.body["event"] = args, "rec"
		if m.body["nsp"] == nil {
			m.body["nsp"] = nsp
		}
		m.sender.call(t, "emit", m.body, nil)
		if m.body["local"] != true {
			m.id = e.waitEntry(t, e.streamOf(m.body["nsp"].(string)), m.tag)
		}
	}

	// Back, to another server (or the same), with pid and offset.
	e.clientCall(t, "reconnectTo", M{"k": c.k, "url": to.url}, nil)
	var after clientState
	waitUntil(t, "reconnection to "+to.name, func() (bool, string) {
		after = e.states(t, []*client{c})[c.k]
		return after.Connected && len(after.Connections) == len(before.Connections)+1,
			fmt.Sprintf("%s: connected %v, connections %v, connect errors %v", c, after.Connected, after.Connections, after.ConnectErrors)
	})
	d := fmt.Sprintf("%s→%s (%s to %s)", from.lang, to.lang, from.name, to.name)
	if !after.Recovered || after.ID != before.ID {
		t.Fatalf("%s: recovered %v with id %s, want recovered with id %s\n%s", d, after.Recovered, after.ID, before.ID, jsonString(after.Connections))
	}

	// The missed messages, once, in stream order, each with its entry id.
	var wantTags, wantIDs []string
	var volatile []string
	for _, m := range msgs {
		if m.want || to.lang == "Node" && m.node {
			wantTags, wantIDs = append(wantTags, m.tag), append(wantIDs, m.id)
		}
		if m.body["volatile"] == true {
			volatile = append(volatile, m.tag)
		}
	}
	var gotTags, gotIDs []string
	for _, ev := range after.Events[len(before.Events):] {
		if ev.Event != "rec" {
			continue
		}
		args, off := e.payload(ev)
		gotTags, gotIDs = append(gotTags, fmt.Sprint(args[0])), append(gotIDs, off)
		for _, m := range msgs {
			if m.tag == args[0] {
				if want := roundTrip(m.body["args"]); !reflect.DeepEqual(args, want) {
					t.Errorf("%s: replayed %s, want %s", d, jsonString(ev.Args), jsonString(want))
				}
			}
		}
	}
	if !reflect.DeepEqual(gotTags, wantTags) || !reflect.DeepEqual(gotIDs, wantIDs) {
		t.Errorf("%s: replayed\n  %v with offsets %v\nwant\n  %v with offsets %v\n(volatile: %v)", d, gotTags, gotIDs, wantTags, wantIDs, volatile)
	}
	if to.lang == "Node" {
		t.Logf("%s: a Node server (streams adapter 0.3.1) replays the volatile broadcasts to all or to the client's rooms: %v", d, volatile)
	}
	if last := wantIDs[len(wantIDs)-1]; after.LastOffset != last {
		t.Errorf("%s: the client's last offset is %s, want %s", d, after.LastOffset, last)
	}

	// The socket has its rooms and data on its new server, which saw a
	// recovered connection.
	ls, ok := to.localSockets(t, nsp)[c.id]
	if !ok {
		t.Fatalf("%s: %s has no socket %s", d, to.name, c.id)
	}
	if got, want := sortedStrings(ls.Rooms), sortedStrings([]any{c.id, room}); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: rooms %v, want %v", d, got, want)
	}
	if want := roundTrip(data); !reflect.DeepEqual(ls.Data, want) {
		t.Errorf("%s: data %s, want %s", d, jsonString(ls.Data), jsonString(want))
	}
	conns := connectionsOf(t, to, nsp)
	if n := len(conns); n == 0 || conns[n-1].ID != c.id || !conns[n-1].Recovered {
		t.Errorf("%s: %s's last connection %s, want %s recovered", d, to.name, jsonString(conns[max(n-1, 0):]), c.id)
	}
	if n, _ := e.rdb.Exists(context.Background(), sessionKey).Result(); n != 0 {
		t.Errorf("%s: the session %s is still in Redis after the restore", d, sessionKey)
	}

	// Live again: a broadcast to its room reaches it once with its offset,
	// a volatile one once without.
	sender := senders[len(senders)-1]
	live, vol := e.uniq("live"), e.uniq("live-volatile")
	sender.call(t, "emit", M{"nsp": nsp, "in": []any{room}, "event": "rec", "args": []any{live}}, nil)
	liveID := e.waitEntry(t, stream, live)
	sender.call(t, "emit", M{"nsp": nsp, "in": []any{room}, "event": "rec", "args": []any{vol}, "volatile": true}, nil)
	waitUntil(t, "live messages", func() (bool, string) {
		st := e.states(t, []*client{c})[c.k]
		return count(st, "rec", live) == 1 && count(st, "rec", vol) == 1, fmt.Sprintf("%s: events %s", c, jsonString(st.Events[len(after.Events):]))
	})
	for _, ev := range e.states(t, []*client{c})[c.k].Events[len(after.Events):] {
		if _, off := e.payload(ev); ev.Event == "rec" && (ev.Args[0] == live && off != liveID || ev.Args[0] == vol && off != "") {
			t.Errorf("%s then live from %s: received %s, want offset %q", d, sender.name, jsonString(ev.Args), map[bool]string{true: liveID}[ev.Args[0] == live])
		}
	}
}

func anyList(v any) []any {
	l, _ := v.([]any)
	return l
}

func sortedStrings(v []any) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = fmt.Sprint(x)
	}
	sort.Strings(out)
	return out
}

// testNoRecovery: a client that comes back with a session that is gone
// (expired, or restored already) or an offset the stream does not hold gets
// a new session, recovered false, and nothing replayed, on a server of either
// language.
func testNoRecovery(t *testing.T, e *env) {
	for _, to := range []string{"go-1", "node-1"} {
		for _, how := range []string{"session gone", "offset not in the stream"} {
			from := e.servers[0] // go-0
			if to == "go-1" {
				from = e.serverOf("node-0")
			}
			target := e.serverOf(to)
			t.Run(fmt.Sprintf("%s, %s→%s", how, from.lang, target.lang), func(t *testing.T) {
				c := e.connect(t, clientSpec{srv: from, nsp: "/"})[0]
				tag := e.uniq("norec")
				from.call(t, "emit", M{"nsp": "/", "in": []any{c.id}, "event": "rec", "args": []any{tag}}, nil)
				var before clientState
				waitUntil(t, "a message", func() (bool, string) {
					before = e.states(t, []*client{c})[c.k]
					return count(before, "rec", tag) == 1, jsonString(before.Events)
				})
				e.clientCall(t, "drop", M{"k": c.k, "reconnect": false}, nil)
				key := e.key + ":session:" + before.PID
				waitUntil(t, "session persisted", func() (bool, string) {
					n, _ := e.rdb.Exists(context.Background(), key).Result()
					return n == 1, "no " + key
				})
				body := M{"k": c.k, "url": target.url}
				if how == "session gone" {
					e.rdb.Del(context.Background(), key)
				} else {
					body["auth"] = M{"offset": "1-0"} // auth's keys win over the carried offset
				}
				// Something to miss, which must not be replayed.
				missedTag := e.uniq("norec-missed")
				target.call(t, "emit", M{"nsp": "/", "event": "rec", "args": []any{missedTag}}, nil)
				e.waitEntry(t, e.streamOf("/"), missedTag)
				e.clientCall(t, "reconnectTo", body, nil)
				var after clientState
				waitUntil(t, "reconnection", func() (bool, string) {
					after = e.states(t, []*client{c})[c.k]
					return after.Connected && len(after.Connections) == len(before.Connections)+1, jsonString(after.Connections)
				})
				if after.Recovered || after.ID == before.ID || count(after, "rec", missedTag) != 0 {
					t.Errorf("%s→%s: recovered %v, id %s (before %s), missed message received %d times; want a new session and nothing replayed",
						from.lang, target.lang, after.Recovered, after.ID, before.ID, count(after, "rec", missedTag))
				}
				conns := connectionsOf(t, target, "/")
				if n := len(conns); n == 0 || conns[n-1].ID != after.ID || conns[n-1].Recovered {
					t.Errorf("%s→%s: %s's last connection %s, want %s not recovered", from.lang, target.lang, target.name, jsonString(conns[max(n-1, 0):]), after.ID)
				}
			})
		}
	}
}

// testStreamCount4: a second cluster on the same redis-server, with 4
// streams. "/" (hash 47 → stream -3) works in every direction.
// "/orders-namespace" hashes to -2133015902, stream "<key>--2": every server
// writes its entries there, as Node does, but Node 0.3.1 reads only -0 … -3,
// so Node servers never receive that namespace from another server (their
// own clients still get their own broadcasts); Go servers read the stream
// their namespace maps to, so they receive every server's broadcasts, and
// recover sessions from it.
func testStreamCount4(t *testing.T, r *redisServer) {
	const orders = "/orders-namespace"
	e := startCluster(t, streamsSpec(r, "streams, StreamCount 4", 4, []string{"/", orders}))
	if got := e.streamOf(orders); got != e.key+"--2" {
		t.Fatalf("stream of %s = %s, want %s--2", orders, got, e.key)
	}
	if got := e.streamOf("/"); got != e.key+"-3" {
		t.Fatalf("stream of / = %s, want %s-3", got, e.key)
	}
	t.Run("ServerCount", func(t *testing.T) { testServerCount(t, e) })
	t.Run("Broadcast /", func(t *testing.T) {
		cs := e.connectOnePerServer(t, "/", nil)
		e.forEachActor(t, func(t *testing.T, actor *server) {
			tag := e.uniq("sc4")
			actor.call(t, "emit", M{"nsp": "/", "event": "sc4", "args": []any{tag}}, nil)
			e.expectDelivery(t, actor, cs, "sc4", tag, func(*client) int { return 1 })
			e.expectArgs(t, actor, cs, "sc4", []any{tag}, true)
		})
	})
	t.Run("Broadcast "+orders, func(t *testing.T) {
		cs := e.connectOnePerServer(t, orders, nil)
		root := e.connectOnePerServer(t, "/", nil)
		e.forEachActor(t, func(t *testing.T, actor *server) {
			tag := e.uniq("orders")
			actor.call(t, "emit", M{"nsp": orders, "event": "order", "args": []any{tag}}, nil)
			id := e.waitEntry(t, e.key+"--2", tag)
			want := func(c *client) int { return b2i(c.srv == actor || c.srv.lang == "Go") }
			waitUntil(t, "deliveries", func() (bool, string) {
				st := e.states(t, cs)
				for _, c := range cs {
					if want(c) == 1 && count(st[c.k], "order", tag) != 1 {
						return false, fmt.Sprintf("%s: %s has not received it", dir(actor, c.srv), c)
					}
				}
				return true, ""
			})
			// Every server has processed the stream entries of "/" written
			// after this one; Node servers never read <key>--2.
			e.fence(t, root)
			st := e.states(t, cs)
			for _, c := range cs {
				if got := count(st[c.k], "order", tag); got != want(c) {
					t.Errorf("%s: %s received the broadcast %d times, want %d", dir(actor, c.srv), c, got, want(c))
				}
				for _, ev := range st[c.k].Events {
					if ev.Event == "order" && ev.Args[0] == tag {
						if _, off := e.payload(ev); off != id {
							t.Errorf("%s: %s received %s, want the offset %s (entry of %s--2)", dir(actor, c.srv), c, jsonString(ev.Args), id, e.key)
						}
					}
				}
			}
		})
		// Nothing of the namespace went to the streams Node reads.
		for i := 0; i < 4; i++ {
			k := fmt.Sprintf("%s-%d", e.key, i)
			entries, _ := e.rdb.XRange(context.Background(), k, "-", "+").Result()
			for _, m := range entries {
				if m.Values["nsp"] == orders {
					t.Errorf("%s holds an entry of %s: %v", k, orders, m.Values)
				}
			}
		}
	})
	t.Run("Recovery "+orders, func(t *testing.T) {
		for _, rc := range []recoveryCase{{"go-0", "go-1"}, {"go-1", "go-1"}} {
			t.Run(rc.name(e), func(t *testing.T) {
				e.recover(t, orders, e.serverOf(rc.from), e.serverOf(rc.to), []*server{e.serverOf("go-0"), e.serverOf("node-1")})
			})
		}
	})
	t.Run("GoStreamsEmitter "+orders, func(t *testing.T) {
		cs := e.connectOnePerServer(t, orders, nil)
		tag := e.uniq("orders-emitter")
		e.goStreamsEmitter(emitter.StreamsOptions{Key: e.key, StreamName: e.key, StreamCount: 4}).run(t,
			M{"op": "emit", "nsp": orders, "event": "order", "args": []any{tag}})
		e.waitEntry(t, e.key+"--2", tag)
		waitUntil(t, "deliveries", func() (bool, string) {
			st := e.states(t, cs)
			for _, c := range cs {
				if c.srv.lang == "Go" && count(st[c.k], "order", tag) != 1 {
					return false, fmt.Sprintf("Go emitter→Go: %s has not received it", c)
				}
			}
			return true, ""
		})
		e.fence(t, e.connectOnePerServer(t, "/", nil))
		st := e.states(t, cs)
		for _, c := range cs {
			if got, want := count(st[c.k], "order", tag), b2i(c.srv.lang == "Go"); got != want {
				t.Errorf("Go emitter→%s: %s received it %d times, want %d", c.srv.lang, c, got, want)
			}
		}
	})
	if t.Failed() {
		t.Logf("logs:\n%s", e.logs())
	}
}
