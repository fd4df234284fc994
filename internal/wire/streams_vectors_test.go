package wire

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// The vectors of @socket.io/redis-streams-adapter 0.3.1, captured live
// (testdata/streams/README.md).

type streamVector struct {
	Name         string          `json:"name"`
	Kind         string          `json:"kind"`
	Fields       [][2]string     `json:"fields"`
	Data         string          `json:"data"`
	DataEncoding string          `json:"dataEncoding"`
	PayloadHex   string          `json:"payloadHex"`
	NotepackHex  string          `json:"notepackHex"`
	Channel      string          `json:"channel"`
	Decoded      json.RawMessage `json:"decoded"`
	HashCode     []struct {
		Nsp      string `json:"nsp"`
		HashCode int32  `json:"hashCode"`
		Index    int    `json:"index"`
		Stream   string `json:"stream"`
	} `json:"hashCode"`
	Live []struct {
		Nsp      string `json:"nsp"`
		Key      string `json:"key"`
		Received bool   `json:"receivedOnOtherServer"`
	} `json:"live"`
	// sharded_pubsub
	FetchSockets []struct {
		Args []json.RawMessage `json:"args"`
	} `json:"fetchSockets"`
}

type streamVectors struct {
	Context struct {
		A, B struct{ UID, UIDChat string }
	} `json:"context"`
	Facts struct {
		Encoders []struct {
			Value    string `json:"value"`
			Msgpack  string `json:"@msgpack/msgpack"`
			Notepack string `json:"notepack.io"`
		} `json:"encoders"`
	} `json:"facts"`
	Vectors []streamVector `json:"vectors"`
}

var loadVectors = sync.OnceValues(func() (*streamVectors, error) {
	b, err := os.ReadFile("testdata/streams/vectors.json")
	if err != nil {
		return nil, err
	}
	var v streamVectors
	return &v, json.Unmarshal(b, &v)
})

func vectors(t testing.TB) *streamVectors {
	t.Helper()
	v, err := loadVectors()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *streamVectors) byName(t testing.TB, name string) *streamVector {
	t.Helper()
	for i := range v.Vectors {
		if v.Vectors[i].Name == name {
			return &v.Vectors[i]
		}
	}
	t.Fatalf("no vector %q", name)
	return nil
}

const (
	uidA  = "434a7f5d4d4cd27e"
	uidB  = "e22783506751d989"
	sidA1 = "rPB7HUAdU3xZCOKiAAAA"
)

var date678 = time.Date(2024, 1, 2, 3, 4, 5, 678e6, time.UTC)

