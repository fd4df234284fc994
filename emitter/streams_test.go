package emitter_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"

	"github.com/d38ad898/redisadapter"
	"github.com/d38ad898/redisadapter/emitter"
	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/d38ad898/redisadapter/internal/wire"
)

// The streams emitter: byte-level against what Node's streams servers write
// (internal/wire/testdata/streams/vectors.json, captured live), and
// delivered by Go streams servers in every method.

// recorder records the commands a client sends.
type recorder struct {
	mu   sync.Mutex
	cmds [][]any
}

func (r *recorder) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *recorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (r *recorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		switch cmd.Name() {
		case "hello", "client", "select", "ping": // the connection's set-up
		default:
			r.mu.Lock()
			r.cmds = append(r.cmds, cmd.Args())
			r.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

// last returns the last command as text, its name upper-cased.
func (r *recorder) last(t *testing.T) []string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cmds) == 0 {
		t.Fatal("no command sent")
	}
	var out []string
	for _, a := range r.cmds[len(r.cmds)-1] {
		switch a := a.(type) {
		case []byte:
			out = append(out, string(a))
		default:
			out = append(out, fmt.Sprint(a))
		}
	}
	out[0] = strings.ToUpper(out[0])
	return out
}

// streamsVector is one vector of vectors.json.
type streamsVector struct {
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	Command    []any  `json:"command"` // strings, or {"hex": ...}
	Channel    string `json:"channel"`
	PayloadHex string `json:"payloadHex"`
}

