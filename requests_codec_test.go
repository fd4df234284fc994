package redisadapter

import (
	"encoding/hex"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zishang520/socket.io-go-parser/v2/parser"
)

// Golden request and response frames captured from Node.js (anchors §1.3).
const (
	goldenAckRequest  = "85a3756964a67a734559766ca9726571756573744964a6506442426132a47479706507a67061636b657483a47479706502a46461746191a361636ba36e7370a12fa46f70747383a5726f6f6d7390a665786365707490a5666c61677381a774696d656f7574cd01f4"
	goldenAckResponse = "83a47479706509a9726571756573744964a6506442426132a67061636b6574a5622d61636b"
)

// I2: BROADCAST (7) and BROADCAST_ACK (9) are msgpack, byte for byte; the
// client count is JSON with Node's camelCase key.
func TestGoldenAckFrames(t *testing.T) {
	e := getEncoder()
	defer putEncoder(e)
	d := 500 * time.Millisecond
	if err := e.appendAckRequest("zsEYvl", "PdBBa2", &parser.Packet{Type: parser.EVENT, Data: []any{"ack"}, Nsp: "/"}, nil, nil, wireFlags{Timeout: &d}); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(e.buf.Bytes()); got != goldenAckRequest {
		t.Fatalf("ack request:\n got %s\nwant %s", got, goldenAckRequest)
	}
	m, err := decodeMessage(mustHex(t, goldenAckRequest))
	if err != nil {
		t.Fatal(err)
	}
	pkt, err := m.packetOf("/")
	if err != nil || m.typ() != reqBroadcast || m.str("requestId") != "PdBBa2" || m.str("uid") != "zsEYvl" ||
		pkt.Type != parser.EVENT || !reflect.DeepEqual(pkt.Data, []any{"ack"}) {
		t.Fatalf("decoded %v / %+v / %v", m, pkt, err)
	}

	e2 := getEncoder()
	defer putEncoder(e2)
	if err := e2.appendAckResponse("PdBBa2", "b-ack"); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(e2.buf.Bytes()); got != goldenAckResponse {
		t.Fatalf("ack response:\n got %s\nwant %s", got, goldenAckResponse)
	}
	m, err = decodeMessage(mustHex(t, goldenAckResponse))
	if err != nil || m.typ() != reqBroadcastAck || m["packet"] != "b-ack" {
		t.Fatalf("decoded %v %v", m, err)
	}

	for _, n := range []uint64{0, 1} {
		e3, err := encodeJSONFrame(clientCountResponse{Type: reqBroadcastClientCount, RequestID: "PdBBa2", ClientCount: n})
		if err != nil {
			t.Fatal(err)
		}
		want := `{"type":8,"requestId":"PdBBa2","clientCount":` + map[uint64]string{0: "0", 1: "1"}[n] + `}`
		if got := e3.buf.String(); got != want {
			t.Fatalf("client count: %s, want %s", got, want)
		}
		putEncoder(e3)
	}
}

// The JSON requests Go sends are the ones Node sends, key order included.
func TestGoldenJSONRequests(t *testing.T) {
	closeTrue := true
	cases := []struct {
		req  any
		want string
	}{
		{requestOut{UID: "XI7-0b", Type: reqRemoteJoin, Opts: &optsOut{Rooms: []string{"room1"}, Except: []string{}}, Rooms: []string{"room2"}},
			`{"uid":"XI7-0b","type":2,"opts":{"rooms":["room1"],"except":[]},"rooms":["room2"]}`},
		{requestOut{UID: "XI7-0b", Type: reqRemoteDisconnect, Opts: &optsOut{Rooms: []string{}, Except: []string{}}, Close: &closeTrue},
			`{"uid":"XI7-0b","type":4,"opts":{"rooms":[],"except":[]},"close":true}`},
		{requestOut{UID: "XI7-0b", RequestID: "abc", Type: reqRemoteFetch, Opts: &optsOut{Rooms: []string{}, Except: []string{}}},
			`{"uid":"XI7-0b","requestId":"abc","type":5,"opts":{"rooms":[],"except":[]}}`},
		{requestOut{UID: "XI7-0b", Type: reqServerSideEmit, Data: []any{"hello", "world", 1}},
			`{"uid":"XI7-0b","type":6,"data":["hello","world",1]}`},
		{requestOut{UID: "XI7-0b", RequestID: "abc", Type: reqAllRooms}, `{"uid":"XI7-0b","requestId":"abc","type":1}`},
		{fetchResponse{RequestID: "abc", Sockets: []socketDetail{}}, `{"requestId":"abc","sockets":[]}`},
		{sseResponse{Type: reqServerSideEmit, RequestID: "abc", Data: "<b>"}, `{"type":6,"requestId":"abc","data":"<b>"}`},
	}
	for _, c := range cases {
		e, err := encodeJSONFrame(c.req)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.buf.String(); got != c.want {
			t.Errorf("got  %s\nwant %s", got, c.want)
		}
		putEncoder(e)
	}
}

