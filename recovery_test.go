package redisadapter

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/d38ad898/redisadapter/internal/testkit"
	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io/v2/socket"
)

// Connection state recovery across servers (streams transport): a client
// drops at the transport level, misses messages sent from both servers, and
// comes back to either of them with its session id and last offset.

// modeRecovery is the streams mode with connection state recovery enabled
// on every server, sessions kept for maxDisconnection.
func modeRecovery(maxDisconnection time.Duration, configure ...func(*StreamsOptions)) testkit.Mode {
	// A restore is bounded by RequestsTimeout: generous on loaded machines.
	slow := func(o *StreamsOptions) { o.RequestsTimeout = 5 * time.Second }
	m := modeStreams(append([]func(*StreamsOptions){slow}, configure...)...)
	m.Name = "streams-recovery"
	m.ServerOptions = func(so *socket.ServerOptions) {
		// engine.io v2.5.0 misses about one abrupt close in a hundred (the
		// reader exits, the socket stays connected): the ping timeout is
		// then what notices the drop, as on a real network.
		so.SetPingInterval(time.Second)
		so.SetPingTimeout(2 * time.Second)
		csr := &socket.ConnectionStateRecovery{}
		csr.SetMaxDisconnectionDuration(maxDisconnection.Milliseconds())
		csr.SetSkipMiddlewares(true)
		so.SetConnectionStateRecovery(csr)
	}
	return m
}

// recoveryCluster starts n servers with recovery on the Redis of the
// streams mode (miniredis, or REDIS_URL).
func recoveryCluster(t *testing.T, n int, maxDisconnection time.Duration, configure ...func(*StreamsOptions)) *testkit.Cluster {
	t.Helper()
	m := modeRecovery(maxDisconnection, configure...)
	return streamsCluster(t, envFor(t, m), n, m, "/chat")
}

// streamOf returns the stream of namespace nsp of the cluster's servers
// (modeStreams names streams after the cluster's key).
func streamOf(c *testkit.Cluster, nsp string) string {
	return builderOf(c, 0).t.(*streamsTransport).ns(nsp).stream
}

func sessionKey(c *testkit.Cluster, pid string) string { return c.Key + ":session:" + pid }

var offsetPattern = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

// offsetOf returns the last argument of ev as an offset, or "" when it is not
// one.
func offsetOf(ev sioclient.Event) string {
	if len(ev.Args) == 0 {
		return ""
	}
	s, _ := ev.Args[len(ev.Args)-1].(string)
	if !offsetPattern.MatchString(s) {
		return ""
	}
	return s
}

// xlen returns the length of a stream.
func xlen(t *testing.T, c *testkit.Cluster, stream string) int64 {
	t.Helper()
	n, err := c.Masters[0].XLen(context.Background(), stream).Result()
	if err != nil {
		t.Fatalf("XLEN %s: %v", stream, err)
	}
	return n
}

// waitXLen waits until stream holds n entries: every publish before has
// been written.
func waitXLen(t *testing.T, c *testkit.Cluster, stream string, n int64) {
	t.Helper()
	testkit.WaitFor(t, fmt.Sprintf("stream %s holds %d entries", stream, n), func() bool { return xlen(t, c, stream) == n })
}

// dropAndPersist drops cl at the transport level and waits until its server
// disconnected the socket and persisted its session.
func dropAndPersist(t *testing.T, c *testkit.Cluster, cl *sioclient.Client, s *socket.Socket) {
	t.Helper()
	pid := cl.PID()
	if pid == "" {
		t.Fatal("the client got no session id: recovery is not enabled")
	}
	cl.Drop()
	testkit.WaitFor(t, "the server disconnects the dropped socket", func() bool { return !s.Connected() })
	testkit.WaitFor(t, "the session is persisted", func() bool {
		return c.Masters[0].Exists(context.Background(), sessionKey(c, pid)).Val() == 1
	})
}

