package redisadapter

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// Golden frames captured from Node.js socket.io 4.8.4 with
// @socket.io/redis-adapter 8.3.0 and @socket.io/redis-emitter 5.1.0
// (reference anchors §1.2 and §1.8).
var golden = map[string]string{
	// io.to("room1").emit("r") on server zsEYvl, channel socket.io#/#room1#.
	"room": "93a67a734559766c83a47479706502a46461746191a172a36e7370a12f83a5726f6f6d7391a5726f6f6d31a665786365707490a5666c61677380",
	// io.emit("test",1,"2",Buffer[3,4],1.5,-33,2**32,Date(2000-06-13),{u:undefined,n:null,arr:[undefined,1]}).
	"kinds": "93a67a734559766c83a47479706502a46461746199a47465737401a132c4020304cb3ff8000000000000d0dfcf0000000100000000d6ff3945798082a16ec0a361727292c001a36e7370a12f83a5726f6f6d7390a665786365707490a5666c61677380",
	// emitter.emit("em", 1) from @socket.io/redis-emitter: opts key order rooms, flags, except.
	"emitter": "93a7656d697474657283a47479706502a46461746192a2656d01a36e7370a12f83a5726f6f6d7390a5666c61677380a665786365707490",
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func encodeFrame(t testing.TB, uid string, pkt *parser.Packet, rooms, except []socket.Room, flags wireFlags) []byte {
	t.Helper()
	e := getEncoder()
	defer putEncoder(e)
	if err := e.appendBroadcast(uid, pkt, rooms, except, flags); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(e.buf.Bytes())
}

func TestGoldenBroadcastRoundTrip(t *testing.T) {
	// Encode: the bytes Node writes.
	pkt := &parser.Packet{Type: parser.EVENT, Data: []any{"r"}, Nsp: "/"}
	got := encodeFrame(t, "zsEYvl", pkt, []socket.Room{"room1"}, nil, wireFlags{})
	if want := mustHex(t, golden["room"]); !bytes.Equal(got, want) {
		t.Fatalf("encode room broadcast:\n got %x\nwant %x", got, want)
	}
	// Decode: the packet and options Node meant.
	f, err := decodeBroadcast(mustHex(t, golden["room"]))
	if err != nil {
		t.Fatal(err)
	}
	if f.UID != "zsEYvl" || f.Packet.Type != parser.EVENT || f.Packet.Nsp != "/" ||
		!reflect.DeepEqual(f.Packet.Data, []any{"r"}) || !reflect.DeepEqual(f.Rooms, []socket.Room{"room1"}) ||
		len(f.Except) != 0 || f.Flags != (wireFlags{}) {
		t.Fatalf("decoded %+v", f)
	}
}

func TestGoldenBroadcastValueKinds(t *testing.T) {
	f, err := decodeBroadcast(mustHex(t, golden["kinds"]))
	if err != nil {
		t.Fatal(err)
	}
	want := []any{
		"test", int64(1), "2", []byte{3, 4}, 1.5, int64(-33), uint64(4294967296),
		time.Date(2000, 6, 13, 0, 0, 0, 0, time.UTC),
		map[string]any{"n": nil, "arr": []any{nil, int64(1)}},
	}
	got := f.Packet.Data.([]any)
	if len(got) != len(want) {
		t.Fatalf("data has %d elements, want %d: %#v", len(got), len(want), got)
	}
	for i := range want {
		g := got[i]
		if tm, ok := g.(time.Time); ok {
			g = tm.UTC()
		}
		if !reflect.DeepEqual(g, want[i]) {
			t.Errorf("data[%d] = %#v (%T), want %#v (%T)", i, g, g, want[i], want[i])
		}
	}
	// Re-encoding gives Node's bytes except for the order of the keys of the
	// user object, which Go maps do not keep: compare everything but that map,
	// then compare the map semantically.
	data := append([]any(nil), got[:8]...)
	data = append(data, map[string]any{"n": nil})
	enc := encodeFrame(t, "zsEYvl", &parser.Packet{Type: parser.EVENT, Data: data, Nsp: "/"}, nil, nil, wireFlags{})
	wantHex := strings.Replace(golden["kinds"], "99", "99", 1)
	wantHex = strings.Replace(wantHex, "82a16ec0a361727292c001", "81a16ec0", 1)
	if hex.EncodeToString(enc) != wantHex {
		t.Fatalf("re-encode:\n got %x\nwant %s", enc, wantHex)
	}
}

func TestGoldenEmitterFrame(t *testing.T) {
	f, err := decodeBroadcast(mustHex(t, golden["emitter"]))
	if err != nil {
		t.Fatal(err)
	}
	if f.UID != "emitter" || !reflect.DeepEqual(f.Packet.Data, []any{"em", int64(1)}) || f.Packet.Nsp != "/" {
		t.Fatalf("decoded %+v", f)
	}
}

func TestBroadcastFlagsAndRooms(t *testing.T) {
	// io.to(["r1","r2"]).except("r3").volatile.compress(false).emit("x") from Node.
	node := "93a67a734559766c83a47479706502a46461746191a178a36e7370a12f83a5726f6f6d7392a27231a27232a665786365707491a27233a5666c61677382a8766f6c6174696c65c3a8636f6d7072657373c2"
	f, err := decodeBroadcast(mustHex(t, node))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Rooms, []socket.Room{"r1", "r2"}) || !reflect.DeepEqual(f.Except, []socket.Room{"r3"}) ||
		!f.Flags.Volatile || f.Flags.Compress || f.Flags.Timeout != nil {
		t.Fatalf("decoded %+v", f)
	}
	// Go writes only the flags that are set: compress=false is Go's zero
	// value and is left out, exactly as Node leaves out unset flags.
	got := encodeFrame(t, "zsEYvl", &parser.Packet{Type: parser.EVENT, Data: []any{"x"}, Nsp: "/"},
		[]socket.Room{"r1", "r2"}, []socket.Room{"r3"}, wireFlags{Volatile: true})
	want := strings.TrimSuffix(node, "82a8766f6c6174696c65c3a8636f6d7072657373c2") + "81a8766f6c6174696c65c3"
	if hex.EncodeToString(got) != want {
		t.Fatalf("encode flags:\n got %x\nwant %s", got, want)
	}
	// Timeout travels in milliseconds.
	d := 500 * time.Millisecond
	got = encodeFrame(t, "u", &parser.Packet{Type: parser.EVENT, Data: []any{"x"}, Nsp: "/"}, nil, nil, wireFlags{Timeout: &d})
	if !bytes.HasSuffix(got, mustHex(t, "a5666c61677381a774696d656f7574cd01f4")) {
		t.Fatalf("timeout flag: %x", got)
	}
	f, err = decodeBroadcast(got)
	if err != nil || f.Flags.Timeout == nil || *f.Flags.Timeout != d {
		t.Fatalf("timeout round trip: %+v %v", f, err)
	}
}