// streamEntries are the Go messages equivalent to the captured XADDs, and
// whether Go writes their data byte for byte (it cannot when a user object
// has keys out of sorted order: Go maps keep no insertion order).
var streamEntries = map[string]struct {
	m     Message
	exact bool
}{
	"broadcast_all": {Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent,
		Data: []any{"ev", 1, "two", map[string]any{"a": []any{1, 2}}}}}, true},
	"broadcast_room": {Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent, Data: []any{"ev", "to-room1"}},
		Opts: Opts{Rooms: []string{"room1"}}}, true},
	"broadcast_rooms_except": {Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent, Data: []any{"ev", "rooms-except"}},
		Opts: Opts{Rooms: []string{"room1", "room2"}, Except: []string{"room3", "room4"}}}, true},
	"broadcast_volatile": {Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent, Data: []any{"ev", "volatile"}},
		Opts: Opts{Flags: Flags{Volatile: true}}}, true},
	"broadcast_compress_false": {Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent, Data: []any{"ev", "nocompress"}},
		Opts: Opts{Flags: Flags{Compress: ptr(false)}}}, true},
	"broadcast_volatile_compress": {Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent, Data: []any{"ev", "volatile-compress"}},
		Opts: Opts{Flags: Flags{Volatile: true, Compress: ptr(true)}}}, true},
	"broadcast_binary": {Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent, Data: []any{"bin", []byte{1, 2, 3}}}}, true},
	"broadcast_binary_nested": {Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent, Data: []any{"bin", map[string]any{
		"buf": []byte{4, 5}, "n": 1.5, "big": int64(1 << 32), "d": date678, "u": nil}}},
		Opts: Opts{Rooms: []string{"room1"}}}, false},
	"broadcast_date_json": {Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent,
		Data: []any{"date", "2024-01-02T03:04:05.678Z", nil, nil, map[string]any{"n": nil, "f": 0.5}}}}, false},
	"broadcast_from_socket": {Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent, Data: []any{"ev", "from-socket"}},
		Opts: Opts{Except: []string{sidA1}}}, true},
	"broadcast_from_socket_to_room": {Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent, Data: []any{"ev", "socket-to-room1"}},
		Opts: Opts{Rooms: []string{"room1"}, Except: []string{sidA1}}}, true},
	"broadcast_namespace_chat":  {Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent, Data: []any{"ev", "chat"}}}, true},
	"sockets_join":              {Message{Type: TypeSocketsJoin, Opts: Opts{Rooms: []string{"room1"}}, Rooms: []string{"room2", "room3"}}, true},
	"sockets_join_all_one_room": {Message{Type: TypeSocketsJoin, Rooms: []string{"room4"}}, true},
	"sockets_leave": {Message{Type: TypeSocketsLeave, Opts: Opts{Rooms: []string{"room1"}, Except: []string{"room9"}},
		Rooms: []string{"room2"}}, true},
	"disconnect_sockets":       {Message{Type: TypeDisconnectSockets, Opts: Opts{Rooms: []string{"nobody"}}}, true},
	"disconnect_sockets_close": {Message{Type: TypeDisconnectSockets, Opts: Opts{Rooms: []string{"nobody"}}, Close: true}, true},
	"socket_emit": {Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent, Data: []any{"direct", 1}},
		Opts: Opts{Rooms: []string{sidA1}}}, true},
	"socket_emit_with_ack": {Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent, Data: []any{"direct-ack", 2}, ID: ptr(uint64(1))},
		Opts: Opts{Rooms: []string{sidA1}, Flags: Flags{Timeout: ptr(time.Second)}}}, true},
}

func TestStreamEntryVectors(t *testing.T) {
	vs := vectors(t)
	seen := 0
	for _, v := range vs.Vectors {
		if v.Kind != "xadd" {
			continue
		}
		seen++
		t.Run(v.Name, func(t *testing.T) {
			entry, ok := streamEntries[v.Name]
			if !ok {
				t.Fatalf("no Go message for vector %s", v.Name)
			}
			f := map[string]string{}
			var keys []string
			for _, kv := range v.Fields {
				f[kv[0]] = kv[1]
				keys = append(keys, kv[0])
			}
			if strings.Join(keys, ",") != "uid,nsp,type,data" || f["data"] != v.Data {
				t.Fatalf("fields %v", v.Fields)
			}
			want := entry.m
			want.UID, want.Nsp = f["uid"], f["nsp"]

			// Decode: what Node meant.
			got, err := DecodeStreamEntry(f["uid"], f["nsp"], f["type"], f["data"])
			if err != nil {
				t.Fatal(err)
			}
			checkSameMessage(t, "decode", got, &want)
			if HasBinary(want.Packet.Data) != HasBinary(got.Packet.Data) {
				t.Errorf("binary materialized: %v, want %v", HasBinary(got.Packet.Data), HasBinary(want.Packet.Data))
			}
			// Node's decoded data, tags resolved, means the same.
			sameJSON(t, "decoded vector", plain(t, got.Packet.Data), vectorPacketData(t, v.Decoded))

			// Encode: Node's fields.
			for _, m := range []*Message{&want, got} {
				typ, data, has, err := StreamFields(m, true)
				if err != nil {
					t.Fatal(err)
				}
				if typ != f["type"] || !has {
					t.Errorf("type %q (data %v), want %q", typ, has, f["type"])
				}
				switch {
				case entry.exact && data != f["data"]:
					t.Errorf("data:\n got %s\nwant %s", data, f["data"])
				case v.DataEncoding == "json":
					if data[0] != '{' {
						t.Fatalf("data not JSON: %s", data)
					}
					var g, w any
					if json.Unmarshal([]byte(data), &g) != nil || json.Unmarshal([]byte(f["data"]), &w) != nil || !reflect.DeepEqual(g, w) {
						t.Errorf("data:\n got %s\nwant %s", data, f["data"])
					}
				default:
					gb, err1 := base64.StdEncoding.DecodeString(data)
					wb, err2 := base64.StdEncoding.DecodeString(f["data"])
					if err1 != nil || err2 != nil {
						t.Fatalf("base64: %v, %v", err1, err2)
					}
					sameMsgpack(t, "data", gb, wb)
				}
			}
			// With onlyPlaintext, binary goes as JSON (a base64 string).
			if _, data, _, err := StreamFields(&want, false); err != nil || data[0] != '{' {
				t.Errorf("plaintext: %s, %v", data, err)
			}
		})
	}
	if seen != len(streamEntries) {
		t.Errorf("%d xadd vectors, %d Go messages", seen, len(streamEntries))
	}
}