// reconnect dials server i with cl's session and returns the new client, its
// server-side socket and how long the connection took.
func reconnect(t *testing.T, c *testkit.Cluster, i int, cl *sioclient.Client, opts ...sioclient.Option) (*sioclient.Client, *socket.Socket, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel()
	start := time.Now()
	cl2, err := cl.Reconnect(ctx, c.Nodes[i].URL, opts...)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("reconnect to server %d: %v", i, err)
	}
	return cl2, c.Nodes[i].Accept(t, cl.Namespace(), cl2), took
}

// fence makes sure every server's reader has passed every entry written so
// far: each server in turn broadcasts to the room "witness", where one
// client of every other server waits for it (a reader delivers in stream
// order).
func fence(t *testing.T, c *testkit.Cluster, witnesses []*sioclient.Client, round int) {
	t.Helper()
	for i := range c.Nodes {
		name := fmt.Sprintf("fence-%d-%d", round, i)
		c.Ns(i, "/").To("witness").Emit(name)
		for j, w := range witnesses {
			if j != i {
				ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
				_, err := w.WaitFor(ctx, name, 1)
				cancel()
				if err != nil {
					for k := range c.Nodes {
						t.Logf("server %d: %+v", k, builderOf(c, k).Stats())
					}
					for k, w := range witnesses {
						t.Logf("witness %d: %d n events, errors %v", k, len(w.Received("n")), w.Errors())
					}
					st := streamOf(c, "/")
					info, _ := c.Masters[0].XInfoStream(context.Background(), st).Result()
					t.Logf("stream %+v", info)
					t.Fatalf("fence %s: %v", name, err)
				}
			}
		}
	}
}

// texts lists the first argument of each event.
func texts(evs []sioclient.Event) []string {
	var out []string
	for _, ev := range evs {
		if len(ev.Args) > 0 {
			s, _ := ev.Args[0].(string)
			out = append(out, s)
		}
	}
	return out
}

func TestRecoveryAcrossServers(t *testing.T) {
	for _, target := range []int{1, 0} {
		t.Run(fmt.Sprintf("reconnect-to-%s", map[int]string{0: "A", 1: "B"}[target]), func(t *testing.T) {
			testRecovery(t, target)
		})
	}
}

