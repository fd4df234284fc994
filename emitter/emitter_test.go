package emitter_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io/v2/socket"
	"go.uber.org/goleak"

	"github.com/d38ad898/redisadapter"
	"github.com/d38ad898/redisadapter/emitter"
	"github.com/d38ad898/redisadapter/internal/testkit/sioclient"
)

// waitTimeout bounds every wait for a condition in the tests.
const waitTimeout = 10 * time.Second

// testRedis is the Redis a test runs against: the real server named by
// REDIS_URL when it is set, an in-process miniredis otherwise.
type testRedis struct {
	opts *redis.Options
}

func newTestRedis(t testing.TB) *testRedis {
	t.Helper()
	if u := os.Getenv("REDIS_URL"); u != "" {
		o, err := redis.ParseURL(u)
		if err != nil {
			t.Fatalf("REDIS_URL: %v", err)
		}
		return &testRedis{opts: o}
	}
	m := miniredis.RunT(t)
	return &testRedis{opts: &redis.Options{Addr: m.Addr()}}
}

// client returns a new go-redis client for this Redis, closed at the end of
// the test.
func (r *testRedis) client(t testing.TB) *redis.Client {
	t.Helper()
	o := *r.opts
	c := redis.NewClient(&o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// miniClient returns a client of a new miniredis, for the tests that use
// the default key, which a shared real Redis may carry real traffic on.
func miniClient(t testing.TB) *redis.Client {
	t.Helper()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// uniqueKey gives a test its own channel prefix, so that tests sharing a real
// Redis never see each other's traffic.
func uniqueKey() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "test-emitter-" + hex.EncodeToString(b[:])
}

// verifyNoLeaks checks, after every other cleanup of the test, that no
// goroutine started during the test is left. Goroutines still winding down
// get a few seconds.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := goleak.Find(ignore)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("goroutines left behind: %v", err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// sniffer records what is published on the channels matching a pattern.
type sniffer struct {
	t  testing.TB
	ps *redis.PubSub
	ch <-chan *redis.Message
}

// sniff subscribes to pattern and returns once the subscription is active.
func sniff(t testing.TB, rdb *redis.Client, pattern string) *sniffer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ps := rdb.PSubscribe(ctx, pattern)
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatalf("psubscribe %s: %v", pattern, err)
	}
	return &sniffer{t: t, ps: ps, ch: ps.Channel()}
}

// next returns the next message published on the sniffed channels.
func (s *sniffer) next() *redis.Message {
	s.t.Helper()
	select {
	case m := <-s.ch:
		return m
	case <-time.After(waitTimeout):
		s.t.Fatal("timed out waiting for a published message")
		return nil
	}
}

// expect checks that the next message is payload on channel.
func (s *sniffer) expect(channel string, payload []byte) {
	s.t.Helper()
	m := s.next()
	if m.Channel != channel {
		s.t.Errorf("published on %q, want %q", m.Channel, channel)
	}
	if m.Payload != string(payload) {
		s.t.Errorf("payload on %s:\n got %s\nwant %s", m.Channel, show(m.Payload), show(string(payload)))
	}
}