// vectorPacketData returns decoded.packet.data of a vector, with the tags
// ($binary, $date, $float, $undefined) resolved to Go values.
func vectorPacketData(t *testing.T, decoded json.RawMessage) any {
	t.Helper()
	var d struct {
		Packet struct{ Data any }
	}
	if err := json.Unmarshal(decoded, &d); err != nil {
		t.Fatal(err)
	}
	return untag(t, d.Packet.Data)
}

func untag(t *testing.T, v any) any {
	switch x := v.(type) {
	case []any:
		for i, e := range x {
			x[i] = untag(t, e)
		}
	case map[string]any:
		if b, ok := x["$binary"].(string); ok {
			out, err := base64.StdEncoding.DecodeString(b)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		if d, ok := x["$date"].(string); ok {
			tm, err := time.Parse(time.RFC3339Nano, d)
			if err != nil {
				t.Fatal(err)
			}
			return tm
		}
		if f, ok := x["$float"]; ok {
			return f
		}
		if _, ok := x["$undefined"]; ok {
			return nil
		}
		for k, e := range x {
			x[k] = untag(t, e)
		}
	}
	return v
}

// A stream entry without nsp, with an unknown type, or with data that is
// neither JSON nor base64 MessagePack is refused.
func TestStreamEntryRejects(t *testing.T) {
	b64 := func(h string) string { return base64.StdEncoding.EncodeToString([]byte(mustHex(t, h))) }
	cases := []struct{ typ, data string }{
		{"", ""}, {"x", ""}, {"0", ""}, {"14", ""}, {"3 ", ""}, {"-3", ""},
		{"3", ""}, // a broadcast without data
		{"3", "{}"},
		{"3", "{"},
		{"3", "!!!"},
		{"3", "===="},
		{"3", b64("c1")},
		{"3", b64("80")},
		{"3", b64("81a67061636b657480") + "x"},
		{"3", b64("81a67061636b65748000")},
		{"4", `{"opts":{},"rooms":[{}]}`},
		{"7", `{"opts":{}}`},
		{"9", `{"packet":[]}`},
	}
	for _, c := range cases {
		if m, err := DecodeStreamEntry("u", "/", c.typ, c.data); err == nil || m != nil {
			t.Errorf("type %q data %q: %+v, %v", c.typ, c.data, m, err)
		}
	}
	// Types without data.
	for typ, want := range map[string]Type{"1": TypeInitialHeartbeat, "2": TypeHeartbeat, "13": TypeAdapterClose} {
		m, err := DecodeStreamEntry("u", "/n", typ, "")
		if err != nil || !reflect.DeepEqual(m, &Message{Type: want, UID: "u", Nsp: "/n"}) {
			t.Errorf("type %s: %+v, %v", typ, m, err)
		}
	}
	for _, typ := range []Type{TypeInitialHeartbeat, TypeHeartbeat, TypeAdapterClose} {
		s, data, has, err := StreamFields(&Message{Type: typ}, true)
		if err != nil || has || data != "" {
			t.Errorf("type %d: %q %q %v %v", typ, s, data, has, err)
		}
	}
}

// clusterPayloads are the Go messages equivalent to the captured pub/sub
// payloads, and whether Go writes them byte for byte.
func clusterPayloads(vs *streamVectors) map[string]struct {
	m     Message
	exact bool
} {
	type entry = struct {
		m     Message
		exact bool
	}
	handshake := Handshake{
		Headers: map[string]any{
			"sec-websocket-version": "13", "sec-websocket-key": "ieFkY1kMIvuDBHx7ZvkoEg==", "connection": "Upgrade",
			"upgrade": "websocket", "sec-websocket-extensions": "permessage-deflate; client_max_window_bits", "host": "127.0.0.1:44111",
		},
		Time:    "Sat Dec 05 2026 08:55:02 GMT+0000 (Coordinated Universal Time)",
		Address: "127.0.0.1", Issued: 1796460902296, URL: "/socket.io/?EIO=4&transport=websocket",
		Query: map[string]any{"EIO": "4", "transport": "websocket"}, Auth: map[string]any{},
	}
	return map[string]entry{
		"fetch_sockets_request": {Message{Type: TypeFetchSockets, UID: uidA, Nsp: "/", RequestID: "071e0462724de7ee",
			Opts: Opts{Rooms: []string{"room1"}}}, true},
		"fetch_sockets_response": {Message{Type: TypeFetchSocketsResponse, UID: uidB, Nsp: "/", RequestID: "071e0462724de7ee",
			Sockets: []Socket{{ID: "QF6W1EQ3isI60SkiAAAC", Handshake: handshake,
				Rooms: []string{"QF6W1EQ3isI60SkiAAAC", "room1", "room3", "room4"}, Data: map[string]any{"user": "bob", "n": 7}}}}, false},
		"server_side_emit": {Message{Type: TypeServerSideEmit, UID: uidA, Nsp: "/", Args: []any{"hello", "world", 1}}, true},
		"server_side_emit_with_ack": {Message{Type: TypeServerSideEmit, UID: uidA, Nsp: "/", RequestID: "9a4c021d2f0a23f9",
			Args: []any{"ping", "x"}}, true},
		"server_side_emit_response": {Message{Type: TypeServerSideEmitResponse, UID: uidB, Nsp: "/", RequestID: "9a4c021d2f0a23f9",
			Value: map[string]any{"ok": true, "got": "x"}}, false},
		"broadcast_with_ack": {Message{Type: TypeBroadcast, UID: uidA, Nsp: "/", RequestID: "7f16a52307946c19",
			Packet: Packet{Type: PacketEvent, Data: []any{"ask", "q"}}, Opts: Opts{Flags: Flags{Timeout: ptr(time.Second)}}}, true},
		"broadcast_client_count": {Message{Type: TypeBroadcastClientCount, UID: uidB, Nsp: "/", RequestID: "7f16a52307946c19",
			ClientCount: 2}, true},
		"broadcast_ack_1": {Message{Type: TypeBroadcastAck, UID: uidB, Nsp: "/", RequestID: "7f16a52307946c19", Value: "from-cB1"}, true},
		"broadcast_ack_2": {Message{Type: TypeBroadcastAck, UID: uidB, Nsp: "/", RequestID: "7f16a52307946c19",
			Value: map[string]any{"b2": []any{1, 2}}}, true},
		"sharded_server_side_emit": {Message{Type: TypeServerSideEmit, UID: "cce3b996a324c445", Nsp: "/", Args: []any{"s", 1}}, true},
		"server_side_emit_types":   {Message{Type: TypeServerSideEmit, UID: uidA, Nsp: "/", Args: typesArgs()}, false},
	}
}

// typesArgs are the Go values of the server_side_emit_types vector.
func typesArgs() []any {
	return []any{
		"types", 1.5, -1, -200, int64(1 << 32), int64(1 << 31), int64(-(1 << 31) - 1), 255, 65535, float64(1<<53 + 2), 0.1,
		math.Copysign(0, -1), date678, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), time.Date(1969, 12, 31, 23, 59, 59, 5e8, time.UTC),
		map[string]any{"nested": map[string]any{"a": []any{1, map[string]any{"b": "c"}}, "z": true}, "k2": nil, "u": nil},
		nil, nil, []byte{1, 2, 3}, strings.Repeat("x", 40), "é😀",
	}
}

