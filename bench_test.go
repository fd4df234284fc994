package redisadapter

import (
	"encoding/hex"
	"testing"
	"time"

	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// chatData is a typical chat payload of about 100 bytes.
var chatData = []any{"chat message", map[string]any{"name": "ada", "text": "the quick brown fox jumps over the lazy dog, twice over"}}

func BenchmarkEncodeBroadcast(b *testing.B) {
	pkt := &parser.Packet{Type: parser.EVENT, Data: chatData, Nsp: "/"}
	rooms := []socket.Room{"lobby"}
	b.ReportAllocs()
	var n int
	for i := 0; i < b.N; i++ {
		e := getEncoder()
		if err := e.appendBroadcast("zsEYvl", pkt, rooms, nil, wireFlags{}); err != nil {
			b.Fatal(err)
		}
		n = e.buf.Len()
		putEncoder(e)
	}
	b.SetBytes(int64(n))
}

func BenchmarkDecodeBroadcast(b *testing.B) {
	e := getEncoder()
	_ = e.appendBroadcast("zsEYvl", &parser.Packet{Type: parser.EVENT, Data: chatData, Nsp: "/"}, []socket.Room{"lobby"}, nil, wireFlags{})
	frame := append([]byte(nil), e.buf.Bytes()...)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := decodeBroadcast(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeGoldenKinds(b *testing.B) {
	frame, _ := hex.DecodeString(golden["kinds"])
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := decodeBroadcast(frame); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBroadcastRemoteRoom measures Broadcast to a room whose only member
// is on another server: encode, queue, and the publisher's pipelined writes
// (miniredis by default, real Redis under REDIS_URL). The caller's cost is
// ns/op; msgs/s counts frames that reached Redis during the run.
func BenchmarkBroadcastRemoteRoom(b *testing.B) {
	c := newCluster(b, 2, nil)
	_, s := c.connect(1, "/")
	s.Join("remote-room")
	a := ns(c, 0, "/").Adapter().(*Adapter)
	opts := &socket.BroadcastOptions{Rooms: socketRooms("remote-room")}
	before := c.nodes[0].b.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.Broadcast(&parser.Packet{Type: parser.EVENT, Data: chatData}, opts)
	}
	waitFor(b, "queue drained", func() bool { return len(c.nodes[0].b.queue) == 0 })
	b.StopTimer()
	after := c.nodes[0].b.Stats()
	b.ReportMetric(float64(after.Published-before.Published)/b.Elapsed().Seconds(), "published/s")
	if d := after.PublishDropped - before.PublishDropped; d > 0 {
		b.ReportMetric(float64(d), "dropped")
	}
}

// BenchmarkReceiveToLocalDelivery measures the receive path from a raw frame
// on a room channel to the write into one local client's engine: room check,
// decode, uid check and local delivery.
func BenchmarkReceiveToLocalDelivery(b *testing.B) {
	c := newCluster(b, 1, nil)
	_, s := c.connect(0, "/")
	s.Join("lobby")
	a := ns(c, 0, "/").Adapter().(*Adapter)
	e := getEncoder()
	_ = e.appendBroadcast("other-server", &parser.Packet{Type: parser.EVENT, Data: chatData, Nsp: "/"}, []socket.Room{"lobby"}, nil, wireFlags{})
	frame := string(e.buf.Bytes())
	channel := a.ch.roomChannel("lobby")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.onBroadcast(channel, frame)
	}
}

// BenchmarkReceiveUnknownRoom measures dropping a frame for a room this
// server does not hold: no decoding happens.
func BenchmarkReceiveUnknownRoom(b *testing.B) {
	c := newCluster(b, 1, nil)
	a := ns(c, 0, "/").Adapter().(*Adapter)
	frame := string(mustHex(b, golden["room"]))
	channel := a.ch.roomChannel("room1")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		a.onBroadcast(channel, frame)
	}
}

func socketRooms(rooms ...socket.Room) *typesSet {
	s := newTypesSet()
	s.Add(rooms...)
	return s
}

func BenchmarkEncodeAckRequest(b *testing.B) {
	d := 500 * time.Millisecond
	pkt := &parser.Packet{Type: parser.EVENT, Data: chatData, Nsp: "/"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		e := getEncoder()
		if err := e.appendAckRequest("zsEYvl", "PdBBa2", pkt, nil, nil, wireFlags{Timeout: &d}); err != nil {
			b.Fatal(err)
		}
		putEncoder(e)
	}
}

func BenchmarkEncodeJSONRequest(b *testing.B) {
	req := requestOut{UID: "zsEYvl", RequestID: "PdBBa2", Type: reqRemoteFetch, Opts: &optsOut{Rooms: []string{"lobby"}, Except: []string{}}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		e, err := encodeJSONFrame(req)
		if err != nil {
			b.Fatal(err)
		}
		putEncoder(e)
	}
}

func BenchmarkDecodeRequestFrames(b *testing.B) {
	frames := [][]byte{
		[]byte(`{"uid":"XI7-0b","requestId":"abc","type":5,"opts":{"rooms":["lobby"],"except":[]}}`),
		[]byte(`{"type":6,"requestId":"abc","data":{"from":"B"}}`),
		mustHex(b, goldenAckRequest),
		mustHex(b, goldenAckResponse),
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := decodeMessage(frames[i%len(frames)]); err != nil {
			b.Fatal(err)
		}
	}
}