// show prints a payload as text when it is JSON and in hex otherwise.
func show(p string) string {
	if strings.HasPrefix(p, "{") {
		return p
	}
	return hex.EncodeToString([]byte(p))
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestEmitGoldenBytes checks the frame of emitter.emit("em", 1) against the
// bytes captured from @socket.io/redis-emitter 5.1.0.
func TestEmitGoldenBytes(t *testing.T) {
	rdb := miniClient(t) // the default key: never on a shared real Redis
	s := sniff(t, rdb, "socket.io#*")
	check(t, emitter.New(rdb, nil).Emit("em", 1))
	s.expect("socket.io#/#", mustHex(t, "93a7656d697474657283a47479706502a46461746192a2656d01a36e7370a12f83a5726f6f6d7390a5666c61677380a665786365707490"))
}

// TestEmitValues checks how argument values are encoded, on the arguments of
// the Node capture io.emit("test", 1, "2", Buffer[3,4], 1.5, -33, 2**32,
// new Date(Date.UTC(2000,5,13)), {n: null, arr: [undefined, 1]}), with the
// object's keys in sorted order (Go maps have no insertion order).
func TestEmitValues(t *testing.T) {
	rdb := newTestRedis(t).client(t)
	key := uniqueKey()
	s := sniff(t, rdb, key+"#*")
	em := emitter.New(rdb, &emitter.Options{Key: key})
	check(t, em.Emit("test", 1, "2", []byte{3, 4}, 1.5, -33, int64(4294967296),
		time.Date(2000, 6, 13, 0, 0, 0, 0, time.UTC), map[string]any{"n": nil, "arr": []any{nil, 1}}))
	s.expect(key+"#/#", mustHex(t, "93 a7656d6974746572 83 a474797065 02 a464617461"+
		" 99 a474657374 01 a132 c4020304 cb3ff8000000000000 d0df cf0000000100000000 d6ff39457980"+
		" 82 a3617272 92c001 a16e c0"+
		" a36e7370 a12f 83 a5726f6f6d73 90 a5666c616773 80 a6657863657074 90"))
}

// TestEmitConvertsArguments checks readers, float32, structs and nil
// pointers, and that in-memory readers are not consumed.
func TestEmitConvertsArguments(t *testing.T) {
	rdb := newTestRedis(t).client(t)
	key := uniqueKey()
	s := sniff(t, rdb, key+"#*")
	em := emitter.New(rdb, &emitter.Options{Key: key})

	type user struct {
		Name   string `json:"name"`
		Age    int    `json:"age,omitempty"`
		Secret string `json:"-"`
	}
	br := bytes.NewReader([]byte{1, 2})
	var bb bytes.Buffer
	bb.WriteString("bb")
	sr := strings.NewReader("sr")
	ebb := types.NewBytesBuffer([]byte{9})
	args := []any{
		br, &bb, sr, ebb, types.NewStringBufferString("text"),
		io.MultiReader(strings.NewReader("multi")),
		float32(0.5), float32(2), user{Name: "ann", Secret: "x"}, (*user)(nil),
		[]string{"a"}, []any{bytes.NewReader([]byte{7})},
	}
	check(t, em.Emit("conv", args...))
	m := s.next()

	var frame []any
	if err := msgpack.Unmarshal([]byte(m.Payload), &frame); err != nil {
		t.Fatal(err)
	}
	data := frame[1].(map[string]any)["data"].([]any)
	want := []any{"conv",
		[]byte{1, 2}, []byte("bb"), "sr", []byte{9}, "text", []byte("multi"),
		0.5, int8(2), map[string]any{"name": "ann"}, nil,
		[]any{"a"}, []any{[]byte{7}},
	}
	if !reflect.DeepEqual(data, want) {
		t.Errorf("data = %#v\nwant   %#v", data, want)
	}
	if !bytes.Contains([]byte(m.Payload), mustHex(t, "cb3fe0000000000000")) {
		t.Errorf("float32(0.5) is not a float64 in %x", m.Payload)
	}
	if br.Len() != 2 || bb.Len() != 2 || sr.Len() != 2 || ebb.Len() != 1 {
		t.Errorf("in-memory readers were consumed: %d %d %d %d bytes left", br.Len(), bb.Len(), sr.Len(), ebb.Len())
	}
}

// TestEmitFlagsAndRooms checks the opts object: rooms, except and flags in
// the emitter's key order (rooms, flags, except), flags in the order they
// were set, and compress(false) written out, as the Node emitter does.
func TestEmitFlagsAndRooms(t *testing.T) {
	rdb := newTestRedis(t).client(t)
	key := uniqueKey()
	s := sniff(t, rdb, key+"#*")
	em := emitter.New(rdb, &emitter.Options{Key: key})

	// emitter.to(["r1","r2"]).except("r3").volatile.compress(false).emit("x")
	check(t, em.To("r1", "r2").Except("r3").Volatile().Compress(false).Emit("x"))
	s.expect(key+"#/#", mustHex(t, "93a7656d6974746572 83 a474797065 02 a464617461 91 a178 a36e7370 a12f"+
		" 83 a5726f6f6d73 92 a27231 a27232"+
		" a5666c616773 82 a8766f6c6174696c65 c3 a8636f6d7072657373 c2"+
		" a6657863657074 91 a27233"))

	// A flag set again keeps its place and takes the new value.
	check(t, em.Compress(true).Volatile().Compress(false).Emit("y"))
	m := s.next()
	if want := mustHex(t, "a5666c616773 82 a8636f6d7072657373 c2 a8766f6c6174696c65 c3"); !bytes.Contains([]byte(m.Payload), want) {
		t.Errorf("flags of %x do not contain %x", m.Payload, want)
	}

	// Rooms and exceptions are sets.
	check(t, em.To("a", "b").In("a").Except("c", "c").Except("c").Emit("z"))
	s.expect(key+"#/#", mustHex(t, "93a7656d6974746572 83 a474797065 02 a464617461 91 a17a a36e7370 a12f"+
		" 83 a5726f6f6d73 92 a161 a162 a5666c616773 80 a6657863657074 91 a163"))
}

// TestNodeEmitterParity makes the calls of testdata/node_emitter.js and
// checks that every PUBLISH (channel and payload) is the one that
// @socket.io/redis-emitter 5.1.0 made for them (testdata/node_emitter.golden).
// Go maps have no insertion order, so the calls use objects of one key.
func TestNodeEmitterParity(t *testing.T) {
	golden, err := os.ReadFile("testdata/node_emitter.golden")
	check(t, err)
	want := strings.Split(strings.TrimSpace(string(golden)), "\n")

	rdb := newTestRedis(t).client(t)
	key := uniqueKey() // stands for the default key, "socket.io", of the capture
	s := sniff(t, rdb, key+"*")
	em := emitter.New(rdb, &emitter.Options{Key: key})
	check(t, em.Emit("em", 1))
	check(t, em.To("r1", "r2").Except("r3").Volatile().Compress(false).Emit("x"))
	check(t, em.Compress(true).Volatile().Compress(false).Emit("y"))
	check(t, em.Of("admin").To("r1").Emit("ev", "s", 1.5, -33, int64(4294967296), []byte{3, 4}, nil, true,
		[]any{1, []any{2}}, map[string]any{"a": 1}))
	check(t, em.To("r").Volatile().Emit("v", "a string that is longer than thirty-one chars",
		300, 70000, -200, 2.5, 0, -1, 255, 65536, "héllo ✓"))
	check(t, em.Except("c").Except("c", "d").To("a").To("b").To("a").Emit("z", time.Date(2000, 6, 13, 0, 0, 0, 0, time.UTC)))
	check(t, em.In("room1").SocketsJoin("room7"))
	check(t, em.SocketsLeave("a", "b"))
	check(t, em.To("x").Except("y").DisconnectSockets(true))
	check(t, em.DisconnectSockets(false))
	check(t, em.ServerSideEmit("hello", "world", 1, "<&>", map[string]any{"k": []any{true, nil}}))
	check(t, em.Of("/custom").ServerSideEmit("hi"))
	check(t, em.Of("").Emit("root"))

	for i, line := range want {
		channel, payload, _ := strings.Cut(line, " ")
		channel = key + strings.TrimPrefix(channel, "socket.io")
		if text, ok := strings.CutPrefix(payload, "J"); ok {
			s.expect(channel, []byte(text))
		} else {
			s.expect(channel, mustHex(t, payload))
		}
		if t.Failed() {
			t.Fatalf("mismatch at line %d of the golden file", i+1)
		}
	}
}

// TestChannelSelection checks that a broadcast goes to the room channel when
// it targets exactly one room, and to the namespace channel otherwise.
func TestChannelSelection(t *testing.T) {
	rdb := newTestRedis(t).client(t)
	key := uniqueKey()
	s := sniff(t, rdb, key+"*")
	em := emitter.New(rdb, &emitter.Options{Key: key})
	cases := []struct {
		name    string
		em      *emitter.Emitter
		channel string
		nsp     string
	}{
		{"no room", em, "#/#", "/"},
		{"one room", em.To("r1"), "#/#r1#", "/"},
		{"one room twice", em.To("r1").In("r1"), "#/#r1#", "/"},
		{"two rooms", em.To("r1", "r2"), "#/#", "/"},
		{"two rooms in steps", em.To("r1").To("r2"), "#/#", "/"},
		{"except only", em.Except("r1"), "#/#", "/"},
		{"one room and except", em.To("r1").Except("r2"), "#/#r1#", "/"},
		{"empty room name", em.To(""), "#/##", "/"},
		{"namespace without slash", em.Of("admin"), "#/admin#", "/admin"},
		{"namespace with slash", em.Of("/admin"), "#/admin#", "/admin"},
		{"empty namespace", em.Of(""), "#/#", "/"},
		{"namespace and room", em.Of("admin").To("r1"), "#/admin#r1#", "/admin"},
		{"room kept by Of", em.To("r1").Of("/admin"), "#/admin#r1#", "/admin"},
	}
	for _, c := range cases {
		check(t, c.em.Emit("ev"))
		m := s.next()
		if m.Channel != key+c.channel {
			t.Errorf("%s: published on %q, want %q", c.name, m.Channel, key+c.channel)
		}
		var frame []any
		check(t, msgpack.Unmarshal([]byte(m.Payload), &frame))
		if nsp := frame[1].(map[string]any)["nsp"]; nsp != c.nsp {
			t.Errorf("%s: nsp = %v, want %s", c.name, nsp, c.nsp)
		}
		if c.em.Namespace() != c.nsp {
			t.Errorf("%s: Namespace() = %q, want %q", c.name, c.em.Namespace(), c.nsp)
		}
	}
}

// TestImmutable checks that the targeting methods leave their receiver as it
// was, including when they are called concurrently on a shared Emitter.
func TestImmutable(t *testing.T) {
	rdb := newTestRedis(t).client(t)
	key := uniqueKey()
	s := sniff(t, rdb, key+"*")
	base := emitter.New(rdb, &emitter.Options{Key: key}).To("a")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = base.To(fmt.Sprint("x", i)).Except("e").Volatile().Compress(true).Of("/other")
		}()
	}
	wg.Wait()
	check(t, base.Emit("ev"))
	s.expect(key+"#/#a#", mustHex(t, "93a7656d6974746572 83 a474797065 02 a464617461 91 a26576 a36e7370 a12f"+
		" 83 a5726f6f6d73 91 a161 a5666c616773 80 a6657863657074 90"))
}