func TestClusterPayloadVectors(t *testing.T) {
	vs := vectors(t)
	payloads := clusterPayloads(vs)
	seen := 0
	for _, v := range vs.Vectors {
		if v.Kind != "publish" && v.Kind != "spublish" {
			continue
		}
		seen++
		t.Run(v.Name, func(t *testing.T) {
			entry, ok := payloads[v.Name]
			if !ok {
				t.Fatalf("no Go message for vector %s", v.Name)
			}
			payload := mustHex(t, v.PayloadHex)
			got, err := DecodeCluster(payload)
			if err != nil {
				t.Fatal(err)
			}
			checkSameMessage(t, "decode", got, &entry.m)
			b, err := AppendCluster(nil, &entry.m, FormatMsgpack)
			if err != nil {
				t.Fatal(err)
			}
			want := []byte(payload)
			if v.Name == "server_side_emit_types" {
				// 2^53+2, an unsafe integer: Writer writes notepack.io's
				// uint64, @msgpack/msgpack a float64 (the same number).
				want = []byte(mustHex(t, strings.Replace(v.PayloadHex, "cb4340000000000001", "cf0020000000000002", 1)))
			}
			if entry.exact {
				if !reflect.DeepEqual(b, want) {
					t.Errorf("encode:\n got %x\nwant %x", b, want)
				}
			} else {
				sameMsgpack(t, "encode", b, want)
			}
			// The decoded message writes the same message back.
			b, err = AppendCluster(nil, got, FormatMsgpack)
			if err != nil {
				t.Fatal(err)
			}
			sameMsgpack(t, "re-encode", b, want)
		})
	}
	if seen != len(payloads) {
		t.Errorf("%d pub/sub vectors, %d Go messages", seen, len(payloads))
	}
	// The sharded adapter's fetchSockets, as SPUBLISHed.
	v := vs.byName(t, "sharded_pubsub")
	var frames []string
	for _, c := range v.FetchSockets {
		var cmd string
		if json.Unmarshal(c.Args[0], &cmd) != nil || cmd != "SPUBLISH" {
			continue
		}
		var arg struct{ Hex string }
		if err := json.Unmarshal(c.Args[2], &arg); err != nil {
			t.Fatal(err)
		}
		frames = append(frames, arg.Hex)
	}
	want := []Message{
		{Type: TypeFetchSockets, UID: "cce3b996a324c445", Nsp: "/", RequestID: "522bb668b49ac06a"},
		{Type: TypeFetchSocketsResponse, UID: "20f984788405f179", Nsp: "/", RequestID: "522bb668b49ac06a"},
	}
	if len(frames) != len(want) {
		t.Fatalf("sharded frames %v", frames)
	}
	for i, h := range frames {
		m, err := DecodeCluster(mustHex(t, h))
		if err != nil {
			t.Fatal(err)
		}
		checkSameMessage(t, h, m, &want[i])
		b, err := AppendCluster(nil, &want[i], FormatMsgpack)
		if err != nil || hex.EncodeToString(b) != h {
			t.Errorf("encode:\n got %x\nwant %s", b, h)
		}
	}
}

