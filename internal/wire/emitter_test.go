package wire

import (
	"encoding/hex"
	"reflect"
	"testing"
)

// emitter.emit("em", 1) from @socket.io/redis-emitter 5.1.0 (anchors §1.8):
// opts key order rooms, flags, except.
const goldenEmitter = "93a7656d697474657283a47479706502a46461746192a2656d01a36e7370a12f83a5726f6f6d7390a5666c61677380a665786365707490"

func TestEmitterBroadcastGolden(t *testing.T) {
	b, err := AppendEmitterBroadcast(nil, "/", []any{"em", 1}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(b); got != goldenEmitter {
		t.Fatalf("encode:\n got %s\nwant %s", got, goldenEmitter)
	}
	m, err := DecodeClassicBroadcast(mustHex(t, goldenEmitter))
	if err != nil {
		t.Fatal(err)
	}
	if m.UID != EmitterUID || m.Nsp != "/" || !reflect.DeepEqual(plain(t, m.Packet.Data), []any{"em", uint64(1)}) ||
		len(m.Opts.Rooms) != 0 || len(m.Opts.Except) != 0 || m.Opts.Flags != (Flags{}) {
		t.Fatalf("decode: %+v", m)
	}
}

// The emitter's flags are written in the order they were set, and the
// decoder reads them whatever their order.
func TestEmitterBroadcastFlags(t *testing.T) {
	b, err := AppendEmitterBroadcast(nil, "/chat", []any{"x"}, []string{"r1"}, []string{"r2"},
		[]Flag{{"compress", false}, {"volatile", true}})
	if err != nil {
		t.Fatal(err)
	}
	const want = "93a7656d697474657283a47479706502a46461746191a178a36e7370a52f63686174" +
		"83a5726f6f6d7391a27231a5666c61677382a8636f6d7072657373c2a8766f6c6174696c65c3a665786365707491a27232"
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("encode:\n got %s\nwant %s", got, want)
	}
	m, err := DecodeClassicBroadcast(string(b))
	if err != nil {
		t.Fatal(err)
	}
	wantOpts := Opts{Rooms: []string{"r1"}, Except: []string{"r2"}, Flags: Flags{Volatile: true, Compress: ptr(false)}}
	if m.Nsp != "/chat" || !reflect.DeepEqual(m.Opts, wantOpts) {
		t.Fatalf("decode: %+v", m)
	}
}

// The emitter's requests: JSON without uid (anchors §1.8).
func TestEmitterRequestsGolden(t *testing.T) {
	cases := []struct {
		m    Message
		want string
	}{
		{Message{Type: TypeSocketsJoin, Opts: Opts{Rooms: []string{"room1"}}, Rooms: []string{"room7"}},
			`{"type":2,"opts":{"rooms":["room1"],"except":[]},"rooms":["room7"]}`},
		{Message{Type: TypeSocketsLeave, Opts: Opts{Except: []string{"a"}}, Rooms: []string{"b"}},
			`{"type":3,"opts":{"rooms":[],"except":["a"]},"rooms":["b"]}`},
		{Message{Type: TypeDisconnectSockets, Close: true},
			`{"type":4,"opts":{"rooms":[],"except":[]},"close":true}`},
		{Message{Type: TypeServerSideEmit, UID: EmitterUID, Args: []any{"hello", "<world>", 1}},
			`{"uid":"emitter","type":6,"data":["hello","<world>",1]}`},
	}
	for _, c := range cases {
		b, err := AppendClassicRequest(nil, &c.m)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.want {
			t.Errorf("got  %s\nwant %s", b, c.want)
		}
		m, err := DecodeClassicRequest(string(b))
		if err != nil || m.Type != c.m.Type || m.UID != c.m.UID {
			t.Errorf("decode %s: %+v, %v", b, m, err)
		}
	}
}