// TestRequestsGoldenJSON checks the JSON requests of socketsJoin,
// socketsLeave, disconnectSockets and serverSideEmit against the Node
// emitter's.
func TestRequestsGoldenJSON(t *testing.T) {
	// A unique key: on a shared real Redis, these requests must not reach
	// the servers of anyone else.
	rdb := newTestRedis(t).client(t)
	key := uniqueKey()
	s := sniff(t, rdb, key+"-request#*")
	em := emitter.New(rdb, &emitter.Options{Key: key})
	ch := key + "-request#/#"

	check(t, em.In("room1").SocketsJoin("room7"))
	s.expect(ch, []byte(`{"type":2,"opts":{"rooms":["room1"],"except":[]},"rooms":["room7"]}`))

	check(t, em.SocketsJoin("a", "b"))
	s.expect(ch, []byte(`{"type":2,"opts":{"rooms":[],"except":[]},"rooms":["a","b"]}`))

	check(t, em.To("r").Except("x", "y").SocketsLeave("room7"))
	s.expect(ch, []byte(`{"type":3,"opts":{"rooms":["r"],"except":["x","y"]},"rooms":["room7"]}`))

	check(t, em.SocketsLeave())
	s.expect(ch, []byte(`{"type":3,"opts":{"rooms":[],"except":[]},"rooms":[]}`))

	check(t, em.In("r").Volatile().DisconnectSockets(true))
	s.expect(ch, []byte(`{"type":4,"opts":{"rooms":["r"],"except":[]},"close":true}`))

	check(t, em.DisconnectSockets(false))
	s.expect(ch, []byte(`{"type":4,"opts":{"rooms":[],"except":[]},"close":false}`))

	check(t, em.ServerSideEmit("hello", "world", 1, "<&>"))
	s.expect(ch, []byte(`{"uid":"emitter","type":6,"data":["hello","world",1,"<&>"]}`))

	check(t, em.To("ignored").Of("custom").ServerSideEmit("hi"))
	s.expect(key+"-request#/custom#", []byte(`{"uid":"emitter","type":6,"data":["hi"]}`))
}

