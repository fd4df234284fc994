package wire

import (
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Broadcast frames captured from Node.js socket.io 4.8.4 with
// @socket.io/redis-adapter 8.3.0 (reference anchors §1.2), uid zsEYvl.
const (
	// io.to("room1").emit("r"), on socket.io#/#room1#.
	goldenRoom = "93a67a734559766c83a47479706502a46461746191a172a36e7370a12f83a5726f6f6d7391a5726f6f6d31a665786365707490a5666c61677380"
	// io.emit("test",1,"2",Buffer[3,4],1.5,-33,2**32,new Date(Date.UTC(2000,5,13)),{u:undefined,n:null,arr:[undefined,1]}).
	goldenKinds = "93a67a734559766c83a47479706502a46461746199a47465737401a132c4020304cb3ff8000000000000d0dfcf0000000100000000d6ff3945798082a16ec0a361727292c001a36e7370a12f83a5726f6f6d7390a665786365707490a5666c61677380"
	// io.to(["r1","r2"]).except("r3").volatile.compress(false).emit("x").
	goldenFlags = "93a67a734559766c83a47479706502a46461746191a178a36e7370a12f83a5726f6f6d7392a27231a27232a665786365707491a27233a5666c61677382a8766f6c6174696c65c3a8636f6d7072657373c2"
	// socket.join(123) on B, then io.to(123).emit("num") on A: rooms is [123], an integer.
	goldenNumericRoom = "93a67a734559766c83a47479706502a46461746191a36e756da36e7370a12f83a5726f6f6d73917ba665786365707490a5666c61677380"
	// io.emit("d", new Date(Date.UTC(2000, 5, 13))).
	goldenDate = "93a67a734559766c83a47479706502a46461746192a164d6ff39457980a36e7370a12f83a5726f6f6d7390a665786365707490a5666c61677380"
)

func appendBroadcast(t *testing.T, uid string, p Packet, o Opts) string {
	t.Helper()
	b, err := AppendClassicBroadcast(nil, uid, &p, &o)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func TestClassicBroadcastGoldenRoom(t *testing.T) {
	got := appendBroadcast(t, "zsEYvl", Packet{Type: PacketEvent, Data: []any{"r"}, Nsp: "/"}, Opts{Rooms: []string{"room1"}})
	if got != goldenRoom {
		t.Fatalf("encode:\n got %s\nwant %s", got, goldenRoom)
	}
	m, err := DecodeClassicBroadcast(mustHex(t, goldenRoom))
	if err != nil {
		t.Fatal(err)
	}
	want := &Message{
		Type: TypeBroadcast, UID: "zsEYvl", Nsp: "/",
		Packet: Packet{Type: PacketEvent, Data: []any{"r"}, Nsp: "/"},
		Opts:   Opts{Rooms: []string{"room1"}},
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("decode:\n got %+v\nwant %+v", m, want)
	}
}

func TestClassicBroadcastGoldenKinds(t *testing.T) {
	m, err := DecodeClassicBroadcast(mustHex(t, goldenKinds))
	if err != nil {
		t.Fatal(err)
	}
	data, ok := m.Packet.Data.([]any)
	if !ok || len(data) != 9 {
		t.Fatalf("data %#v", m.Packet.Data)
	}
	// The event name stays a string; arguments without binary stay raw, in
	// Node's bytes; the binary one is materialized.
	wantRaw := []any{
		"test", raw(t, "01"), raw(t, "a132"), []byte{3, 4}, raw(t, "cb3ff8000000000000"), raw(t, "d0df"),
		raw(t, "cf0000000100000000"), raw(t, "d6ff39457980"), raw(t, "82a16ec0a361727292c001"),
	}
	if !reflect.DeepEqual(data, wantRaw) {
		t.Fatalf("data:\n got %#v\nwant %#v", data, wantRaw)
	}
	// What Node meant.
	want := []any{
		"test", uint64(1), "2", []byte{3, 4}, 1.5, int64(-33), uint64(1 << 32),
		time.Date(2000, 6, 13, 0, 0, 0, 0, time.UTC),
		map[string]any{"n": nil, "arr": []any{nil, uint64(1)}},
	}
	if got := plain(t, data); !reflect.DeepEqual(got, want) {
		t.Fatalf("values:\n got %#v\nwant %#v", got, want)
	}
	// Re-encoding the decoded message gives Node's bytes (raw arguments are
	// written back unchanged).
	if got := appendBroadcast(t, m.UID, m.Packet, m.Opts); got != goldenKinds {
		t.Fatalf("re-encode decoded:\n got %s\nwant %s", got, goldenKinds)
	}
	// Encoding the Go values gives Node's bytes, except the key order of the
	// user object, which a Go map does not keep: with a one-key map the bytes
	// are Node's with that map's other key removed.
	goData := []any{
		"test", 1, "2", []byte{3, 4}, 1.5, -33, int64(1 << 32),
		time.Date(2000, 6, 13, 0, 0, 0, 0, time.UTC), map[string]any{"n": nil},
	}
	wantHex := strings.Replace(goldenKinds, "82a16ec0a361727292c001", "81a16ec0", 1)
	if got := appendBroadcast(t, "zsEYvl", Packet{Type: PacketEvent, Data: goData, Nsp: "/"}, Opts{}); got != wantHex {
		t.Fatalf("encode Go values:\n got %s\nwant %s", got, wantHex)
	}
	// With the whole map, the bytes are Node's up to key order.
	goData[8] = map[string]any{"n": nil, "arr": []any{nil, 1}}
	got, err := AppendClassicBroadcast(nil, "zsEYvl", &Packet{Type: PacketEvent, Data: goData, Nsp: "/"}, &Opts{})
	if err != nil {
		t.Fatal(err)
	}
	sameMsgpack(t, "encode Go values with the whole map", got, []byte(mustHex(t, goldenKinds)))
}

func TestClassicBroadcastGoldenFlags(t *testing.T) {
	m, err := DecodeClassicBroadcast(mustHex(t, goldenFlags))
	if err != nil {
		t.Fatal(err)
	}
	want := Opts{Rooms: []string{"r1", "r2"}, Except: []string{"r3"}, Flags: Flags{Volatile: true, Compress: ptr(false)}}
	if !reflect.DeepEqual(m.Opts, want) {
		t.Fatalf("opts %+v, want %+v", m.Opts, want)
	}
	// The flags a user set, in the order Node sets them.
	if got := appendBroadcast(t, "zsEYvl", Packet{Type: PacketEvent, Data: []any{"x"}, Nsp: "/"}, want); got != goldenFlags {
		t.Fatalf("encode:\n got %s\nwant %s", got, goldenFlags)
	}
	// Unset flags are left out, as Node leaves them out.
	got := appendBroadcast(t, "zsEYvl", Packet{Type: PacketEvent, Data: []any{"x"}, Nsp: "/"},
		Opts{Rooms: []string{"r1", "r2"}, Except: []string{"r3"}, Flags: Flags{Volatile: true}})
	if w := strings.TrimSuffix(goldenFlags, "82a8766f6c6174696c65c3a8636f6d7072657373c2") + "81a8766f6c6174696c65c3"; got != w {
		t.Fatalf("encode volatile only:\n got %s\nwant %s", got, w)
	}
}

func TestClassicBroadcastTimeoutInMilliseconds(t *testing.T) {
	d := 500 * time.Millisecond
	got := appendBroadcast(t, "u", Packet{Type: PacketEvent, Data: []any{"x"}, Nsp: "/"}, Opts{Flags: Flags{Timeout: &d}})
	if !strings.HasSuffix(got, "a5666c61677381a774696d656f7574cd01f4") {
		t.Fatalf("timeout flag: %s", got)
	}
	m, err := DecodeClassicBroadcast(mustHex(t, got))
	if err != nil || m.Opts.Flags.Timeout == nil || *m.Opts.Flags.Timeout != d {
		t.Fatalf("timeout round trip: %+v, %v", m, err)
	}
	// A negative or absurd timeout is ignored rather than wrapped.
	for _, h := range []string{"ff", "cb7ff0000000000000", "cf7fffffffffffffff"} {
		frame := strings.TrimSuffix(got, "cd01f4") + h
		m, err := DecodeClassicBroadcast(mustHex(t, frame))
		if err != nil || m.Opts.Flags.Timeout != nil {
			t.Errorf("timeout %s: %+v, %v", h, m.Opts.Flags, err)
		}
	}
}

func TestClassicBroadcastNumericRoom(t *testing.T) {
	m, err := DecodeClassicBroadcast(mustHex(t, goldenNumericRoom))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.Opts.Rooms, []string{"123"}) {
		t.Fatalf("rooms %#v", m.Opts.Rooms)
	}
	// Float rooms are written as JavaScript's String() writes them.
	for h, want := range map[string]string{"cb3ff8000000000000": "1.5", "d0df": "-33", "cf0000000100000000": "4294967296"} {
		frame := strings.Replace(goldenNumericRoom, "917b", "91"+h, 1)
		m, err := DecodeClassicBroadcast(mustHex(t, frame))
		if err != nil || !reflect.DeepEqual(m.Opts.Rooms, []string{want}) {
			t.Errorf("room %s: %#v, %v", h, m.Opts.Rooms, err)
		}
	}
}

// Numbers are written as JavaScript's String() writes them.
func TestNumberString(t *testing.T) {
	cases := map[float64]string{
		0: "0", math.Copysign(0, -1): "0", 123: "123", -33: "-33", 1.5: "1.5", 0.1: "0.1", 4294967296: "4294967296",
		1e20: "100000000000000000000", 1e21: "1e+21", 1.5e300: "1.5e+300", -1e21: "-1e+21",
		0.000001: "0.000001", 1e-7: "1e-7", 1.5e-7: "1.5e-7", 5e-324: "5e-324", 9007199254740993: "9007199254740992",
	}
	for f, want := range cases {
		if got, err := NumberString(f); err != nil || got != want {
			t.Errorf("NumberString(%v) = %q, %v; want %q", f, got, err, want)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := NumberString(f); !errors.Is(err, ErrShape) {
			t.Errorf("NumberString(%v): %v", f, err)
		}
	}
}

// A Node Date decodes to a UTC time.Time whatever the local zone, so that
// every Go server's clients receive the same text for it.
func TestClassicBroadcastDateIsUTC(t *testing.T) {
	m, err := DecodeClassicBroadcast(mustHex(t, goldenDate))
	if err != nil {
		t.Fatal(err)
	}
	arg := m.Packet.Data.([]any)[1].(RawMsgpack)
	v, err := arg.Value()
	d, ok := v.(time.Time)
	if err != nil || !ok || !d.Equal(time.Date(2000, 6, 13, 0, 0, 0, 0, time.UTC)) || d.Location() != time.UTC {
		t.Fatalf("decoded %#v, %v", v, err)
	}
	j, err := arg.MarshalJSON()
	if err != nil || string(j) != `"2000-06-13T00:00:00Z"` {
		t.Fatalf("JSON %s, %v", j, err)
	}
}

// A packet without nsp is in "/", as in Node; a packet's id is kept.
func TestClassicBroadcastPacketDefaults(t *testing.T) {
	// ["u", {data: ["e"], id: 7}, {}]
	m, err := DecodeClassicBroadcast(mustHex(t, "93a17582a46461746191a165a2696407"+"80"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Nsp != "/" || m.Packet.Nsp != "/" || m.Packet.Type != PacketEvent || m.Packet.ID == nil || *m.Packet.ID != 7 {
		t.Fatalf("decoded %+v", m)
	}
	// Packet data that is not an array is materialized as it is.
	m, err = DecodeClassicBroadcast(mustHex(t, "93a175"+"81a464617461"+"81a161c3"+"80"))
	if err != nil || !reflect.DeepEqual(m.Packet.Data, map[string]any{"a": true}) {
		t.Fatalf("map data: %#v, %v", m.Packet.Data, err)
	}
}

func TestClassicBroadcastPrefix(t *testing.T) {
	p := ClassicBroadcastPrefix("zsEYvl")
	if p != "\x93\xa6zsEYvl" || !strings.HasPrefix(mustHex(t, goldenRoom), p) {
		t.Fatalf("prefix %q", p)
	}
	if strings.HasPrefix(mustHex(t, goldenEmitter), ClassicBroadcastPrefix("emitte")) {
		t.Fatal("a shorter uid's prefix matched a longer uid's frame")
	}
	// Every length of uid, with the header it gets.
	for _, n := range []int{0, 31, 32, 255, 256} {
		uid := strings.Repeat("u", n)
		b, err := AppendClassicBroadcast(nil, uid, &Packet{Type: PacketEvent, Data: []any{"e"}, Nsp: "/"}, &Opts{})
		if err != nil || !strings.HasPrefix(string(b), ClassicBroadcastPrefix(uid)) {
			t.Errorf("uid of %d bytes: prefix does not start the frame", n)
		}
	}
}

func TestClassicBroadcastRejectsHostileFrames(t *testing.T) {
	cases := []struct {
		name, hex string
		err       error
	}{
		{"empty", "", ErrEmpty},
		{"nil", "c0", ErrShape},
		{"never used code", "c1", ErrShape},
		{"map not array", "83a3756964a178a67061636b657480a46f70747380", ErrShape},
		{"two elements", "92a178a178", ErrShape},
		{"truncated", goldenRoom[:40], ErrLength},
		{"trailing", goldenRoom + "00", ErrTrailing},
		{"huge array", "dd7fffffff", ErrLength},
		{"huge data array", "93a17883a47479706502a464617461dd7fffffff", ErrLength},
		{"huge map", "93a178df7fffffff", ErrLength},
		{"huge string", "93db7fffffff", ErrLength},
		{"bad packet type", "93a17883a47479706532a46461746190a36e7370a12f80", ErrShape},
		{"deep nesting", "93a17883a47479706502a464617461" + strings.Repeat("91", 200) + "c0", ErrTooDeep},
		{"uid not a string", "930183a47479706502a46461746190a36e7370a12f80", ErrShape},
		{"rooms of maps", "93a17882a47479706502a46461746190" + "81a5726f6f6d739180", ErrShape},
		{"flags not a map", "93a17882a47479706502a46461746190" + "81a5666c61677301", ErrShape},
		{"packet not a map", "93a17801" + "80", ErrShape},
		{"unknown extension", "93a17881a464617461d40500" + "80", ErrShape},
		{"unknown extension in an argument", "93a17881a46461746192a165d40500" + "80", ErrShape},
		{"timestamp of 3 bytes", "93a17881a464617461c703ff000000" + "80", ErrShape},
		{"map key a map", "93a17881" + "80" + "c0" + "80", ErrShape},
		{"nsp not a string", "93a17881a36e737001" + "80", ErrShape},
		{"NaN room", "93a17880" + "81a5726f6f6d7391cb7ff8000000000000", ErrShape},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := DecodeClassicBroadcast(mustHex(t, c.hex))
			if !errors.Is(err, c.err) {
				t.Fatalf("frame %s: %+v, %v; want %v", c.hex, m, err, c.err)
			}
			if m != nil {
				t.Fatalf("a message with an error: %+v", m)
			}
		})
	}
}