func testRecovery(t *testing.T, target int) {
	c := recoveryCluster(t, 2, time.Minute)
	stream := streamOf(c, "/")
	ctx := context.Background()

	var witnesses []*sioclient.Client
	for i := range c.Nodes {
		w, ws := c.Connect(i, "/")
		ws.Join("witness")
		witnesses = append(witnesses, w)
	}
	cl, s := c.Connect(0, "/")
	s.Join("room1")
	s.SetData(map[string]any{"user": "u1", "n": 7})
	sid := cl.ID()

	// An offset to come back with.
	c.Ns(1, "/").To("room1").Emit("m", "before")
	before := testkit.WaitEvents(t, cl, "m", 1)
	if offsetOf(before[0]) == "" || cl.LastOffset() != offsetOf(before[0]) {
		t.Fatalf("the first event carries no offset: %v (LastOffset %q)", before[0].Args, cl.LastOffset())
	}
	fence(t, c, witnesses, 0)
	dropAndPersist(t, c, cl, s)

	base := xlen(t, c, stream)
	nsA, nsB := c.Ns(0, "/"), c.Ns(1, "/")
	// From B: what the client must get (+) and must not (-).
	nsB.Emit("m", "all-B")                                    // +
	nsB.To("room1").Emit("m", "room1-B")                      // +
	nsB.To("room2").Emit("m", "room2-B")                      // - another room
	nsB.Except("room1").Emit("m", "except-room1-B")           // - excluded
	nsB.To("room2", "room1").Except("room3").Emit("m", "r-B") // +
	nsB.Volatile().Emit("m", "volatile-B")                    // - volatile
	nsB.Emit("m", "bin-B", []byte{1, 2, 3})                   // + binary
	c.Ns(1, "/chat").Emit("m", "chat-B")                      // - another namespace, same stream
	nsB.Compress(false).Emit("m", "compress-B")               // +
	waitXLen(t, c, stream, base+9)
	// From A, the server the client left.
	nsA.Emit("m", "all-A")                                 // +
	nsA.To(socket.Room(sid)).Emit("m", "sid-A")            // + its own room
	nsA.Local().Emit("m", "local-A")                       // - local: not in the stream
	nsA.Except(socket.Room(sid)).Emit("m", "except-sid-A") // -
	waitXLen(t, c, stream, base+12)
	fence(t, c, witnesses, 1)

	cl2, s2, took := reconnect(t, c, target, cl)
	t.Logf("recovery on server %d took %v (dial, restore, missed packets, CONNECT)", target, took)
	if !cl2.Recovered() || cl2.ID() != sid || cl2.PID() != cl.PID() {
		t.Fatalf("not recovered: Recovered %v, id %q (was %q), pid %q (was %q)", cl2.Recovered(), cl2.ID(), sid, cl2.PID(), cl.PID())
	}
	if !s2.Recovered() || string(s2.Id()) != sid {
		t.Errorf("server side: Recovered %v, id %q", s2.Recovered(), s2.Id())
	}
	if !s2.Rooms().Has("room1") || !s2.Rooms().Has(socket.Room(sid)) || s2.Rooms().Len() != 2 {
		t.Errorf("rooms after recovery: %v", s2.Rooms().Keys())
	}
	if got, want := s2.Data(), map[string]any{"user": "u1", "n": int64(7)}; !sameJSONish(got, want) {
		t.Errorf("data after recovery: %#v, want %#v", got, want)
	}
	if c.Masters[0].Exists(ctx, sessionKey(c, cl.PID())).Val() != 0 {
		t.Error("the session is still in Redis after its restore")
	}

	// Live delivery goes on after the missed packets.
	c.Ns(1-target, "/").To("room1").Emit("m", "after")
	evs := testkit.WaitEvents(t, cl2, "m", 8)
	want := []string{"all-B", "room1-B", "r-B", "bin-B", "compress-B", "all-A", "sid-A", "after"}
	if got := texts(evs); !reflect.DeepEqual(got, want) {
		t.Fatalf("received %v, want %v", got, want)
	}
	// Each with the id of its entry as last argument, in stream order.
	entries, err := c.Masters[0].XRange(ctx, stream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]redis.XMessage{}
	for _, e := range entries {
		byID[e.ID] = e
	}
	prev := offsetOf(before[0])
	for _, ev := range evs {
		off := offsetOf(ev)
		if off == "" {
			t.Errorf("%v: no offset", ev.Args)
			continue
		}
		if cmpOffsets(off, prev) <= 0 {
			t.Errorf("%v: offset %s not after %s", ev.Args, off, prev)
		}
		prev = off
		e, ok := byID[off]
		if !ok {
			t.Errorf("%v: offset %s is no entry of the stream", ev.Args, off)
			continue
		}
		m, err := wire.DecodeStreamEntry(e.Values["uid"].(string), e.Values["nsp"].(string), e.Values["type"].(string), fmt.Sprint(e.Values["data"]))
		if err != nil {
			t.Fatal(err)
		}
		if data, _ := m.Packet.Data.([]any); len(data) < 2 || jsonOf(t, data[1]) != jsonOf(t, ev.Args[0]) {
			t.Errorf("offset %s is the entry of %v, not of %v", off, m.Packet.Data, ev.Args)
		}
	}
	if bin := evs[3]; !bin.Binary || !reflect.DeepEqual(bin.Args[1], []byte{1, 2, 3}) {
		t.Errorf("binary missed packet: %+v", bin)
	}
	if cl2.LastOffset() != offsetOf(evs[len(evs)-1]) {
		t.Errorf("LastOffset %q, want the last event's", cl2.LastOffset())
	}
	if errs := cl2.Errors(); len(errs) > 0 {
		t.Errorf("client errors: %v", errs)
	}
}

// jsonOf is the JSON of v (arguments kept raw by the decoder included).
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sameJSONish compares maps of the session data, numbers by value.
func sameJSONish(got any, want map[string]any) bool {
	m, ok := got.(map[string]any)
	if !ok || len(m) != len(want) {
		return false
	}
	for k, v := range want {
		if fmt.Sprint(m[k]) != fmt.Sprint(v) {
			return false
		}
	}
	return true
}