// TestRefusedCalls checks the calls the Node emitter throws on: nothing is
// published for them.
func TestRefusedCalls(t *testing.T) {
	rdb := newTestRedis(t).client(t)
	key := uniqueKey()
	s := sniff(t, rdb, key+"*")
	em := emitter.New(rdb, &emitter.Options{Key: key})

	for _, ev := range []string{"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"} {
		if err := em.To("r").Emit(ev, 1); !errors.Is(err, emitter.ErrReservedEvent) || !strings.Contains(err.Error(), ev) {
			t.Errorf("Emit(%q) = %v, want ErrReservedEvent naming it", ev, err)
		}
	}
	if err := em.Emit("ev", 1, func([]any, error) {}); !errors.Is(err, emitter.ErrAckNotSupported) {
		t.Errorf("Emit with an ack = %v, want ErrAckNotSupported", err)
	}
	if err := em.ServerSideEmit("ev", func(args ...any) {}); !errors.Is(err, emitter.ErrAckNotSupported) {
		t.Errorf("ServerSideEmit with an ack = %v, want ErrAckNotSupported", err)
	}
	if err := em.ServerSideEmit(socket.Ack(func([]any, error) {})); !errors.Is(err, emitter.ErrNoEventName) {
		t.Errorf("ServerSideEmit(ack) = %v, want ErrNoEventName", err)
	}
	if err := em.ServerSideEmit(); !errors.Is(err, emitter.ErrNoEventName) {
		t.Errorf("ServerSideEmit() = %v, want ErrNoEventName", err)
	}
	if err := em.ServerSideEmit(42); !errors.Is(err, emitter.ErrNoEventName) {
		t.Errorf("ServerSideEmit(42) = %v, want ErrNoEventName", err)
	}
	if err := em.Emit("ev", make(chan int)); err == nil {
		t.Error("Emit with a channel argument succeeded")
	}
	if err := em.ServerSideEmit("ev", make(chan int)); err == nil {
		t.Error("ServerSideEmit with a channel argument succeeded")
	}

	// Nothing was published: the next message is this one.
	check(t, em.Emit("after"))
	m := s.next()
	if !strings.Contains(m.Payload, "after") {
		t.Errorf("unexpected message published: %x", m.Payload)
	}
}