func streamsVectors(t *testing.T) map[string]streamsVector {
	t.Helper()
	raw, err := os.ReadFile("../internal/wire/testdata/streams/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Vectors []streamsVector `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	out := map[string]streamsVector{}
	for _, v := range file.Vectors {
		out[v.Name] = v
	}
	return out
}

// TestStreamsEmitterNodeBytes: each call writes the XADD (or PUBLISH) a
// Node streams server writes for the same broadcast, the uid aside
// ("emitter").
func TestStreamsEmitterNodeBytes(t *testing.T) {
	vectors := streamsVectors(t)
	rdb := miniClient(t)
	rec := &recorder{}
	rdb.AddHook(rec)
	em := emitter.NewStreams(rdb, nil)
	const sid = "rPB7HUAdU3xZCOKiAAAA" // cA1 of the capture
	for _, tc := range []struct {
		vector string
		call   func() error
	}{
		{"broadcast_all", func() error { return em.Emit("ev", 1, "two", map[string]any{"a": []any{1, 2}}) }},
		{"broadcast_room", func() error { return em.To("room1").Emit("ev", "to-room1") }},
		{"broadcast_rooms_except", func() error {
			return em.To("room1", "room2").Except("room3").Except("room4").Emit("ev", "rooms-except")
		}},
		{"broadcast_volatile", func() error { return em.Volatile().Emit("ev", "volatile") }},
		{"broadcast_compress_false", func() error { return em.Compress(false).Emit("ev", "nocompress") }},
		{"broadcast_volatile_compress", func() error { return em.Volatile().Compress(true).Emit("ev", "volatile-compress") }},
		{"broadcast_binary", func() error { return em.Emit("bin", []byte{1, 2, 3}) }},
		{"broadcast_from_socket", func() error { return em.Except(sid).Emit("ev", "from-socket") }},
		{"broadcast_from_socket_to_room", func() error { return em.To("room1").Except(sid).Emit("ev", "socket-to-room1") }},
		{"broadcast_namespace_chat", func() error { return em.Of("/chat").Emit("ev", "chat") }},
		{"socket_emit", func() error { return em.To(sid).Emit("direct", 1) }},
		{"sockets_join", func() error { return em.In("room1").SocketsJoin("room2", "room3") }},
		{"sockets_join_all_one_room", func() error { return em.SocketsJoin("room4") }},
		{"sockets_leave", func() error { return em.In("room1").Except("room9").SocketsLeave("room2") }},
		{"disconnect_sockets", func() error { return em.In("nobody").DisconnectSockets(false) }},
		{"disconnect_sockets_close", func() error { return em.In("nobody").DisconnectSockets(true) }},
	} {
		t.Run(tc.vector, func(t *testing.T) {
			v, ok := vectors[tc.vector]
			if !ok || v.Kind != "xadd" {
				t.Fatalf("no xadd vector %s", tc.vector)
			}
			if err := tc.call(); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, a := range v.Command {
				s, ok := a.(string)
				if !ok {
					t.Fatalf("vector %s: a binary argument %v", tc.vector, a)
				}
				want = append(want, s)
			}
			if want[6] != "uid" {
				t.Fatalf("vector %s: unexpected command %v", tc.vector, want)
			}
			want[7] = wire.EmitterUID
			got := rec.last(t)
			got[2] = strings.ToUpper(got[2]) // go-redis writes maxlen in lower case
			if !reflect.DeepEqual(got, want) {
				t.Errorf("command:\n got %q\nwant %q", got, want)
			}
		})
	}

	t.Run("server_side_emit", func(t *testing.T) {
		if err := em.ServerSideEmit("hello", "world", 1); err != nil {
			t.Fatal(err)
		}
		checkPublish(t, rec, vectors["server_side_emit"], "PUBLISH")
	})
	t.Run("sharded_server_side_emit", func(t *testing.T) {
		rdb := miniClient(t) // miniredis has no SPUBLISH: the command is what counts
		rec := &recorder{}
		rdb.AddHook(rec)
		sem := emitter.NewStreams(rdb, &emitter.StreamsOptions{Key: "shard", StreamName: "shard-stream", UseShardedPubSub: true})
		_ = sem.ServerSideEmit("s", 1)
		checkPublish(t, rec, vectors["sharded_server_side_emit"], "SPUBLISH")
	})
}

// checkPublish compares the last command with a captured PUBLISH/SPUBLISH
// whose payload carries a server's uid, replaced by "emitter".
func checkPublish(t *testing.T, rec *recorder, v streamsVector, cmd string) {
	t.Helper()
	node, err := hex.DecodeString(v.PayloadHex)
	if err != nil || v.Channel == "" {
		t.Fatalf("vector %s: %v", v.Name, err)
	}
	// "uid" then a 16-character fixstr (0xb0): the server's id.
	i := bytes.Index(node, []byte("\xa3uid\xb0"))
	if i < 0 {
		t.Fatalf("vector %s: no uid in %x", v.Name, node)
	}
	want := append(append(append([]byte(nil), node[:i+4]...), "\xa7emitter"...), node[i+5+16:]...)
	got := rec.last(t)
	if len(got) != 3 || got[0] != cmd || got[1] != v.Channel || got[2] != string(want) {
		t.Errorf("got %s %s %x\nwant %s %s %x", got[0], got[1], got[len(got)-1], cmd, v.Channel, want)
	}
}

// streamsServers starts n Go streams servers with connection state recovery,
// on the Redis of the tests (miniredis or REDIS_URL), sharing key as
// channel prefix and stream name.
func streamsServers(t *testing.T, n, streamCount int, nsps ...string) *testkit.Cluster {
	t.Helper()
	env := testkit.EmbeddedOrURLEnv(t)
	key := testkit.UniqueKey(t)
	if env.Real {
		t.Cleanup(func() { // after the servers: their streams and sessions
			for _, rdb := range env.Masters(t) {
				if keys, _ := rdb.Keys(context.Background(), key+"*").Result(); len(keys) > 0 {
					rdb.Del(context.Background(), keys...)
				}
				_ = rdb.Close()
			}
		})
	}
	m := testkit.Mode{
		Name: "streams",
		New: func(rdb redis.UniversalClient, key string) testkit.Builder {
			return redisadapter.NewStreams(rdb, &redisadapter.StreamsOptions{
				Options:    redisadapter.Options{Key: key, RequestsTimeout: time.Second, PublishTimeout: 2 * time.Second},
				StreamName: key, StreamCount: streamCount, SessionKeyPrefix: key + ":session:", BlockTime: time.Second,
			})
		},
		ServerOptions: func(so *socket.ServerOptions) {
			csr := &socket.ConnectionStateRecovery{}
			csr.SetMaxDisconnectionDuration(time.Minute.Milliseconds())
			csr.SetSkipMiddlewares(true)
			so.SetConnectionStateRecovery(csr)
		},
	}
	c := testkit.StartCluster(t, testkit.ClusterConfig{Env: env, N: n, Mode: m, Nsps: nsps, Key: key})
	// Readers start after the stream's last entry: wait until they read.
	for _, nd := range c.Nodes {
		b := nd.B.(*redisadapter.Builder)
		testkit.WaitFor(t, "server connected", func() bool { return b.State() == redisadapter.StateConnected })
	}
	return c
}

func streamsEmitter(t *testing.T, c *testkit.Cluster, opts emitter.StreamsOptions) *emitter.StreamsEmitter {
	opts.Key, opts.StreamName = c.Key, c.Key
	return emitter.NewStreams(c.Env.Client(t), &opts)
}

var entryID = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

func lastString(ev sioclient.Event) string {
	if len(ev.Args) == 0 {
		return ""
	}
	s, _ := ev.Args[len(ev.Args)-1].(string)
	return s
}

// TestStreamsEmitterDelivered: every method, delivered by Go streams
// servers; a recoverable broadcast gets its entry id as offset on every
// receiving server, and is replayed to a client that was away.
func TestStreamsEmitterDelivered(t *testing.T) {
	c := streamsServers(t, 2, 1, "/chat")
	em := streamsEmitter(t, c, emitter.StreamsOptions{})
	clA, sA := c.Connect(0, "/")
	clB, sB := c.Connect(1, "/")
	sA.Join("room1")

	t.Run("Emit", func(t *testing.T) {
		check(t, em.Emit("all", 1, map[string]any{"k": "v"}))
		for _, cl := range []*sioclient.Client{clA, clB} {
			ev := testkit.WaitEvents(t, cl, "all", 1)[0]
			if len(ev.Args) != 3 || !entryID.MatchString(lastString(ev)) {
				t.Errorf("recoverable broadcast: %v, want its entry id last", ev.Args)
			}
		}
		if a, b := lastString(clA.Received("all")[0]), lastString(clB.Received("all")[0]); a != b {
			t.Errorf("offsets differ between servers: %s, %s", a, b)
		}
	})
	t.Run("rooms, except, volatile, binary", func(t *testing.T) {
		check(t, em.To("room1").Emit("r", "room1"))
		check(t, em.Except("room1").Emit("r", "except-room1"))
		check(t, em.To("room1", string(sB.Id())).Except(string(sA.Id())).Emit("r", "to-B"))
		check(t, em.To("room1").Compress(false).Emit("b", []byte{1, 2, 3}))
		check(t, em.Emit("end"))
		testkit.WaitEvents(t, clA, "end", 1)
		testkit.WaitEvents(t, clB, "end", 1)
		texts := func(evs []sioclient.Event) []any {
			var out []any
			for _, ev := range evs {
				out = append(out, ev.Args[0])
			}
			return out
		}
		if got := texts(clA.Received("r")); !reflect.DeepEqual(got, []any{"room1"}) {
			t.Errorf("client A (room1) got %v", got)
		}
		if got := texts(clB.Received("r")); !reflect.DeepEqual(got, []any{"except-room1", "to-B"}) {
			t.Errorf("client B got %v", got)
		}
		// A volatile packet may be dropped for a client whose transport is
		// busy: sent again until both got one.
		testkit.WaitFor(t, "volatile packets", func() bool {
			if len(clA.Received("v")) > 0 && len(clB.Received("v")) > 0 {
				return true
			}
			check(t, em.Volatile().Emit("v", "volatile"))
			time.Sleep(20 * time.Millisecond)
			return false
		})
		for _, cl := range []*sioclient.Client{clA, clB} {
			if v := cl.Received("v")[0]; !reflect.DeepEqual(v.Args, []any{"volatile"}) {
				t.Errorf("volatile: %v, want no offset", v.Args)
			}
		}
		if b := clA.Received("b"); len(b) != 1 || !b[0].Binary || !reflect.DeepEqual(b[0].Args[0], []byte{1, 2, 3}) {
			t.Errorf("binary: %+v", b)
		}
	})
	t.Run("Of", func(t *testing.T) {
		cl, _ := c.Connect(1, "/chat")
		check(t, em.Of("chat").Emit("chat", "hi"))
		if ev := testkit.WaitEvents(t, cl, "chat", 1)[0]; ev.Args[0] != "hi" {
			t.Errorf("chat: %v", ev.Args)
		}
	})
	t.Run("SocketsJoin and SocketsLeave", func(t *testing.T) {
		check(t, em.In(string(sB.Id())).SocketsJoin("joined", "also"))
		testkit.WaitFor(t, "B's socket joins", func() bool { return sB.Rooms().Has("joined") && sB.Rooms().Has("also") })
		check(t, em.In("joined").Except("room1").SocketsLeave("also"))
		testkit.WaitFor(t, "B's socket leaves", func() bool { return !sB.Rooms().Has("also") && sB.Rooms().Has("joined") })
		if sA.Rooms().Has("joined") {
			t.Error("A's socket joined too")
		}
	})
	t.Run("ServerSideEmit", func(t *testing.T) {
		got := make(chan []any, 2)
		for i := range c.Nodes {
			c.Ns(i, "/").On("job", func(args ...any) { got <- args })
		}
		check(t, em.ServerSideEmit("job", "done", 42, []byte{7}))
		for range c.Nodes {
			select {
			case args := <-got:
				if len(args) != 3 || args[0] != "done" || fmt.Sprint(args[1]) != "42" || !reflect.DeepEqual(args[2], []byte{7}) {
					t.Errorf("serverSideEmit args: %#v", args)
				}
			case <-time.After(testkit.WaitTimeout):
				t.Fatal("a server did not get the serverSideEmit")
			}
		}
	})
	t.Run("recovery", func(t *testing.T) {
		cl, s := c.Connect(0, "/")
		check(t, em.Emit("m", "before"))
		testkit.WaitEvents(t, cl, "m", 1)
		cl.Drop()
		testkit.WaitFor(t, "the session is persisted", func() bool {
			return !s.Connected() && c.Masters[0].Exists(context.Background(), c.Key+":session:"+cl.PID()).Val() == 1
		})
		check(t, em.Emit("m", "missed"))
		check(t, em.Volatile().Emit("m", "volatile, not replayed"))
		check(t, em.To("elsewhere").Emit("m", "another room"))
		waitLen := func() bool { return c.Masters[0].XLen(context.Background(), c.Key).Val() > 0 }
		testkit.WaitFor(t, "entries", waitLen)
		ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
		defer cancel()
		cl2, err := cl.Reconnect(ctx, c.Nodes[1].URL)
		if err != nil {
			t.Fatal(err)
		}
		c.Nodes[1].Accept(t, "/", cl2)
		check(t, em.Emit("m", "after"))
		evs := testkit.WaitEvents(t, cl2, "m", 2)
		if !cl2.Recovered() || len(evs) != 2 || evs[0].Args[0] != "missed" || evs[1].Args[0] != "after" ||
			!entryID.MatchString(lastString(evs[0])) {
			t.Errorf("recovered %v, events %v", cl2.Recovered(), evs)
		}
	})
	t.Run("DisconnectSockets", func(t *testing.T) {
		check(t, em.In(string(sB.Id())).DisconnectSockets(false))
		select {
		case <-clB.Disconnected():
		case <-time.After(testkit.WaitTimeout):
			t.Fatal("B's client was not disconnected")
		}
		if r := clB.DisconnectReason(); r != sioclient.ReasonServerDisconnect {
			t.Errorf("reason %q", r)
		}
		if clA.DisconnectReason() != "" {
			t.Error("A's client was disconnected too")
		}
	})
}

// TestStreamsEmitterStreamCount: with 4 streams, the emitter writes each
// namespace where the servers read it, "/orders-namespace" included (its
// hash is negative: "<name>--2", where Node writes it).
func TestStreamsEmitterStreamCount(t *testing.T) {
	c := streamsServers(t, 1, 4, "/orders-namespace", "/chat")
	em := streamsEmitter(t, c, emitter.StreamsOptions{StreamCount: 4})
	if got, want := em.Of("/orders-namespace").Stream(), c.Key+"--2"; got != want {
		t.Errorf("stream of /orders-namespace: %s, want %s", got, want)
	}
	written := map[string]int64{}
	for _, nsp := range []string{"/orders-namespace", "/chat", "/"} {
		written[wire.StreamName(c.Key, 4, nsp)]++
		cl, _ := c.Connect(0, nsp)
		check(t, em.Of(nsp).Emit("ev", nsp))
		if ev := testkit.WaitEvents(t, cl, "ev", 1)[0]; ev.Args[0] != nsp {
			t.Errorf("%s: %v", nsp, ev.Args)
		}
		if n := c.Masters[0].XLen(context.Background(), wire.StreamName(c.Key, 4, nsp)).Val(); n != written[wire.StreamName(c.Key, 4, nsp)] {
			t.Errorf("%s: XLEN %d", nsp, n)
		}
	}
}

func TestStreamsEmitterOptions(t *testing.T) {
	rdb := miniClient(t)
	bad := &emitter.StreamsOptions{Key: "a#b", StreamCount: -1, MaxLen: -1, Timeout: -1}
	if err := bad.Validate(); err == nil {
		t.Error("Validate accepted invalid options")
	}
	rec := &recorder{}
	rdb.AddHook(rec)
	em := emitter.NewStreams(rdb, bad) // defaults instead
	check(t, em.Emit("ev"))
	if got := rec.last(t); got[1] != "socket.io" || got[4] != "10000" {
		t.Errorf("defaults: %q", got)
	}
	check(t, em.ServerSideEmit("x"))
	if got := rec.last(t); got[1] != "socket.io#/#" {
		t.Errorf("channel: %q", got)
	}
	em = emitter.NewStreams(rdb, &emitter.StreamsOptions{StreamName: "s", StreamCount: 4, MaxLen: 7, OnlyPlaintext: true})
	check(t, em.Of("/a").Emit("bin", []byte{1}))
	if got := rec.last(t); got[1] != wire.StreamName("s", 4, "/a") || got[4] != "7" || !strings.HasPrefix(got[len(got)-1], "{") {
		t.Errorf("options: %q", got)
	}
	// Refused calls, as the classic emitter refuses them.
	if err := em.Emit("connect"); err == nil {
		t.Error("reserved event accepted")
	}
	if err := em.Emit("ev", func() {}); err == nil {
		t.Error("ack accepted")
	}
	if err := em.ServerSideEmit(1); err == nil {
		t.Error("ServerSideEmit without a name accepted")
	}
	// Immutable.
	base := emitter.NewStreams(rdb, nil)
	_ = base.To("r").Except("x").Volatile().Of("/n")
	check(t, base.Emit("ev"))
	if got := rec.last(t); got[9] != "/" || !strings.Contains(got[len(got)-1], `"rooms":[],"except":[],"flags":{}`) {
		t.Errorf("base emitter changed: %q", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("NewStreams(nil) did not panic")
		}
	}()
	emitter.NewStreams(nil, nil)
}
