package wire

import (
	"testing"
	"time"
)

// Benchmarks of the hot paths: what every broadcast, request and stream
// entry costs to write and to read.

// benchChat is a chat message as a server broadcasts it to a room.
func benchChat() (*Packet, *Opts) {
	return &Packet{Type: PacketEvent, Nsp: "/", Data: []any{"chat message", map[string]any{"user": "alice", "text": "hello, world!"}}},
		&Opts{Rooms: []string{"room1"}}
}

func BenchmarkEncodeClassicBroadcast(b *testing.B) {
	p, o := benchChat()
	buf, _ := AppendClassicBroadcast(nil, "zsEYvl", p, o)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendClassicBroadcast(buf[:0], "zsEYvl", p, o)
	}
}

func BenchmarkDecodeClassicBroadcast(b *testing.B) {
	p, o := benchChat()
	frame, _ := AppendClassicBroadcast(nil, "zsEYvl", p, o)
	s := string(frame)
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeClassicBroadcast(s); err != nil {
			b.Fatal(err)
		}
	}
}

func benchFetch() *Message {
	return &Message{Type: TypeFetchSockets, UID: "XI7-0b", RequestID: "PdBBa2", Opts: Opts{Rooms: []string{"room1"}}}
}

func BenchmarkAppendClassicRequest(b *testing.B) {
	m := benchFetch()
	buf, _ := AppendClassicRequest(nil, m)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendClassicRequest(buf[:0], m)
	}
}

func BenchmarkDecodeClassicRequest(b *testing.B) {
	frame, _ := AppendClassicRequest(nil, benchFetch())
	s := string(frame)
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeClassicRequest(s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeClassicResponse(b *testing.B) {
	ack, _ := AppendClassicResponse(nil, &Message{Type: TypeBroadcastAck, RequestID: "PdBBa2", Value: "b-ack"})
	fetch, _ := AppendClassicResponse(nil, &Message{Type: TypeFetchSocketsResponse, RequestID: "PdBBa2", Sockets: realisticSockets(10)})
	for _, c := range []struct {
		name  string
		frame string
	}{{"ack", string(ack)}, {"fetch-10-sockets", string(fetch)}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.frame)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeClassicResponse(c.frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchClusterChat() *Message {
	p, o := benchChat()
	return &Message{Type: TypeBroadcast, UID: "434a7f5d4d4cd27e", Nsp: "/", Packet: *p, Opts: *o}
}

var formats = []struct {
	name string
	f    ClusterFormat
}{{"json", FormatSharded}, {"msgpack", FormatMsgpack}}

func BenchmarkAppendCluster(b *testing.B) {
	m := benchClusterChat()
	for _, f := range formats {
		b.Run(f.name, func(b *testing.B) {
			buf, _ := AppendCluster(nil, m, f.f)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = AppendCluster(buf[:0], m, f.f)
			}
		})
	}
}

func BenchmarkDecodeCluster(b *testing.B) {
	m := benchClusterChat()
	for _, f := range formats {
		b.Run(f.name, func(b *testing.B) {
			frame, _ := AppendCluster(nil, m, f.f)
			s := string(frame)
			b.SetBytes(int64(len(s)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeCluster(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkStreamFields(b *testing.B) {
	m := benchClusterChat()
	_, data, _, _ := StreamFields(m, true)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := StreamFields(m, true); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeStreamEntry(b *testing.B) {
	m := benchClusterChat()
	bin := &Message{Type: TypeBroadcast, Packet: Packet{Type: PacketEvent, Data: []any{"file", []byte("0123456789abcdef"), time.Unix(1700000000, 0)}}}
	for _, c := range []struct {
		name string
		m    *Message
	}{{"json", m}, {"base64-msgpack", bin}} {
		b.Run(c.name, func(b *testing.B) {
			typ, data, _, _ := StreamFields(c.m, true)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeStreamEntry("434a7f5d4d4cd27e", "/", typ, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRawMsgpackMarshalJSON(b *testing.B) {
	w := Writer{SortKeys: true}
	_ = w.Value(map[string]any{"user": "alice", "text": "hello, \"world\"!", "ts": int64(1700000000000), "tags": []any{"a", "b"}, "score": 1.5})
	raw := RawMsgpack{b: string(w.B)}
	b.SetBytes(int64(len(raw.b)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := raw.MarshalJSON(); err != nil {
			b.Fatal(err)
		}
	}
}