// TestRedisErrorsReturned checks that every call returns the Redis error,
// wrapped with the channel, when Redis is down.
func TestRedisErrorsReturned(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	em := emitter.New(rdb, nil)
	check(t, em.Emit("before")) // Redis is up
	m.Close()

	calls := map[string]struct {
		channel string
		call    func() error
	}{
		"Emit":              {"socket.io#/#", func() error { return em.Emit("ev", 1) }},
		"Emit to a room":    {"socket.io#/admin#r#", func() error { return em.Of("admin").To("r").Emit("ev") }},
		"EmitContext":       {"socket.io#/#", func() error { return em.EmitContext(context.Background(), "ev") }},
		"SocketsJoin":       {"socket.io-request#/#", func() error { return em.SocketsJoin("r") }},
		"SocketsLeave":      {"socket.io-request#/#", func() error { return em.SocketsLeave("r") }},
		"DisconnectSockets": {"socket.io-request#/#", func() error { return em.DisconnectSockets(true) }},
		"ServerSideEmit":    {"socket.io-request#/#", func() error { return em.ServerSideEmit("ev") }},
	}
	for name, c := range calls {
		err := c.call()
		if err == nil {
			t.Errorf("%s with Redis down returned nil", name)
			continue
		}
		if want := "emitter: publish to " + c.channel + ": "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: error %q does not start with %q", name, err, want)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := em.EmitContext(ctx, "ev"); !errors.Is(err, context.Canceled) {
		t.Errorf("EmitContext with a cancelled context = %v, want context.Canceled", err)
	}
}