// Writer writes every value of server_side_emit_types as @msgpack/msgpack
// (the streams adapter) did, but for the user object's key order and the
// unsafe integer 2^53+2, which it writes as notepack.io (the classic
// adapter) does: uint64 0020000000000002 rather than float64.
func TestWriterMatchesNodeEncoders(t *testing.T) {
	v := vectors(t).byName(t, "server_side_emit_types")
	node, notepack := elements(t, v.PayloadHex), elements(t, v.NotepackHex)
	args := typesArgs()
	if len(node) != len(args) || len(notepack) != len(args) {
		t.Fatalf("%d and %d elements, %d arguments", len(node), len(notepack), len(args))
	}
	for i, a := range args {
		w := Writer{SortKeys: true}
		if err := w.Value(a); err != nil {
			t.Fatal(err)
		}
		got := hex.EncodeToString(w.B)
		switch i {
		case 9: // 2^53+2
			if got != notepack[i] || got == node[i] {
				t.Errorf("%v: %s; notepack %s, @msgpack/msgpack %s", a, got, notepack[i], node[i])
			}
		case 15: // {nested, k2, u}: Node's key order
			sameMsgpack(t, "object", w.B, []byte(mustHex(t, node[i])))
		default:
			if got != node[i] {
				t.Errorf("argument %d (%v): %s, want %s", i, a, got, node[i])
			}
		}
	}
	// facts.encoders: the values Go can express.
	goValues := map[string]any{
		"{u: undefined, v: 1}":                   map[string]any{"u": nil, "v": 1},
		"[undefined]":                            []any{nil},
		"2 ** 53 + 2":                            float64(1<<53 + 2),
		"-(2 ** 53) - 2":                         float64(-(1 << 53) - 2),
		"2 ** 64":                                float64(1 << 64),
		"NaN":                                    math.NaN(),
		"new Date(\"2024-01-02T03:04:05.678Z\")": date678,
		"new Map([[\"k\", 1]])":                  map[string]any{},
	}
	// Which encoder Writer follows where they differ.
	follows := map[string]string{"2 ** 53 + 2": "notepack", "-(2 ** 53) - 2": "notepack", "2 ** 64": "msgpack", "{u: undefined, v: 1}": "msgpack"}
	matched := 0
	for _, e := range vectors(t).Facts.Encoders {
		val, ok := goValues[e.Value]
		if !ok {
			continue
		}
		matched++
		w := Writer{SortKeys: true}
		if err := w.Value(val); err != nil {
			t.Fatal(err)
		}
		want := e.Msgpack
		if follows[e.Value] == "notepack" {
			want = e.Notepack
		}
		if got := hex.EncodeToString(w.B); got != want {
			t.Errorf("%s: %s, want %s (@msgpack/msgpack %s, notepack.io %s)", e.Value, got, want, e.Msgpack, e.Notepack)
		}
	}
	if matched != len(goValues) {
		t.Errorf("%d of %d encoder facts found", matched, len(goValues))
	}
}

