package wire

import (
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The messages of createShardedAdapter, captured from Node (anchors §1.7):
// JSON with the key order type, data, uid, nsp, unless the data of a type
// that may carry binary holds some: then the whole message is MessagePack.
func TestClusterShardedGoldens(t *testing.T) {
	d := time.Second
	hello := Packet{Type: PacketEvent, Data: []any{"hello", "world", 1}}
	cases := []struct {
		m    Message
		want string
	}{
		{Message{Type: TypeBroadcast, UID: "5fd6b57a7c5a9a23", Nsp: "/", Packet: hello},
			`{"type":3,"data":{"packet":{"type":2,"data":["hello","world",1]},"opts":{"rooms":[],"except":[],"flags":{}}},"uid":"5fd6b57a7c5a9a23","nsp":"/"}`},
		{Message{Type: TypeBroadcast, UID: "u", Nsp: "/", RequestID: "1a90699bea317cba", Packet: hello,
			Opts: Opts{Rooms: []string{"room1"}, Flags: Flags{Timeout: &d}}},
			`{"type":3,"data":{"packet":{"type":2,"data":["hello","world",1]},"requestId":"1a90699bea317cba","opts":{"rooms":["room1"],"except":[],"flags":{"timeout":1000}}},"uid":"u","nsp":"/"}`},
		{Message{Type: TypeSocketsJoin, UID: "u", Nsp: "/", Opts: Opts{Rooms: []string{"room1"}}, Rooms: []string{"room2"}},
			`{"type":4,"data":{"opts":{"rooms":["room1"],"except":[],"flags":{}},"rooms":["room2"]},"uid":"u","nsp":"/"}`},
		{Message{Type: TypeSocketsLeave, UID: "u", Nsp: "/", Rooms: []string{"room2"}},
			`{"type":5,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"rooms":["room2"]},"uid":"u","nsp":"/"}`},
		{Message{Type: TypeDisconnectSockets, UID: "u", Nsp: "/", Close: true},
			`{"type":6,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"close":true},"uid":"u","nsp":"/"}`},
		{Message{Type: TypeFetchSockets, UID: "u", Nsp: "/", RequestID: "ddbc3c0adb718bf5"},
			`{"type":7,"data":{"opts":{"rooms":[],"except":[],"flags":{}},"requestId":"ddbc3c0adb718bf5"},"uid":"u","nsp":"/"}`},
		{Message{Type: TypeFetchSocketsResponse, UID: "u", Nsp: "/", RequestID: "r"},
			`{"type":8,"data":{"requestId":"r","sockets":[]},"uid":"u","nsp":"/"}`},
		{Message{Type: TypeServerSideEmit, UID: "u", Nsp: "/", Args: []any{"hello", "world", 1}},
			`{"type":9,"data":{"packet":["hello","world",1]},"uid":"u","nsp":"/"}`},
		{Message{Type: TypeServerSideEmit, UID: "u", Nsp: "/", RequestID: "r", Args: []any{"hello"}},
			`{"type":9,"data":{"requestId":"r","packet":["hello"]},"uid":"u","nsp":"/"}`},
		{Message{Type: TypeServerSideEmitResponse, UID: "u", Nsp: "/", RequestID: "r", Value: map[string]any{"from": "B"}},
			`{"type":10,"data":{"requestId":"r","packet":{"from":"B"}},"uid":"u","nsp":"/"}`},
		{Message{Type: TypeBroadcastClientCount, UID: "u", Nsp: "/", RequestID: "r", ClientCount: 1},
			`{"type":11,"data":{"requestId":"r","clientCount":1},"uid":"u","nsp":"/"}`},
		{Message{Type: TypeBroadcastAck, UID: "u", Nsp: "/", RequestID: "r", Value: "b-ack"},
			`{"type":12,"data":{"requestId":"r","packet":"b-ack"},"uid":"u","nsp":"/"}`},
		{Message{Type: TypeInitialHeartbeat, UID: "u", Nsp: "/"}, `{"type":1,"uid":"u","nsp":"/"}`},
		{Message{Type: TypeHeartbeat, UID: "u", Nsp: "/"}, `{"type":2,"uid":"u","nsp":"/"}`},
		{Message{Type: TypeAdapterClose, UID: "u", Nsp: "/"}, `{"type":13,"uid":"u","nsp":"/"}`},
	}
	for _, c := range cases {
		b, err := AppendCluster(nil, &c.m, FormatSharded)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.want {
			t.Errorf("encode:\n got %s\nwant %s", b, c.want)
		}
		m, err := DecodeCluster(c.want)
		if err != nil {
			t.Errorf("decode %s: %v", c.want, err)
			continue
		}
		checkSameMessage(t, c.want, m, &c.m)
		// The same message in MessagePack decodes the same way.
		b, err = AppendCluster(nil, &c.m, FormatMsgpack)
		if err != nil {
			t.Fatal(err)
		}
		if m, err = DecodeCluster(string(b)); err != nil {
			t.Errorf("decode %x: %v", b, err)
			continue
		}
		checkSameMessage(t, c.want+" in MessagePack", m, &c.m)
	}
}

// nodeBinaryBroadcast is the frame Node writes for
// io.to(room).emit("pm", Buffer.from([1,2,3])) in sharded mode: the whole
// message in MessagePack.
func nodeBinaryBroadcast(room string) string {
	w := Writer{}
	w.String(room)
	return "84a47479706503a46461746182a67061636b657482a47479706502a46461746192a2706dc403010203" +
		"a46f70747383a5726f6f6d7391" + hex.EncodeToString(w.B) + "a665786365707490a5666c61677380" +
		"a3756964b0" + hex.EncodeToString([]byte("0123456789abcdef")) + "a36e7370a12f"
}

func TestClusterShardedBinary(t *testing.T) {
	for _, room := range []string{"room1", "qNHieXLffp8HjhyrAAAA", strings.Repeat("r", 40)} {
		want := nodeBinaryBroadcast(room)
		m := &Message{Type: TypeBroadcast, UID: "0123456789abcdef", Nsp: "/",
			Packet: Packet{Type: PacketEvent, Data: []any{"pm", []byte{1, 2, 3}}}, Opts: Opts{Rooms: []string{room}}}
		b, err := AppendCluster(nil, m, FormatSharded)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(b); got != want {
			t.Fatalf("encode:\n got %s\nwant %s", got, want)
		}
		got, err := DecodeCluster(mustHex(t, want))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("decode:\n got %+v\nwant %+v", got, m)
		}
	}
	// Each type that may carry binary switches to MessagePack when it does,
	// and only then.
	bin := []byte{1}
	for _, m := range []Message{
		{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent, Data: []any{"e", map[string]any{"b": bin}}}},
		{Type: TypeServerSideEmit, Args: []any{"e", []any{bin}}},
		{Type: TypeServerSideEmitResponse, RequestID: "r", Value: bin},
		{Type: TypeBroadcastAck, RequestID: "r", Value: []any{bin}},
		{Type: TypeFetchSocketsResponse, RequestID: "r", Sockets: []Socket{{ID: "s", Data: map[string]any{"b": bin}}}},
	} {
		b, err := AppendCluster(nil, &m, FormatSharded)
		if err != nil || b[0] != 0x84 {
			t.Errorf("type %d with binary: %q, %v", m.Type, b, err)
		}
		got, err := DecodeCluster(string(b))
		if err != nil {
			t.Fatalf("type %d: %v", m.Type, err)
		}
		if !HasBinary(got.Packet.Data) && !HasBinary(got.Args) && !HasBinary(got.Value) &&
			(len(got.Sockets) == 0 || !HasBinary(got.Sockets[0].Data)) {
			t.Errorf("type %d: binary lost: %+v", m.Type, got)
		}
	}
	// Types that never carry binary stay JSON.
	b, err := AppendCluster(nil, &Message{Type: TypeSocketsJoin, Rooms: []string{"a"}}, FormatSharded)
	if err != nil || b[0] != '{' {
		t.Errorf("socketsJoin: %s, %v", b, err)
	}
}