// TestTimeoutBoundsFrozenRedis checks Options.Timeout against a Redis that
// accepts connections and never answers, with a client that applies context
// deadlines to the network (ContextTimeoutEnabled).
func TestTimeoutBoundsFrozenRedis(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(t, err)
	var conns sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	conns.Add(1)
	go func() {
		defer conns.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		conns.Wait()
		for _, c := range open {
			_ = c.Close()
		}
	})
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	em := emitter.New(rdb, &emitter.Options{Timeout: 100 * time.Millisecond})

	start := time.Now()
	err = em.Emit("ev")
	if err == nil {
		t.Fatal("Emit to a frozen Redis returned nil")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Emit took %v with a 100ms timeout", d)
	}
	start = time.Now()
	if err := em.SocketsJoin("r"); err == nil {
		t.Fatal("SocketsJoin to a frozen Redis returned nil")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("SocketsJoin took %v with a 100ms timeout", d)
	}
}

func TestOptions(t *testing.T) {
	if err := (*emitter.Options)(nil).Validate(); err != nil {
		t.Errorf("nil options: %v", err)
	}
	if err := (&emitter.Options{Key: "k", Timeout: time.Second}).Validate(); err != nil {
		t.Errorf("valid options: %v", err)
	}
	err := (&emitter.Options{Key: "a#b", Timeout: -1}).Validate()
	if err == nil || !strings.Contains(err.Error(), "Key") || !strings.Contains(err.Error(), "Timeout") {
		t.Errorf("invalid options: %v", err)
	}

	// An invalid or empty Key means the default one.
	rdb := miniClient(t) // the default key: never on a shared real Redis
	s := sniff(t, rdb, "socket.io#*")
	check(t, emitter.New(rdb, &emitter.Options{Key: "a#b"}).Emit("ev"))
	if m := s.next(); m.Channel != "socket.io#/#" {
		t.Errorf("Key a#b published on %q", m.Channel)
	}
	check(t, emitter.New(rdb, &emitter.Options{}).Emit("ev"))
	if m := s.next(); m.Channel != "socket.io#/#" {
		t.Errorf("empty Key published on %q", m.Channel)
	}
}

func TestNewNilClientPanics(t *testing.T) {
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(fmt.Sprint(r), "nil redis client") {
			t.Errorf("recovered %v, want a panic about the nil client", r)
		}
	}()
	emitter.New(nil, nil)
}

// server is a Go Socket.IO server using the Redis adapter, for the
// end-to-end tests.
type server struct {
	t       *testing.T
	io      *socket.Server
	url     string
	key     string
	sockets map[string]chan *socket.Socket // server-side sockets by namespace
}

// newServer starts a server with the namespaces "/" and nsps on Redis r with
// the channel prefix key, and waits until its adapter is subscribed.
func newServer(t *testing.T, r *testRedis, key string, nsps ...string) *server {
	t.Helper()
	rdb := r.client(t)
	b := redisadapter.New(rdb, &redisadapter.Options{Key: key})
	so := socket.DefaultServerOptions()
	so.SetConnectTimeout(time.Second)
	so.SetAdapter(b)
	io := socket.NewServer(nil, so)
	srv := &server{t: t, io: io, key: key, sockets: map[string]chan *socket.Socket{}}
	for _, nsp := range append([]string{"/"}, nsps...) {
		ch := make(chan *socket.Socket, 16)
		srv.sockets[nsp] = ch
		io.Of(nsp, func(args ...any) { ch <- args[0].(*socket.Socket) })
	}
	hs := httptest.NewServer(io.ServeHandler(nil))
	srv.url = hs.URL
	t.Cleanup(func() {
		done := make(chan struct{})
		io.Close(func(error) { close(done) })
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Error("socket.io server did not close")
		}
		hs.Close()
		_ = b.Close()
	})

	// The adapter subscribes to the broadcast pattern before the request
	// channel, on one connection: once the request channel of a namespace
	// counts a subscriber, both are active.
	for _, nsp := range append([]string{"/"}, nsps...) {
		ch := key + "-request#" + nsp + "#"
		waitFor(t, "the adapter subscribed to "+ch, func() bool {
			n, err := rdb.PubSubNumSub(context.Background(), ch).Result()
			return err == nil && n[ch] == 1
		})
	}
	return srv
}