func TestNumericRoomFromNode(t *testing.T) {
	// socket.join(123) then io.to(123).emit("num"): rooms is [123], an integer.
	frame := "93a67a734559766c83a47479706502a46461746191a36e756da36e7370a12f83a5726f6f6d73917ba665786365707490a5666c61677380"
	f, err := decodeBroadcast(mustHex(t, frame))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Rooms, []socket.Room{"123"}) {
		t.Fatalf("rooms = %#v", f.Rooms)
	}
}

func TestPacketTypeTranslation(t *testing.T) {
	for n := int64(0); n <= 6; n++ {
		pt, ok := packetType(n)
		if !ok || wireType(pt) != n || byte(pt) != byte('0'+n) {
			t.Fatalf("type %d -> %q", n, pt)
		}
	}
	if _, ok := packetType(50); ok {
		t.Fatal("ASCII type 50 accepted on the wire")
	}
	// A binary payload goes out as EVENT (2): the binary type is decided by
	// each receiver's encoder.
	got := encodeFrame(t, "u", &parser.Packet{Type: parser.EVENT, Data: []any{"b", []byte{1}}, Nsp: "/"}, nil, nil, wireFlags{})
	if !bytes.Contains(got, mustHex(t, "a47479706502")) {
		t.Fatalf("type not 2: %x", got)
	}
}

func TestNormalizeDataReadsReaders(t *testing.T) {
	in := []any{"ev", types.NewBytesBuffer([]byte{1, 2}), map[string]any{"s": types.NewStringBufferString("hi")}, 3}
	out, err := normalizeData(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"ev", []byte{1, 2}, map[string]any{"s": "hi"}, 3}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("normalized %#v", out)
	}
	plain := []any{"ev", 1, "x"}
	out, _ = normalizeData(plain)
	if &out.([]any)[0] != &plain[0] {
		t.Fatal("data without readers was copied")
	}
}