// A packet's id travels in a broadcast without requestId (socket.emit with
// an ack under connection state recovery); a broadcast with
// acknowledgements goes out before the sender assigns one.
func TestClusterPacketID(t *testing.T) {
	p := Packet{Type: PacketEvent, Data: []any{"e"}, ID: ptr(uint64(1))}
	b, err := AppendCluster(nil, &Message{Type: TypeBroadcast, UID: "u", Nsp: "/", Packet: p}, FormatSharded)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"type":3,"data":{"packet":{"type":2,"data":["e"],"id":1},"opts":{"rooms":[],"except":[],"flags":{}}},"uid":"u","nsp":"/"}`; string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	m, err := DecodeCluster(string(b))
	if err != nil || m.Packet.ID == nil || *m.Packet.ID != 1 {
		t.Fatalf("decode: %+v, %v", m, err)
	}
	b, err = AppendCluster(nil, &Message{Type: TypeBroadcast, UID: "u", Nsp: "/", RequestID: "r", Packet: p}, FormatSharded)
	if err != nil || strings.Contains(string(b), `"id"`) {
		t.Fatalf("with requestId: %s, %v", b, err)
	}
}

// The data may come before the type (any key order is accepted).
func TestClusterKeyOrder(t *testing.T) {
	m, err := DecodeCluster(`{"nsp":"/x","data":{"opts":{"rooms":["a"]},"rooms":["b"]},"uid":"u","type":4}`)
	if err != nil {
		t.Fatal(err)
	}
	want := &Message{Type: TypeSocketsJoin, UID: "u", Nsp: "/x", Opts: Opts{Rooms: []string{"a"}}, Rooms: []string{"b"}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %+v", m)
	}
}

// With the type given twice, the data is read as the last type says.
func TestClusterTypeGivenTwice(t *testing.T) {
	m, err := DecodeCluster(`{"type":3,"data":{"packet":{"data":["e"]},"rooms":["r"]},"type":4,"uid":"u","nsp":"/"}`)
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != TypeSocketsJoin || m.Packet.Data != nil || !reflect.DeepEqual(m.Rooms, []string{"r"}) {
		t.Fatalf("got %+v", m)
	}
}

func TestClusterRejectsHostileFrames(t *testing.T) {
	cases := []struct {
		frame string
		err   error
	}{
		{"", ErrEmpty},
		{"{", ErrLength},
		{"[]", ErrShape},
		{"null", ErrShape},
		{`{"type":3}`, ErrShape},
		{`{"type":3,"uid":"x","nsp":"/"}`, ErrShape},
		{`{"type":3,"data":{},"uid":"x","nsp":"/"}`, ErrShape},
		{`{"type":3,"data":{"packet":{"type":99,"data":["a"]},"opts":{}},"uid":"x","nsp":"/"}`, ErrShape},
		{`{"type":4,"data":{"opts":{"rooms":[{}]},"rooms":["x"]},"uid":"x","nsp":"/"}`, ErrShape},
		{`{"type":6,"uid":"x","nsp":"/"}`, ErrShape},
		{`{"type":7,"data":{"opts":{}},"uid":"x","nsp":"/"}`, ErrShape},
		{`{"type":8,"data":{"requestId":"nope","sockets":"x"},"uid":"x","nsp":"/"}`, ErrShape},
		{`{"type":11,"data":{"requestId":"nope","clientCount":-1},"uid":"x","nsp":"/"}`, ErrShape},
		{`{"type":11,"data":{"requestId":"nope","clientCount":1.5},"uid":"x","nsp":"/"}`, ErrShape},
		{`{"type":9,"data":{"packet":[]},"uid":"x","nsp":"/"}`, ErrShape},
		{`{"type":9,"data":{"packet":"x"},"uid":"x","nsp":"/"}`, ErrShape},
		{`{"type":0,"uid":"x","nsp":"/"}`, ErrShape},
		{`{"type":14,"uid":"x","nsp":"/"}`, ErrShape},
		{`{"type":1,"uid":"x","nsp":"/"}]`, ErrTrailing},
		{"\xdd\xff\xff\xff\xff", ErrShape},
		{"\x84\xa4type\x03", ErrLength},
		{"\x81\xa4type\xa2\x31\x31", ErrShape},
	}
	for _, c := range cases {
		m, err := DecodeCluster(c.frame)
		if !errors.Is(err, c.err) || m != nil {
			t.Errorf("%q: %+v, %v; want %v", c.frame, m, err, c.err)
		}
	}
}