// connect opens a client on nsp and returns it with its server-side socket.
func (s *server) connect(nsp string) (*sioclient.Client, *socket.Socket) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cl, err := sioclient.Dial(ctx, s.url, nsp)
	if err != nil {
		s.t.Fatalf("connect to %s: %v", nsp, err)
	}
	s.t.Cleanup(func() { _ = cl.Close() })
	select {
	case so := <-s.sockets[nsp]:
		return cl, so
	case <-ctx.Done():
		s.t.Fatalf("the server never saw the connection on %s", nsp)
		return nil, nil
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitEvents waits until cl received n events named name.
func waitEvents(t testing.TB, cl *sioclient.Client, name string, n int) []sioclient.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	evs, err := cl.WaitFor(ctx, name, n)
	if err != nil {
		t.Fatalf("waiting for %d %q events on client %s: %v (got %d)", n, name, cl.ID(), err, len(cl.Received(name)))
	}
	return evs
}

// TestEndToEndRoomBroadcast checks that an event emitted to a room reaches
// exactly the clients in that room, with its arguments, binary included.
func TestEndToEndRoomBroadcast(t *testing.T) {
	verifyNoLeaks(t)
	r := newTestRedis(t)
	srv := newServer(t, r, uniqueKey())
	in, sIn := srv.connect("/")
	out, _ := srv.connect("/")
	sIn.Join("room1")
	em := emitter.New(r.client(t), &emitter.Options{Key: srv.key})

	check(t, em.To("room1").Emit("hello", "world", 1, map[string]any{"k": []any{true, nil}}))
	check(t, em.In("room1").Emit("bin", []byte{1, 2, 3}, bytes.NewReader([]byte{4})))
	// Pub/sub keeps the order of one publisher's messages, and the adapter
	// delivers them in order: once the other client got the marker sent
	// after the room events, it would have got them too.
	check(t, em.Emit("marker"))

	ev := waitEvents(t, in, "hello", 1)[0]
	if want := []any{"world", 1.0, map[string]any{"k": []any{true, nil}}}; !reflect.DeepEqual(ev.Args, want) {
		t.Errorf("hello args = %#v, want %#v", ev.Args, want)
	}
	ev = waitEvents(t, in, "bin", 1)[0]
	if want := []any{[]byte{1, 2, 3}, []byte{4}}; !ev.Binary || !reflect.DeepEqual(ev.Args, want) {
		t.Errorf("bin event = %+v, want binary %v", ev, want)
	}
	waitEvents(t, in, "marker", 1)
	waitEvents(t, out, "marker", 1)
	if got := len(out.Received("hello")) + len(out.Received("bin")); got != 0 {
		t.Errorf("the client outside room1 received %d room events", got)
	}

	// Except leaves the room's clients out.
	check(t, em.Except("room1").Emit("not-room1"))
	check(t, em.Emit("marker"))
	waitEvents(t, in, "marker", 2)
	waitEvents(t, out, "not-room1", 1)
	if got := len(in.Received("not-room1")); got != 0 {
		t.Errorf("the client in room1 received %d events meant for the others", got)
	}
}

// TestEndToEndNamespace checks that an event for a namespace reaches that
// namespace's clients only.
func TestEndToEndNamespace(t *testing.T) {
	verifyNoLeaks(t)
	r := newTestRedis(t)
	srv := newServer(t, r, uniqueKey(), "/admin")
	admin, _ := srv.connect("/admin")
	root, _ := srv.connect("/")
	em := emitter.New(r.client(t), &emitter.Options{Key: srv.key})

	check(t, em.Of("admin").Emit("news", "for admins"))
	check(t, em.Emit("marker"))
	if ev := waitEvents(t, admin, "news", 1)[0]; !reflect.DeepEqual(ev.Args, []any{"for admins"}) {
		t.Errorf("news args = %v", ev.Args)
	}
	waitEvents(t, root, "marker", 1)
	if got := len(root.Received("news")); got != 0 {
		t.Errorf("the client of / received %d events of /admin", got)
	}
}