// I3: a REMOTE_FETCH answer from Node (string header and query values, ms
// issued, date string time, numeric room) decodes; ours encodes Node's shape.
func TestNodeFetchSocketsResponse(t *testing.T) {
	node := `{"requestId":"abc","sockets":[{"id":"qNHieXLffp8HjhyrAAAA","handshake":{"headers":{"host":"localhost:3000","accept":"*/*","set-cookie":["a=1","b=2"]},"time":"Wed Nov 25 2026 10:00:00 GMT+0000 (Coordinated Universal Time)","address":"::1","xdomain":false,"secure":false,"issued":1795600000000,"url":"/socket.io/?EIO=4&transport=websocket","query":{"EIO":"4","transport":"websocket"},"auth":{"token":"t"}},"rooms":["qNHieXLffp8HjhyrAAAA","room1",123],"data":{"user":"bob"}}]}`
	m, err := decodeMessage([]byte(node))
	if err != nil {
		t.Fatal(err)
	}
	list := m["sockets"].([]any)
	rs, err := remoteSocketOf(list[0])
	if err != nil {
		t.Fatal(err)
	}
	h := rs.Handshake()
	if rs.Id() != "qNHieXLffp8HjhyrAAAA" || h.Address != "::1" || h.Issued != 1795600000000 ||
		!reflect.DeepEqual(h.Headers["Host"], []string{"localhost:3000"}) ||
		!reflect.DeepEqual(h.Headers["Set-Cookie"], []string{"a=1", "b=2"}) ||
		!reflect.DeepEqual(h.Query["EIO"], []string{"4"}) || h.Url != "/socket.io/?EIO=4&transport=websocket" ||
		!reflect.DeepEqual(h.Auth, map[string]any{"token": "t"}) || h.Time == "" {
		t.Fatalf("handshake %+v", h)
	}
	if !rs.Rooms().Has("123") || !rs.Rooms().Has("room1") || rs.Rooms().Len() != 3 {
		t.Fatalf("rooms %v", rs.Rooms().Keys())
	}
	if !reflect.DeepEqual(rs.Data(), map[string]any{"user": "bob"}) {
		t.Fatalf("data %#v", rs.Data())
	}
	// Ours: single values as strings, repeated ones as arrays.
	d := detailOf(rs)
	if d.Handshake.Headers["host"] != "localhost:3000" || !reflect.DeepEqual(d.Handshake.Headers["set-cookie"], []string{"a=1", "b=2"}) ||
		d.Handshake.Query["EIO"] != "4" || d.Handshake.Issued != 1795600000000 {
		t.Fatalf("encoded handshake %+v", d.Handshake)
	}
}

// I4: Node's serverSideEmit answers carry one value, any JSON.
func TestNodeServerSideEmitResponse(t *testing.T) {
	b := &Builder{reqs: requests{pending: map[string]*pendingRequest{}, acks: map[string]*ackRequest{}}}
	done := make(chan []any, 1)
	p := &pendingRequest{id: "rq", kind: reqServerSideEmit, expected: 2, responses: []any{}}
	p.finish = func(p *pendingRequest, err error) { done <- p.responses }
	b.start(p, func() bool { return true }, time.Minute, errTimeout)
	for _, frame := range []string{`{"type":6,"requestId":"rq","data":{"from":"B"}}`, `{"type":6,"requestId":"rq","data":2}`} {
		m, err := decodeMessage([]byte(frame))
		if err != nil {
			t.Fatal(err)
		}
		a := &Adapter{b: b}
		if err := a.onResponse(m); err != nil {
			t.Fatal(err)
		}
	}
	got := <-done
	if !reflect.DeepEqual(got, []any{map[string]any{"from": "B"}, float64(2)}) {
		t.Fatalf("responses %#v", got)
	}
	// A third answer is late: dropped and counted.
	m, _ := decodeMessage([]byte(`{"type":6,"requestId":"rq","data":3}`))
	_ = (&Adapter{b: b}).onResponse(m)
	if b.stats.droppedLate.Load() != 1 {
		t.Fatalf("late answer not counted")
	}
}

// I8: our own requests coming back are ignored by uid, and our own
// BROADCAST (7) is never answered by us even without a uid check.
func TestOwnRequestsIgnored(t *testing.T) {
	c := newCluster(t, 1, nil)
	b := c.nodes[0].b
	a := ns(c, 0, "/").Adapter().(*Adapter)
	before := b.stats.droppedOwn.Load()
	m, _ := decodeMessage([]byte(`{"uid":"` + b.uid + `","type":6,"data":["x"]}`))
	if err := a.onRequest(m); err != nil {
		t.Fatal(err)
	}
	b.reqs.mu.Lock()
	b.reqs.acks["mine"] = &ackRequest{}
	b.reqs.mu.Unlock()
	m, _ = decodeMessage([]byte(`{"uid":"someone-else","requestId":"mine","type":7,"packet":{"type":2,"data":["x"]},"opts":{"rooms":[],"except":[]}}`))
	if err := a.onRequest(m); err != nil {
		t.Fatal(err)
	}
	if got := b.stats.droppedOwn.Load() - before; got != 2 {
		t.Fatalf("droppedOwn grew by %d, want 2", got)
	}
}

// Completion happens exactly once when the last answer and the timeout race,
// and the pending entry is always gone afterwards.
func TestRequestCompletesExactlyOnce(t *testing.T) {
	b := &Builder{reqs: requests{pending: map[string]*pendingRequest{}, acks: map[string]*ackRequest{}}}
	for i := 0; i < 300; i++ {
		var calls atomic.Int32
		var wg sync.WaitGroup
		wg.Add(1)
		p := &pendingRequest{id: "r", kind: reqServerSideEmit, expected: 1, responses: []any{}}
		p.finish = func(*pendingRequest, error) { calls.Add(1); wg.Done() }
		b.start(p, func() bool { return true }, time.Duration(i%3)*time.Microsecond, errTimeout)
		go b.respond("r", func(p *pendingRequest) { p.responses = append(p.responses, 1) })
		wg.Wait()
		waitFor(t, "entry removed", func() bool { return b.pendingCount() == 0 })
		if n := calls.Load(); n != 1 {
			t.Fatalf("finish called %d times", n)
		}
	}
	// And a response after completion is refused.
	if b.respond("r", func(*pendingRequest) {}) {
		t.Fatal("late response accepted")
	}
}
