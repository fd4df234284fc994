package redisadapter

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

// hostileFrames are payloads anyone able to PUBLISH can send.
func hostileFrames(t testing.TB) []string {
	frames := []string{
		"",
		"\xc1",
		"\xc0",
		"{",
		"{}",
		`{"type":"x"}`,
		"[1,2,3]",
		"not msgpack at all",
		"\x83\xa3uid\xa1x\xa6packet\x80\xa4opts\x80", // map-shaped broadcast (the old Go ports' format)
		"\xdd\x7f\xff\xff\xff",                       // claims a 2^31-element array
		"\xdf\x7f\xff\xff\xff",                       // claims a 2^31-entry map
		"\xdb\x7f\xff\xff\xff",                       // claims a 2 GiB string
	}
	for _, g := range golden {
		b, _ := hex.DecodeString(g)
		frames = append(frames, string(b[:len(b)/2]), string(b)+"\x00")
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 50; i++ {
		b := make([]byte, r.IntN(64))
		for j := range b {
			b[j] = byte(r.IntN(256))
		}
		frames = append(frames, string(b))
	}
	return frames
}

// TestHostileFramesAreDroppedAndCounted publishes malformed frames on every
// channel the adapter listens to, and on channels it does not: they are
// dropped and counted, nothing panics, and valid traffic still flows (ports
// S3 and S4).
func TestHostileFramesAreDroppedAndCounted(t *testing.T) {
	c := newCluster(t, 2, nil)
	cl, s := c.connect(1, "/")
	s.Join("room1")
	pub := c.redis.client(t)
	ctx := context.Background()
	ch := newChannels(c.key, "/", c.nodes[1].b.UID())
	targets := []string{ch.broadcast, ch.roomChannel("room1"), ch.request, ch.response, ch.specificResponse,
		ch.broadcast + "no-trailing-hash", "foo", "woot", c.key + "#/other#"}
	frames := hostileFrames(t)
	for _, target := range targets {
		for _, f := range frames {
			if err := pub.Publish(ctx, target, f).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.nodes[0].io.To("room1").Emit("still", "works")
	waitEvents(t, cl, "still", 1)
	st := c.nodes[1].b.Stats()
	// Each frame on the five subscribed channels is counted once as
	// malformed or unsupported; the ones on other channels never reach us.
	if st.DroppedMalformed < uint64(len(frames)) {
		t.Errorf("DroppedMalformed = %d, want at least %d", st.DroppedMalformed, len(frames))
	}
	if len(cl.Received("still")) != 1 {
		t.Errorf("valid broadcast delivered %d times", len(cl.Received("still")))
	}
	if n := len(cl.Errors()); n != 0 {
		t.Errorf("client saw %d protocol errors: %v", n, cl.Errors())
	}
}

// FuzzDecodeBroadcast checks the broadcast decoder never panics and that what
// it accepts re-encodes into a frame it accepts again.
func FuzzDecodeBroadcast(f *testing.F) {
	for _, g := range golden {
		b, _ := hex.DecodeString(g)
		f.Add(b)
	}
	for _, h := range hostileFrames(f) {
		f.Add([]byte(h))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeBroadcast(b)
		if err != nil {
			return
		}
		e := getEncoder()
		defer putEncoder(e)
		if err := e.appendBroadcast(fr.UID, &fr.Packet, fr.Rooms, fr.Except, fr.Flags); err != nil {
			return // e.g. a value msgpack cannot encode back; never a panic
		}
		if _, err := decodeBroadcast(e.buf.Bytes()); err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
	})
}

// FuzzRequestFrame checks the request/response envelope decoder never panics.
func FuzzRequestFrame(f *testing.F) {
	f.Add([]byte(`{"uid":"XI7-0b","requestId":"PdBBa2","type":5,"opts":{"rooms":[],"except":[]}}`))
	b, _ := hex.DecodeString("83a47479706509a9726571756573744964a6506442426132a67061636b6574a5622d61636b")
	f.Add(b)
	for _, h := range hostileFrames(f) {
		f.Add([]byte(h))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeMessage(b)
	})
}