// TestEndToEndSocketsJoinLeave checks that SocketsJoin and SocketsLeave move
// the server's sockets between rooms, and that a room emit then reaches them.
func TestEndToEndSocketsJoinLeave(t *testing.T) {
	verifyNoLeaks(t)
	r := newTestRedis(t)
	srv := newServer(t, r, uniqueKey())
	cl, so := srv.connect("/")
	_, sOther := srv.connect("/")
	em := emitter.New(r.client(t), &emitter.Options{Key: srv.key})

	check(t, em.In(string(so.Id())).SocketsJoin("room7", "room8"))
	waitFor(t, "the socket joined room7 and room8", func() bool {
		return so.Rooms().Has("room7") && so.Rooms().Has("room8")
	})
	if sOther.Rooms().Has("room7") {
		t.Error("the other socket joined room7 too")
	}
	check(t, em.To("room7").Emit("in-room7", 7))
	if ev := waitEvents(t, cl, "in-room7", 1)[0]; !reflect.DeepEqual(ev.Args, []any{7.0}) {
		t.Errorf("in-room7 args = %v", ev.Args)
	}

	check(t, em.In("room7").SocketsLeave("room8"))
	waitFor(t, "the socket left room8", func() bool { return !so.Rooms().Has("room8") })
	if !so.Rooms().Has("room7") {
		t.Error("the socket left room7 too")
	}

	// Without rooms, every socket of the namespace joins; except applies.
	check(t, em.Except("room7").SocketsJoin("all-but-7"))
	waitFor(t, "the other socket joined all-but-7", func() bool { return sOther.Rooms().Has("all-but-7") })
	check(t, em.SocketsJoin("everyone"))
	waitFor(t, "both sockets joined everyone", func() bool {
		return so.Rooms().Has("everyone") && sOther.Rooms().Has("everyone")
	})
	if so.Rooms().Has("all-but-7") {
		t.Error("the socket in room7 joined all-but-7")
	}
}

// TestEndToEndDisconnectSockets checks that DisconnectSockets disconnects
// the targeted clients, and only them.
func TestEndToEndDisconnectSockets(t *testing.T) {
	verifyNoLeaks(t)
	r := newTestRedis(t)
	srv := newServer(t, r, uniqueKey())
	kicked, sKicked := srv.connect("/")
	closed, sClosed := srv.connect("/")
	stays, _ := srv.connect("/")
	sKicked.Join("kick")
	sClosed.Join("close")
	em := emitter.New(r.client(t), &emitter.Options{Key: srv.key})

	check(t, em.In("kick").DisconnectSockets(false))
	waitClosed(t, kicked)
	if got := kicked.DisconnectReason(); got != sioclient.ReasonServerDisconnect {
		t.Errorf("disconnect reason = %q, want %q", got, sioclient.ReasonServerDisconnect)
	}

	check(t, em.In("close").DisconnectSockets(true))
	waitClosed(t, closed)
	if got := closed.DisconnectReason(); got != sioclient.ReasonServerDisconnect && got != sioclient.ReasonTransportClose {
		t.Errorf("disconnect reason = %q", got)
	}

	check(t, em.Emit("marker"))
	waitEvents(t, stays, "marker", 1)
	select {
	case <-stays.Disconnected():
		t.Errorf("the client outside the rooms was disconnected: %s", stays.DisconnectReason())
	default:
	}
}

func waitClosed(t testing.TB, cl *sioclient.Client) {
	t.Helper()
	select {
	case <-cl.Disconnected():
	case <-time.After(waitTimeout):
		t.Fatal("the client was not disconnected")
	}
}

// TestEndToEndServerSideEmit checks that ServerSideEmit reaches the server's
// listener of the namespace.
func TestEndToEndServerSideEmit(t *testing.T) {
	verifyNoLeaks(t)
	r := newTestRedis(t)
	srv := newServer(t, r, uniqueKey(), "/jobs")
	got := make(chan []any, 4)
	srv.io.Of("/jobs", nil).On("job-done", func(args ...any) { got <- args })
	em := emitter.New(r.client(t), &emitter.Options{Key: srv.key})

	check(t, em.Of("jobs").ServerSideEmit("job-done", "report.pdf", 3, map[string]any{"ok": true}))
	select {
	case args := <-got:
		if want := []any{"report.pdf", 3.0, map[string]any{"ok": true}}; !reflect.DeepEqual(args, want) {
			t.Errorf("listener args = %#v, want %#v", args, want)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the server's listener never ran")
	}
}
