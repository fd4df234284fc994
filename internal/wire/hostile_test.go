package wire

import (
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
)

// decoders are every decoder of the package, each taking a whole frame.
var decoders = map[string]func(string) (*Message, error){
	"DecodeClassicBroadcast": DecodeClassicBroadcast,
	"DecodeClassicRequest":   DecodeClassicRequest,
	"DecodeClassicResponse":  DecodeClassicResponse,
	"DecodeCluster":          DecodeCluster,
	"DecodeStreamEntry":      func(s string) (*Message, error) { return DecodeStreamEntry("u", "/", "3", s) },
}

// goldenFrames are valid frames of every protocol, for truncation and
// fuzzing seeds.
func goldenFrames(t testing.TB) []string {
	frames := []string{
		mustHex(t, goldenRoom), mustHex(t, goldenKinds), mustHex(t, goldenFlags), mustHex(t, goldenNumericRoom),
		mustHex(t, goldenDate), mustHex(t, goldenEmitter), mustHex(t, goldenAckRequest), mustHex(t, goldenAckResponse),
		nodeFetchResponse,
		`{"uid":"XI7-0b","requestId":"abc","type":5,"opts":{"rooms":[],"except":[]}}`,
		`{"uid":"XI7-0b","type":6,"data":["hello","world",1]}`,
		`{"type":8,"requestId":"PdBBa2","clientCount":1}`,
		`{"type":3,"data":{"packet":{"type":2,"data":["hello","world",1]},"opts":{"rooms":[],"except":[],"flags":{}}},"uid":"5fd6b57a7c5a9a23","nsp":"/"}`,
		mustHex(t, nodeBinaryBroadcast("room1")),
	}
	vs, err := loadVectors()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs.Vectors {
		if v.PayloadHex != "" {
			frames = append(frames, mustHex(t, v.PayloadHex))
		}
		if v.Data != "" {
			frames = append(frames, v.Data)
		}
	}
	return frames
}

// Every golden frame cut short is refused by every decoder, without panic.
func TestTruncatedFramesRefused(t *testing.T) {
	for _, f := range goldenFrames(t) {
		for name, decode := range decoders {
			if _, err := decode(f); err != nil {
				continue // not this decoder's frame
			}
			for i := range len(f) {
				if m, err := decode(f[:i]); err == nil {
					t.Errorf("%s accepted %q cut at %d of %d: %+v", name, f[:i], i, len(f), m)
				}
			}
		}
	}
}

// Random bytes and golden frames with random bytes changed never panic, and
// give a message or an error, never both.
func TestRandomFramesDecodeOrFail(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	frames := goldenFrames(t)
	for range 20000 {
		var b []byte
		if rng.IntN(4) == 0 {
			b = make([]byte, rng.IntN(64))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
		} else {
			b = []byte(frames[rng.IntN(len(frames))])
			for range 1 + rng.IntN(4) {
				if len(b) > 0 {
					b[rng.IntN(len(b))] = byte(rng.IntN(256))
				}
			}
		}
		for name, decode := range decoders {
			m, err := decode(string(b))
			if (m == nil) == (err == nil) {
				t.Fatalf("%s(%q): %+v, %v", name, b, m, err)
			}
		}
	}
}

// The committed crash seed of FuzzDecodeClassicBroadcast is a packet whose
// first key is a map32 header claiming 0xcf000000 entries: the old decoder
// decoded that key generically and spun on the claim. It must be refused at
// with ErrShape, as must the same claim anywhere a key is read.
func TestMapKeyClaimingBillionsOfEntries(t *testing.T) {
	seed, err := os.ReadFile("testdata/fuzz/FuzzDecodeClassicBroadcast/d9423b436296ee49")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(seed)), "\n")
	frame, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(frame, "\x93\xa6zsEYvl\x83\xdf\xcf\x00\x00\x00") {
		t.Fatalf("seed %q no longer holds the map32 key", frame)
	}
	if m, err := DecodeClassicBroadcast(frame); !errors.Is(err, ErrShape) {
		t.Fatalf("seed: %+v, %v", m, err)
	}
	claim := "\xdf\xff\xff\xff\xff"
	frames := map[string]func(string) (*Message, error){
		"\x93\xa1u\x81" + claim + "\xc0\x80":                        DecodeClassicBroadcast, // packet key
		"\x93\xa1u\x80\x81" + claim:                                 DecodeClassicBroadcast, // opts key
		"\x93\xa1u\x81\xa4data\x92\xa1e\x81" + claim + "\xc0\x80":   DecodeClassicBroadcast, // argument's key
		"\x81" + claim + "\xc0":                                     DecodeClassicRequest,
		"\x81" + claim + "\xc0 ":                                    DecodeClassicResponse,
		"\x84\xa4type\x03\xa4data\x81" + claim + "\xc0\xa3uid\xa1u": DecodeCluster,
	}
	for frame, decode := range frames {
		if m, err := decode(frame); err == nil {
			t.Errorf("%q: %+v", frame, m)
		}
	}
}