// expectFresh checks that a reconnection was not recovered: a new id and
// session, no missed packet.
func expectFresh(t *testing.T, old, cl2 *sioclient.Client, s2 *socket.Socket) {
	t.Helper()
	if cl2.Recovered() || s2.Recovered() {
		t.Errorf("recovered (client %v, server %v), want a new session", cl2.Recovered(), s2.Recovered())
	}
	if cl2.ID() == old.ID() || cl2.PID() == old.PID() || cl2.PID() == "" {
		t.Errorf("id %q pid %q after a failed recovery (were %q, %q)", cl2.ID(), cl2.PID(), old.ID(), old.PID())
	}
	if s2.Rooms().Len() != 1 || !s2.Rooms().Has(socket.Room(cl2.ID())) {
		t.Errorf("rooms of the new session: %v", s2.Rooms().Keys())
	}
	// Nothing missed arrives: a live broadcast is the first event.
	s2.Nsp().Emit("live", "x")
	testkit.WaitEvents(t, cl2, "live", 1)
	if got := cl2.Received("m"); len(got) != 0 {
		t.Errorf("a new session got missed packets: %v", texts(got))
	}
}

func TestRecoveryExpiredSession(t *testing.T) {
	c := recoveryCluster(t, 2, time.Second)
	witness, _ := c.Connect(1, "/")
	cl, s := c.Connect(0, "/")
	c.Ns(1, "/").Emit("m", "before")
	testkit.WaitEvents(t, cl, "m", 1)
	dropAndPersist(t, c, cl, s)
	c.Ns(1, "/").Emit("m", "missed")
	testkit.WaitEvents(t, witness, "m", 2) // delivered: not live to the next clients
	key := sessionKey(c, cl.PID())
	if mini := c.Env.Redis.Mini(); mini != nil {
		mini.FastForward(2 * time.Second)
	}
	testkit.WaitFor(t, "the session expires", func() bool {
		return c.Masters[0].Exists(context.Background(), key).Val() == 0
	})
	cl2, s2, _ := reconnect(t, c, 1, cl)
	expectFresh(t, cl, cl2, s2)
}

func TestRecoveryTrimmedOffset(t *testing.T) {
	c := recoveryCluster(t, 2, time.Minute, func(o *StreamsOptions) { o.MaxLen = 10 })
	stream := streamOf(c, "/")
	var witnesses []*sioclient.Client
	for i := range c.Nodes {
		w, ws := c.Connect(i, "/")
		ws.Join("witness")
		witnesses = append(witnesses, w)
	}
	cl, s := c.Connect(0, "/")
	c.Ns(1, "/").Emit("m", "before")
	ev := testkit.WaitEvents(t, cl, "m", 1)
	off := offsetOf(ev[0])
	dropAndPersist(t, c, cl, s)
	for i := range 400 {
		c.Ns(1, "/").Emit("n", i)
	}
	// All written first: a reader that lags more than MaxLen entries behind
	// loses what was trimmed meanwhile, the fences too.
	b := builderOf(c, 1)
	testkit.WaitFor(t, "B wrote the entries", func() bool { st := b.Stats(); return st.Published >= 401 && st.QueueLength == 0 })
	fence(t, c, witnesses, 0) // no "n" left to deliver live
	testkit.WaitFor(t, "the offset is trimmed from the stream", func() bool {
		return len(c.Masters[0].XRange(context.Background(), stream, off, off).Val()) == 0
	})
	cl2, s2, _ := reconnect(t, c, 1, cl)
	expectFresh(t, cl, cl2, s2)
	if got := cl2.Received("n"); len(got) != 0 {
		t.Errorf("a new session got %d missed packets", len(got))
	}
}