func TestDecodeRejectsHostileFrames(t *testing.T) {
	cases := map[string]string{
		"empty":             "",
		"nil":               "c0",
		"never used code":   "c1",
		"map not array":     "83a3756964a178a67061636b657480a46f70747380",
		"two elements":      "92a178a178",
		"truncated":         golden["room"][:40],
		"trailing":          golden["room"] + "00",
		"huge array":        "dd7fffffff",
		"huge data array":   "93a17883a47479706502a464617461dd7fffffff",
		"huge map":          "93a178df7fffffff",
		"huge string":       "93db7fffffff",
		"bad packet type":   "93a17883a47479706532a46461746190a36e7370a12f80",
		"deep nesting":      "93a17883a47479706502a464617461" + strings.Repeat("91", 200) + "c0",
		"uid not a string":  "930183a47479706502a46461746190a36e7370a12f80",
		"rooms of maps":     "93a17882a47479706502a46461746190" + "81a5726f6f6d739180",
		"flags not a map":   "93a17882a47479706502a46461746190" + "81a5666c61677301",
		"packet not a map":  "93a17801" + "80",
		"unknown extension": "93a17881a464617461d40500" + "80",
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := decodeBroadcast(mustHex(t, h))
			if err == nil {
				t.Fatalf("frame %s decoded without error", h)
			}
		})
	}
	if _, err := decodeBroadcast(nil); !errors.Is(err, errEmptyFrame) {
		t.Fatalf("empty frame: %v", err)
	}
}

func TestChannelNames(t *testing.T) {
	c := newChannels("socket.io", "/", "zsEYvl")
	want := channels{
		broadcast:        "socket.io#/#",
		pattern:          "socket.io#/#*",
		request:          "socket.io-request#/#",
		response:         "socket.io-response#/#",
		specificResponse: "socket.io-response#/#zsEYvl#",
	}
	if c != want {
		t.Fatalf("channels = %+v", c)
	}
	if got := c.roomChannel("room1"); got != "socket.io#/#room1#" {
		t.Fatal(got)
	}
	for ch, want := range map[string]string{"socket.io#/#": "", "socket.io#/#room1#": "room1", "socket.io#/#123#": "123"} {
		if room, ok := c.roomOf(ch); !ok || room != want {
			t.Errorf("roomOf(%q) = %q, %v", ch, room, ok)
		}
	}
	if _, ok := c.roomOf("socket.io#/#room1"); ok {
		t.Error("channel without trailing # accepted")
	}
	if got := newChannels("k", "/a*b?[c]", "u").pattern; got != `k#/a\*b\?\[c\]#*` {
		t.Fatalf("pattern not escaped: %s", got)
	}
}

// Structs reach remote clients as they reach local ones: through
// encoding/json, json tags included.
func TestNormalizeDataUsesJSONForStructs(t *testing.T) {
	type user struct {
		Name  string `json:"name"`
		Admin bool   `json:"admin,omitempty"`
		Tags  []string
	}
	out, err := normalizeData([]any{"u", user{Name: "ada", Tags: []string{"x"}}, &user{Name: "bob"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"u", map[string]any{"name": "ada", "Tags": []any{"x"}}, map[string]any{"name": "bob", "Tags": nil}}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("normalized %#v", out)
	}
}

// Our own frames are recognised by their first bytes, exactly as encoded.
func TestOwnFramePrefix(t *testing.T) {
	got := encodeFrame(t, "zsEYvl", &parser.Packet{Type: parser.EVENT, Data: []any{"r"}, Nsp: "/"}, nil, nil, wireFlags{})
	if p := ownFramePrefix("zsEYvl"); !bytes.HasPrefix(got, []byte(p)) || p != "\x93\xa6zsEYvl" {
		t.Fatalf("prefix %q does not start frame %x", p, got)
	}
	if bytes.HasPrefix(mustHex(t, golden["emitter"]), []byte(ownFramePrefix("emitte"))) {
		t.Fatal("a longer uid matched a shorter one's prefix")
	}
}