// elements returns the hex of each element of the packet array of a
// serverSideEmit payload.
func elements(t *testing.T, payloadHex string) []string {
	t.Helper()
	s := mustHex(t, payloadHex)
	i := strings.Index(s, "\xa6packet") + len("\xa6packet")
	r := &reader{s: s, i: i, budget: math.MaxInt}
	n, err := r.arrayLen(false)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, n)
	for k := range out {
		start := r.i
		if err := r.skip(1); err != nil {
			t.Fatal(err)
		}
		out[k] = hex.EncodeToString([]byte(s[start:r.i]))
	}
	return out
}

// The stream of each namespace, for streamCount 4, and its hash, as Node
// computed them; and the live result: a namespace with a negative index is
// never read by other servers.
func TestStreamNameVectors(t *testing.T) {
	v := vectors(t).byName(t, "stream_keys_count4")
	if len(v.HashCode) != 8 {
		t.Fatalf("%d namespaces", len(v.HashCode))
	}
	for _, h := range v.HashCode {
		if got := HashCode(h.Nsp); got != h.HashCode {
			t.Errorf("HashCode(%q) = %d, want %d", h.Nsp, got, h.HashCode)
		}
		if got := StreamName("socket.io", 4, h.Nsp); got != h.Stream {
			t.Errorf("StreamName(%q) = %s, want %s", h.Nsp, got, h.Stream)
		}
		if StreamName("socket.io", 1, h.Nsp) != "socket.io" || StreamName("socket.io", 0, h.Nsp) != "socket.io" {
			t.Errorf("one stream: %s", StreamName("socket.io", 1, h.Nsp))
		}
	}
	if StreamName("socket.io", 4, "/orders-namespace") != "socket.io--2" {
		t.Error("/orders-namespace")
	}
	for _, l := range v.Live {
		if StreamName("socket.io", 4, l.Nsp) != l.Key || l.Received == strings.Contains(l.Key, "--") {
			t.Errorf("live %+v", l)
		}
	}
}