func TestRecoveryInvalidOffsetOrSession(t *testing.T) {
	c := recoveryCluster(t, 2, time.Minute)
	witness, _ := c.Connect(1, "/")
	cl, s := c.Connect(0, "/")
	c.Ns(1, "/").Emit("m", "before")
	testkit.WaitEvents(t, cl, "m", 1)
	dropAndPersist(t, c, cl, s)
	c.Ns(1, "/").Emit("m", "missed")
	testkit.WaitEvents(t, witness, "m", 2) // delivered: not live to the next clients

	for _, tc := range []struct {
		name string
		opt  sioclient.Option
	}{
		{"invalid offset", sioclient.WithSession(cl.PID(), "not-an-offset")},
		{"offset with a trailing newline", sioclient.WithSession(cl.PID(), cl.LastOffset()+"\n")},
		{"unknown pid", sioclient.WithSession("unknown-pid", cl.LastOffset())},
		{"offset of no entry", sioclient.WithSession(cl.PID(), "1-0")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl2, s2, _ := reconnect(t, c, 1, cl, tc.opt)
			expectFresh(t, cl, cl2, s2)
		})
	}
	// The offset of no entry consumed the session (as in Node: the session is
	// fetched and deleted before the offset is known to be gone); an
	// invalid offset does not touch Redis.
	if c.Masters[0].Exists(context.Background(), sessionKey(c, cl.PID())).Val() != 0 {
		t.Error("session still persisted after a restore attempt with a valid offset")
	}
}

