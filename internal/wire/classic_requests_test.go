package wire

import (
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Request and response frames captured from Node.js (anchors §1.3).
const (
	// io.timeout(500).emit("ack", cb): BROADCAST (7), MessagePack.
	goldenAckRequest = "85a3756964a67a734559766ca9726571756573744964a6506442426132a47479706507a67061636b657483a47479706502a46461746191a361636ba36e7370a12fa46f70747383a5726f6f6d7390a665786365707490a5666c61677381a774696d656f7574cd01f4"
	// A client's cb("b-ack"): BROADCAST_ACK (9), MessagePack.
	goldenAckResponse = "83a47479706509a9726571756573744964a6506442426132a67061636b6574a5622d61636b"
	// A REMOTE_FETCH answer from Node: string header and query values, an
	// array for a repeated header, a date string, ms issued, a numeric room.
	nodeFetchResponse = `{"requestId":"abc","sockets":[{"id":"qNHieXLffp8HjhyrAAAA","handshake":{"headers":{"host":"localhost:3000","accept":"*/*","set-cookie":["a=1","b=2"]},"time":"Wed Nov 25 2026 10:00:00 GMT+0000 (Coordinated Universal Time)","address":"::1","xdomain":false,"secure":false,"issued":1795600000000,"url":"/socket.io/?EIO=4&transport=websocket","query":{"EIO":"4","transport":"websocket"},"auth":{"token":"t"}},"rooms":["qNHieXLffp8HjhyrAAAA","room1",123],"data":{"user":"bob"}}]}`
)

func TestClassicAckRequestGolden(t *testing.T) {
	d := 500 * time.Millisecond
	m := &Message{
		Type: TypeBroadcast, UID: "zsEYvl", RequestID: "PdBBa2",
		Packet: Packet{Type: PacketEvent, Data: []any{"ack"}, Nsp: "/", ID: ptr(uint64(3))},
		Opts:   Opts{Flags: Flags{Timeout: &d}},
	}
	b, err := AppendClassicRequest(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	// No packet id: Node publishes the request before the local call
	// assigns one.
	if got := hex.EncodeToString(b); got != goldenAckRequest {
		t.Fatalf("encode:\n got %s\nwant %s", got, goldenAckRequest)
	}
	got, err := DecodeClassicRequest(mustHex(t, goldenAckRequest))
	if err != nil {
		t.Fatal(err)
	}
	want := &Message{
		Type: TypeBroadcast, UID: "zsEYvl", RequestID: "PdBBa2",
		Packet: Packet{Type: PacketEvent, Data: []any{"ack"}, Nsp: "/"},
		Opts:   Opts{Flags: Flags{Timeout: &d}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decode:\n got %+v\nwant %+v", got, want)
	}
}

func TestClassicAckResponseGolden(t *testing.T) {
	b, err := AppendClassicResponse(nil, &Message{Type: TypeBroadcastAck, RequestID: "PdBBa2", Value: "b-ack"})
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(b); got != goldenAckResponse {
		t.Fatalf("encode:\n got %s\nwant %s", got, goldenAckResponse)
	}
	m, err := DecodeClassicResponse(mustHex(t, goldenAckResponse))
	if err != nil {
		t.Fatal(err)
	}
	if want := (&Message{Type: TypeBroadcastAck, RequestID: "PdBBa2", Value: "b-ack"}); !reflect.DeepEqual(m, want) {
		t.Fatalf("decode %+v", m)
	}
	// An acknowledgement holding binary stays MessagePack and keeps it.
	b, err = AppendClassicResponse(nil, &Message{Type: TypeBroadcastAck, RequestID: "r", Value: []any{[]byte{1, 2}, 1.5}})
	if err != nil {
		t.Fatal(err)
	}
	m, err = DecodeClassicResponse(string(b))
	if err != nil || !reflect.DeepEqual(m.Value, []any{[]byte{1, 2}, 1.5}) {
		t.Fatalf("binary ack: %+v, %v", m, err)
	}
}

// The JSON requests and responses Go sends are Node's, key order included.
func TestClassicJSONGoldens(t *testing.T) {
	requests := []struct {
		m    Message
		want string
	}{
		{Message{Type: TypeSocketsJoin, UID: "XI7-0b", Opts: Opts{Rooms: []string{"room1"}}, Rooms: []string{"room2"}},
			`{"uid":"XI7-0b","type":2,"opts":{"rooms":["room1"],"except":[]},"rooms":["room2"]}`},
		{Message{Type: TypeSocketsLeave, UID: "XI7-0b", Opts: Opts{Except: []string{"x"}}, Rooms: []string{"room2"}},
			`{"uid":"XI7-0b","type":3,"opts":{"rooms":[],"except":["x"]},"rooms":["room2"]}`},
		{Message{Type: TypeDisconnectSockets, UID: "XI7-0b", Close: true},
			`{"uid":"XI7-0b","type":4,"opts":{"rooms":[],"except":[]},"close":true}`},
		{Message{Type: TypeFetchSockets, UID: "XI7-0b", RequestID: "abc"},
			`{"uid":"XI7-0b","requestId":"abc","type":5,"opts":{"rooms":[],"except":[]}}`},
		{Message{Type: TypeServerSideEmit, UID: "XI7-0b", Args: []any{"hello", "world", 1}},
			`{"uid":"XI7-0b","type":6,"data":["hello","world",1]}`},
		{Message{Type: TypeServerSideEmit, UID: "XI7-0b", RequestID: "abc", Args: []any{"hello", "x"}},
			`{"uid":"XI7-0b","requestId":"abc","type":6,"data":["hello","x"]}`},
		{Message{Type: TypeAllRooms, UID: "XI7-0b", RequestID: "abc"},
			`{"uid":"XI7-0b","requestId":"abc","type":1}`},
		// Strings as JSON.stringify writes them: short escapes, lower-case
		// \u00xx, no HTML escaping, U+2028 left as it is.
		{Message{Type: TypeServerSideEmit, UID: "u", Args: []any{"\b\f\n\r\t\x01\x1f\"\\/<>&\u2028é"}},
			"{\"uid\":\"u\",\"type\":6,\"data\":[\"\\b\\f\\n\\r\\t\\u0001\\u001f\\\"\\\\/<>&\u2028é\"]}"},
	}
	for _, c := range requests {
		b, err := AppendClassicRequest(nil, &c.m)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.want {
			t.Errorf("request:\n got %s\nwant %s", b, c.want)
		}
	}
	responses := []struct {
		m    Message
		want string
	}{
		{Message{Type: TypeFetchSocketsResponse, RequestID: "abc"}, `{"requestId":"abc","sockets":[]}`},
		{Message{Type: TypeServerSideEmitResponse, RequestID: "abc", Value: "<b>"}, `{"type":6,"requestId":"abc","data":"<b>"}`},
		{Message{Type: TypeServerSideEmitResponse, RequestID: "abc", Value: map[string]any{"from": "B", "a": 1}},
			`{"type":6,"requestId":"abc","data":{"a":1,"from":"B"}}`},
		{Message{Type: TypeBroadcastClientCount, RequestID: "PdBBa2", ClientCount: 0}, `{"type":8,"requestId":"PdBBa2","clientCount":0}`},
		{Message{Type: TypeBroadcastClientCount, RequestID: "PdBBa2", ClientCount: 1}, `{"type":8,"requestId":"PdBBa2","clientCount":1}`},
		{Message{Type: TypeAllRoomsResponse, RequestID: "abc", Rooms: []string{"id", "room1", "123"}}, `{"requestId":"abc","rooms":["id","room1","123"]}`},
		{Message{Type: TypeSocketsResponse, RequestID: "abc", SocketIDs: []string{"s1", "s2"}}, `{"requestId":"abc","sockets":["s1","s2"]}`},
		{Message{Type: TypeLegacyJoinResponse, RequestID: "abc"}, `{"requestId":"abc"}`},
	}
	for _, c := range responses {
		b, err := AppendClassicResponse(nil, &c.m)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.want {
			t.Errorf("response:\n got %s\nwant %s", b, c.want)
		}
	}
}

// Every request decodes back to what was sent, as JSON and, since Node
// accepts either, as a MessagePack map.
func TestClassicRequestsRoundTrip(t *testing.T) {
	d := time.Second
	cases := []Message{
		{Type: TypeSocketsJoin, UID: "u", Opts: Opts{Rooms: []string{"a"}, Except: []string{"b"}}, Rooms: []string{"c", "d"}},
		{Type: TypeSocketsLeave, UID: "u", Rooms: []string{"c"}},
		{Type: TypeDisconnectSockets, UID: "u", Opts: Opts{Rooms: []string{"a"}}, Close: true},
		{Type: TypeFetchSockets, UID: "u", RequestID: "r", Opts: Opts{Except: []string{"x"}}},
		{Type: TypeServerSideEmit, UID: "u", Args: []any{"ev", "x", 1.5, map[string]any{"k": []any{true, nil}}}},
		{Type: TypeServerSideEmit, UID: "u", RequestID: "r", Args: []any{"ev"}},
		{Type: TypeAllRooms, UID: "u", RequestID: "r"},
		{Type: TypeBroadcast, UID: "u", RequestID: "r", Packet: Packet{Type: PacketEvent, Data: []any{"ev", "a"}, Nsp: "/n"},
			Opts: Opts{Rooms: []string{"a"}, Flags: Flags{Volatile: true, Compress: ptr(true), Timeout: &d}}},
	}
	for _, want := range cases {
		b, err := AppendClassicRequest(nil, &want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeClassicRequest(string(b))
		if err != nil {
			t.Fatalf("decode %q: %v", b, err)
		}
		checkSameMessage(t, string(b), got, &want)
		if b[0] != '{' {
			continue
		}
		// The same request as a MessagePack map.
		v, err := RawJSON{b: b}.Value()
		if err != nil {
			t.Fatal(err)
		}
		w := Writer{}
		if err := w.Value(v); err != nil {
			t.Fatal(err)
		}
		got, err = DecodeClassicRequest(string(w.B))
		if err != nil {
			t.Fatalf("decode %s as MessagePack: %v", b, err)
		}
		checkSameMessage(t, string(b)+" as MessagePack", got, &want)
	}
}

// checkSameMessage compares two messages, their values by meaning.
func checkSameMessage(t *testing.T, what string, got, want *Message) {
	t.Helper()
	g, w := *got, *want
	sameJSON(t, what+": packet data", plain(t, g.Packet.Data), w.Packet.Data)
	sameJSON(t, what+": args", plain(t, g.Args), w.Args)
	sameJSON(t, what+": value", plain(t, g.Value), w.Value)
	g.Packet.Data, w.Packet.Data, g.Args, w.Args, g.Value, w.Value = nil, nil, nil, nil, nil, nil
	for _, m := range []*Message{&g, &w} {
		for _, s := range []*[]string{&m.Opts.Rooms, &m.Opts.Except, &m.Rooms, &m.SocketIDs} {
			if len(*s) == 0 {
				*s = nil
			}
		}
		if len(m.Sockets) == 0 {
			m.Sockets = nil
		}
	}
	if len(g.Sockets) == len(w.Sockets) {
		for i := range g.Sockets {
			sameJSON(t, what+": socket", g.Sockets[i], w.Sockets[i])
		}
		g.Sockets, w.Sockets = nil, nil
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func TestClassicFetchResponseFromNode(t *testing.T) {
	m, err := DecodeClassicResponse(nodeFetchResponse)
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != TypeFetchSocketsResponse || m.RequestID != "abc" || len(m.Sockets) != 1 {
		t.Fatalf("decoded %+v", m)
	}
	s := m.Sockets[0]
	want := Socket{
		ID: "qNHieXLffp8HjhyrAAAA",
		Handshake: Handshake{
			Headers: map[string]any{"host": "localhost:3000", "accept": "*/*", "set-cookie": []any{"a=1", "b=2"}},
			Time:    "Wed Nov 25 2026 10:00:00 GMT+0000 (Coordinated Universal Time)",
			Address: "::1", Issued: 1795600000000, URL: "/socket.io/?EIO=4&transport=websocket",
			Query: map[string]any{"EIO": "4", "transport": "websocket"},
			Auth:  map[string]any{"token": "t"},
		},
		Rooms: []string{"qNHieXLffp8HjhyrAAAA", "room1", "123"},
		Data:  map[string]any{"user": "bob"},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("socket:\n got %#v\nwant %#v", s, want)
	}
	// Ours has Node's shape and key order (user maps sorted, as Go has no
	// insertion order); the numeric room goes back as a string.
	b, err := AppendClassicResponse(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON := strings.NewReplacer(
		`{"host":"localhost:3000","accept":"*/*","set-cookie":["a=1","b=2"]}`, `{"accept":"*/*","host":"localhost:3000","set-cookie":["a=1","b=2"]}`,
		`"room1",123]`, `"room1","123"]`,
	).Replace(nodeFetchResponse)
	if string(b) != wantJSON {
		t.Fatalf("encode:\n got %s\nwant %s", b, wantJSON)
	}
	// The same answer as MessagePack decodes the same way.
	v, _ := RawJSON{b: []byte(nodeFetchResponse)}.Value()
	w := Writer{}
	if err := w.Value(v); err != nil {
		t.Fatal(err)
	}
	mp, err := DecodeClassicResponse(string(w.B))
	if err != nil {
		t.Fatal(err)
	}
	checkSameMessage(t, "fetch response as MessagePack", mp, m)
}

func TestClassicResponsesFromNode(t *testing.T) {
	cases := []struct {
		frame string
		want  Message
	}{
		{`{"type":6,"requestId":"rq","data":{"from":"B"}}`, Message{Type: TypeServerSideEmitResponse, RequestID: "rq", Value: map[string]any{"from": "B"}}},
		{`{"type":6,"requestId":"rq","data":2}`, Message{Type: TypeServerSideEmitResponse, RequestID: "rq", Value: 2.0}},
		{`{"type":8,"requestId":"PdBBa2","clientCount":3}`, Message{Type: TypeBroadcastClientCount, RequestID: "PdBBa2", ClientCount: 3}},
		{`{"requestId":"abc","rooms":["id","room1",123]}`, Message{Type: TypeAllRoomsResponse, RequestID: "abc", Rooms: []string{"id", "room1", "123"}}},
		{`{"requestId":"abc","rooms":[]}`, Message{Type: TypeAllRoomsResponse, RequestID: "abc"}},
		{`{"requestId":"abc","sockets":["s1","s2"]}`, Message{Type: TypeSocketsResponse, RequestID: "abc", SocketIDs: []string{"s1", "s2"}}},
		{`{"requestId":"abc","sockets":[]}`, Message{Type: TypeFetchSocketsResponse, RequestID: "abc"}},
		{`{"requestId":"abc"}`, Message{Type: TypeLegacyJoinResponse, RequestID: "abc"}},
		{` {"requestId" : "abc" , "unknown": [1, {"x": null}] } `[1:], Message{Type: TypeLegacyJoinResponse, RequestID: "abc"}},
	}
	for _, c := range cases {
		m, err := DecodeClassicResponse(c.frame)
		if err != nil {
			t.Errorf("%s: %v", c.frame, err)
			continue
		}
		checkSameMessage(t, c.frame, m, &c.want)
	}
}

// Pre-8.0 peers send {sid, room, requestId} joins without opts.
func TestClassicLegacyJoinRequest(t *testing.T) {
	m, err := DecodeClassicRequest(`{"uid":"old","requestId":"r1","type":2,"sid":"abc","room":"room1"}`)
	if err != nil {
		t.Fatal(err)
	}
	want := &Message{Type: TypeSocketsJoin, UID: "old", RequestID: "r1", Legacy: true, SID: "abc", Room: "room1"}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %+v", m)
	}
	m, err = DecodeClassicRequest(`{"uid":"new","type":3,"opts":{"rooms":["a"],"except":[]},"rooms":["b"]}`)
	if err != nil || m.Legacy || m.Type != TypeSocketsLeave {
		t.Fatalf("join with opts: %+v, %v", m, err)
	}
	// The SOCKETS request (0), which Node no longer sends.
	m, err = DecodeClassicRequest(`{"uid":"old","requestId":"r2","type":0,"rooms":["a"]}`)
	if err != nil || m.Type != TypeSockets || !reflect.DeepEqual(m.Rooms, []string{"a"}) {
		t.Fatalf("sockets request: %+v, %v", m, err)
	}
}

func TestClassicRequestTypes(t *testing.T) {
	for n, typ := range ClassicTypes {
		if got := classicNumber(typ); got != n {
			t.Errorf("classicNumber(%d) = %d, want %d", typ, got, n)
		}
	}
	if classicNumber(TypeHeartbeat) != -1 {
		t.Error("a type without a classic number got one")
	}
	for _, typ := range []Type{TypeFetchSocketsResponse, TypeServerSideEmitResponse, TypeBroadcastClientCount,
		TypeBroadcastAck, TypeAllRoomsResponse, TypeSocketsResponse, TypeLegacyJoinResponse} {
		if !typ.IsResponse() {
			t.Errorf("%d is a response", typ)
		}
	}
	for _, typ := range []Type{TypeBroadcast, TypeFetchSockets, TypeServerSideEmit, TypeAllRooms, TypeSockets, TypeHeartbeat} {
		if typ.IsResponse() {
			t.Errorf("%d is not a response", typ)
		}
	}
}

func TestClassicRequestsRejectHostileFrames(t *testing.T) {
	requests := []struct {
		frame string
		err   error
	}{
		{"", ErrEmpty},
		{"{", ErrLength},
		{"{}", ErrShape},
		{`{"type":"x"}`, ErrShape},
		{`{"type":42}`, ErrShape},
		{`{"type":2.5}`, ErrShape},
		{`{"type":-1}`, ErrShape},
		{`{"type":7,"uid":"u"}`, ErrShape},
		{`{"type":7,"uid":"u","requestId":"r"}`, ErrShape},
		{"{\"uid\":\"u\x01\",\"type\":2}", ErrShape},
		{`{"type":6,"uid":"u"}`, ErrShape},
		{`{"type":6,"uid":"u","data":[]}`, ErrShape},
		{`{"type":6,"uid":"u","data":"x"}`, ErrShape},
		{`{"type":2,"opts":{"rooms":[{}]}}`, ErrShape},
		{`{"type":2,"opts":{"rooms":[1e999]}}`, ErrShape},
		{`{"type":2} x`, ErrTrailing},
		{`{"type":2,}`, ErrShape},
		{`{"type":2 "uid":"u"}`, ErrShape},
		{`{"uid":"u\x01","type":2}`, ErrShape},
		{`{"uid":tru,"type":2}`, ErrShape},
		{"[1,2,3]", ErrShape},
		{"\xc1", ErrShape},
		{"\x81\xa4type\xc1", ErrShape},
		{"\xdf\x7f\xff\xff\xff", ErrLength},
	}
	for _, c := range requests {
		m, err := DecodeClassicRequest(c.frame)
		if !errors.Is(err, c.err) || m != nil {
			t.Errorf("request %q: %+v, %v; want %v", c.frame, m, err, c.err)
		}
	}
	responses := []struct {
		frame string
		err   error
	}{
		{"", ErrEmpty},
		{`{}`, ErrShape},
		{`{"type":6}`, ErrShape},
		{`{"type":3,"requestId":"r"}`, ErrShape},
		{`{"type":8,"requestId":"r","clientCount":-1}`, ErrShape},
		{`{"type":8,"requestId":"r","clientCount":1.5}`, ErrShape},
		{`{"type":8,"requestId":"r","clientCount":1e300}`, ErrShape},
		{"\x83\xa4type\x08\xa9requestId\xa1r\xabclientCount\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", ErrShape},
		{`{"requestId":"r","sockets":"x"}`, ErrShape},
		{`{"requestId":"r","sockets":[1]}`, ErrShape},
		{`{"requestId":"r","sockets":[{"rooms":{}}]}`, ErrShape},
		{`{"requestId":"r","rooms":[null]}`, ErrShape},
		{"\x83\xa4type\x09\xa9requestId\xa1r\xa6packet\xdb\xff\xff\xff\xff", ErrLength},
	}
	for _, c := range responses {
		m, err := DecodeClassicResponse(c.frame)
		if !errors.Is(err, c.err) || m != nil {
			t.Errorf("response %q: %+v, %v; want %v", c.frame, m, err, c.err)
		}
	}
}