// TestRecoveryHostileEntries: entries that do not decode, in the range a
// restore pages through, are skipped and counted; the others are replayed.
func TestRecoveryHostileEntries(t *testing.T) {
	c := recoveryCluster(t, 2, time.Minute)
	stream := streamOf(c, "/")
	cl, s := c.Connect(0, "/")
	c.Ns(1, "/").Emit("m", "before")
	testkit.WaitEvents(t, cl, "m", 1)
	dropAndPersist(t, c, cl, s)
	ctx := context.Background()
	add := func(values ...any) {
		if err := c.Masters[0].XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	base := xlen(t, c, stream)
	entries := hostileEntries()
	for _, e := range entries {
		add(e...)
	}
	c.Ns(1, "/").Emit("m", "good")
	// "good" must be in the stream before the restore reads it: the
	// publisher writes it asynchronously, and a restore that runs first
	// leaves it to the local queue, unordered with node 0's "after".
	waitXLen(t, c, stream, base+int64(len(entries))+1)
	// B's reader counts them first (see TestStreamsHostileEntries); then
	// the restore meets them again.
	b := builderOf(c, 1)
	hostile := func() uint64 { return b.Stats().DroppedMalformed + b.Stats().DroppedOversized }
	testkit.WaitFor(t, "B's reader drops the hostile entries", func() bool { return hostile() >= 10 })
	dropped := hostile()
	cl2, _, _ := reconnect(t, c, 1, cl)
	if !cl2.Recovered() {
		t.Fatal("not recovered")
	}
	c.Ns(0, "/").Emit("m", "after")
	if got := texts(testkit.WaitEvents(t, cl2, "m", 2)); !reflect.DeepEqual(got, []string{"good", "after"}) {
		t.Errorf("received %v", got)
	}
	if n := hostile() - dropped; n != 6 {
		t.Errorf("the restore counted %d hostile entries, want 6 (the broadcasts of the namespace that do not decode)", n)
	}
}

// hostileEntries are stream entries no server wrote: XADD field lists.
func hostileEntries() [][]any {
	// A msgpack array claiming 2^32-1 elements, in a few bytes.
	huge := base64.StdEncoding.EncodeToString([]byte{0x81, 0xa6, 'p', 'a', 'c', 'k', 'e', 't', 0xdd, 0xff, 0xff, 0xff, 0xff})
	return [][]any{
		{"uid", "x", "nsp", "/", "type", "3", "data", "{not json"},
		{"uid", "x", "nsp", "/", "type", "3", "data", "!!not base64!!"},
		{"uid", "x", "nsp", "/", "type", "3", "data", huge},
		{"uid", "x", "nsp", "/", "type", "3", "data", `{"packet":{"type":2,"data":[` + strings.Repeat("[", 5000) + `]}}`},
		{"uid", "x", "nsp", "/", "type", "3"},                        // a broadcast without data
		{"uid", "x", "nsp", "/", "type", "3", "data", `{"opts":{}}`}, // without packet
		{"uid", "x", "nsp", "/", "type", "banana", "data", "{}"},     // bad type
		{"uid", "x", "nsp", "/", "type", "99", "data", "{}"},         // unknown type
		{"uid", "x", "nsp", "/", "data", "{}"},                       // no type
		{"uid", "x", "type", "3", "data", "{}"},                      // no namespace
	}
}

// TestRecoveryBounded: a restore reads at most maxRestorePages pages of
// ReadCount entries; a session value is decoded within its memory budget.
func TestRecoveryBounded(t *testing.T) {
	const readCount = 4
	c := recoveryCluster(t, 2, time.Minute, func(o *StreamsOptions) { o.ReadCount = readCount })
	stream := streamOf(c, "/")
	ctx := context.Background()

	t.Run("pages", func(t *testing.T) {
		cl, s := c.Connect(0, "/")
		c.Ns(1, "/").Emit("m", "before")
		testkit.WaitEvents(t, cl, "m", 1)
		dropAndPersist(t, c, cl, s)
		// More entries than a restore may read, written directly (faster).
		limit := maxRestorePages * readCount
		p := c.Masters[0].Pipeline()
		for i := range limit + 20 {
			data := fmt.Sprintf(`{"packet":{"type":2,"data":["n",%d]},"opts":{"rooms":[],"except":[],"flags":{}}}`, i)
			p.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"uid", "x", "nsp", "/", "type", "3", "data", data}})
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		cl2, s2, _ := reconnect(t, c, 1, cl)
		// A restore that cannot reach the end of the stream would miss
		// packets: the client must not be told it recovered.
		if cl2.Recovered() {
			got := len(cl2.Received("n"))
			if got > limit {
				t.Errorf("a restore replayed %d entries, more than %d pages of %d", got, maxRestorePages, readCount)
			}
			t.Errorf("recovered with %d of %d missed packets", got, limit+20)
		} else {
			expectFresh(t, cl, cl2, s2)
		}
	})

	t.Run("large session data", func(t *testing.T) {
		cl, s := c.Connect(0, "/")
		blob := strings.Repeat("x", 256<<10)
		s.SetData(map[string]any{"blob": blob})
		c.Ns(1, "/").Emit("m", "before")
		testkit.WaitEvents(t, cl, "m", 1)
		dropAndPersist(t, c, cl, s)
		cl2, s2, _ := reconnect(t, c, 1, cl)
		if !cl2.Recovered() {
			t.Fatal("not recovered")
		}
		if d, _ := s2.Data().(map[string]any); d == nil || d["blob"] != blob {
			t.Error("the data of the session did not come back whole")
		}
	})

	t.Run("hostile session", func(t *testing.T) {
		cl, s := c.Connect(0, "/")
		c.Ns(1, "/").Emit("m", "before")
		testkit.WaitEvents(t, cl, "m", 1)
		dropAndPersist(t, c, cl, s)
		// The session replaced by one whose data claims 2^32-1 elements.
		raw := []byte{0x84, 0xa3, 's', 'i', 'd', 0xa1, 'x', 0xa3, 'p', 'i', 'd', 0xa1, 'y', 0xa5, 'r', 'o', 'o', 'm', 's', 0x90, 0xa4, 'd', 'a', 't', 'a', 0xdd, 0xff, 0xff, 0xff, 0xff}
		if err := c.Masters[0].Set(ctx, sessionKey(c, cl.PID()), base64.StdEncoding.EncodeToString(raw), time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		b := builderOf(c, 1)
		before := b.Stats().DroppedMalformed + b.Stats().DroppedOversized
		cl2, s2, _ := reconnect(t, c, 1, cl)
		expectFresh(t, cl, cl2, s2)
		if b.Stats().DroppedMalformed+b.Stats().DroppedOversized == before {
			t.Error("the hostile session was not counted")
		}
	})
}

// TestRecoveryNamespacesGo126: socket.io v2.5.0's own session-aware adapter
// panics at namespace creation under Go 1.26 (runtime.AddCleanup in
// engine.io's Timer.Unref); ours must not, for static and dynamic
// namespaces alike, and recovery must work outside "/". Run with -race.
func TestRecoveryNamespacesGo126(t *testing.T) {
	m := modeRecovery(time.Minute)
	c := streamsCluster(t, envFor(t, m), 2, m, "/chat", "/admin", "/a/b")
	stream := streamOf(c, "/")
	connections := make(chan *socket.Socket, 8)
	for _, nd := range c.Nodes {
		nd.IO.Of(regexp.MustCompile(`^/dyn-\d+$`), func(args ...any) { connections <- args[0].(*socket.Socket) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel()
	accepted := func() *socket.Socket {
		t.Helper()
		select {
		case s := <-connections:
			return s
		case <-ctx.Done():
			t.Fatal("no connection in a dynamic namespace")
			return nil
		}
	}
	// Dynamic namespaces created by clients: /dyn-1 on A only, /dyn-2 on
	// both.
	var clients []*sioclient.Client
	var sockets []*socket.Socket
	for _, d := range []struct {
		node int
		nsp  string
	}{{0, "/dyn-1"}, {0, "/dyn-2"}, {1, "/dyn-2"}} {
		cl, err := sioclient.Dial(ctx, c.Nodes[d.node].URL, d.nsp)
		if err != nil {
			t.Fatalf("dial %s: %v", d.nsp, err)
		}
		t.Cleanup(func() { _ = cl.Close() })
		clients = append(clients, cl)
		sockets = append(sockets, accepted())
	}
	// Recovery in /dyn-1, from A to B, where the namespace does not exist
	// yet: B creates it when the client comes back.
	cl, s := clients[0], sockets[0]
	s.Join("r")
	s.Nsp().To("r").Emit("m", "before")
	testkit.WaitEvents(t, cl, "m", 1)
	dropAndPersist(t, c, cl, s)
	base := xlen(t, c, stream)
	s.Nsp().To("r").Emit("m", "missed")
	sockets[2].Nsp().Emit("m", "other namespace")
	waitXLen(t, c, stream, base+2)
	cl2, err := cl.Reconnect(ctx, c.Nodes[1].URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl2.Close() })
	s2 := accepted()
	if !cl2.Recovered() || cl2.ID() != cl.ID() || !s2.Recovered() || !s2.Rooms().Has("r") {
		t.Fatalf("not recovered in /dyn-1: %v %q (was %q), rooms %v", cl2.Recovered(), cl2.ID(), cl.ID(), s2.Rooms().Keys())
	}
	if got := texts(testkit.WaitEvents(t, cl2, "m", 1)); !reflect.DeepEqual(got, []string{"missed"}) {
		t.Errorf("received %v", got)
	}
	// And in a static namespace other than "/".
	cla, sa := c.Connect(0, "/a/b")
	c.Ns(1, "/a/b").Emit("m", "before")
	testkit.WaitEvents(t, cla, "m", 1)
	dropAndPersist(t, c, cla, sa)
	base = xlen(t, c, stream)
	c.Ns(1, "/a/b").Emit("m", "missed")
	c.Ns(1, "/chat").Emit("m", "chat")
	waitXLen(t, c, stream, base+2)
	cla2, _, _ := reconnect(t, c, 1, cla)
	if !cla2.Recovered() {
		t.Fatal("not recovered in /a/b")
	}
	c.Ns(0, "/a/b").Emit("m", "after")
	if got := texts(testkit.WaitEvents(t, cla2, "m", 2)); !reflect.DeepEqual(got, []string{"missed", "after"}) {
		t.Errorf("received %v", got)
	}
}

// cmpOffsets compares two stream entry ids (ms-seq) as Redis orders them.
func cmpOffsets(x, y string) int {
	var xm, xs, ym, ys uint64
	fmt.Sscanf(x, "%d-%d", &xm, &xs)
	fmt.Sscanf(y, "%d-%d", &ym, &ys)
	if c := cmp.Compare(xm, ym); c != 0 {
		return c
	}
	return cmp.Compare(xs, ys)
}
