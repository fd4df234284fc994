package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets of every decoder. Each checks that a frame gives a message or
// an error (never both, never a panic), and that what decodes writes back
// into a frame that decodes, stably: encoding the decoded message and
// decoding it again is a fixed point after one round (the first round may
// normalize: numeric rooms become strings, a timeout whole milliseconds,
// JSON numbers float64).

func seedFrames(f *testing.F) {
	for _, s := range goldenFrames(f) {
		f.Add([]byte(s))
	}
}

// canon writes m in a canonical form, for comparisons: every field, values
// with their raw arguments decoded and map keys sorted, nil and empty alike.
func canon(t *testing.T, m *Message) []byte {
	t.Helper()
	w := Writer{SortKeys: true}
	value := func(v any) {
		if err := w.Value(plain(t, v)); err != nil {
			t.Fatalf("canon: %v", err)
		}
	}
	w.Int(int64(m.Type))
	w.String(m.UID)
	w.String(m.Nsp)
	w.String(m.RequestID)
	w.Int(int64(m.Packet.Type))
	value(m.Packet.Data)
	w.String(m.Packet.Nsp)
	if m.Packet.ID != nil {
		w.Uint(*m.Packet.ID)
	} else {
		w.Nil()
	}
	canonOpts(&w, &m.Opts)
	w.Strings(m.Rooms)
	w.Bool(m.Close)
	value(m.Args)
	value(m.Value)
	w.Uint(m.ClientCount)
	w.ArrayLen(len(m.Sockets))
	for _, s := range m.Sockets {
		w.String(s.ID)
		h := s.Handshake
		value(mapOrEmpty(h.Headers))
		value(mapOrEmpty(h.Query))
		if h.Auth == nil {
			h.Auth = map[string]any{}
		}
		value(h.Auth)
		w.String(h.Time)
		w.String(h.Address)
		w.String(h.URL)
		w.Bool(h.Xdomain)
		w.Bool(h.Secure)
		w.Int(h.Issued)
		w.Strings(s.Rooms)
		value(s.Data)
	}
	w.Strings(m.SocketIDs)
	w.Bool(m.Legacy)
	w.String(m.SID)
	w.String(m.Room)
	return w.B
}

func canonOpts(w *Writer, o *Opts) {
	w.Strings(o.Rooms)
	w.Strings(o.Except)
	w.Bool(o.Flags.Volatile)
	if o.Flags.Compress != nil {
		w.Bool(*o.Flags.Compress)
	} else {
		w.Nil()
	}
	if o.Flags.Timeout != nil {
		w.Int(int64(*o.Flags.Timeout))
	} else {
		w.Nil()
	}
}

// unencodable reports whether err is JSON refusing a value it cannot hold
// (NaN, infinities, years past 9999): a decoded MessagePack frame may hold
// them, and a message rewritten as JSON cannot.
func unencodable(err error) bool {
	var uv *json.UnsupportedValueError
	return errors.As(err, &uv)
}

// checkOneOf fails unless exactly one of m and err is set.
func checkOneOf(t *testing.T, m *Message, err error) {
	t.Helper()
	if (m == nil) == (err == nil) {
		t.Fatalf("message %+v with error %v", m, err)
	}
}

// checkArgs checks the raw arguments of a decoded packet: each decodes, and
// transcodes to JSON as encoding/json writes its value.
func checkArgs(t *testing.T, data any) {
	t.Helper()
	args, _ := data.([]any)
	for _, a := range args {
		switch r := a.(type) {
		case RawMsgpack:
			v, err := r.Value()
			if err != nil {
				t.Fatalf("raw argument %x does not decode: %v", r.b, err)
			}
			got, gerr := r.MarshalJSON()
			want, werr := stdJSON(v)
			if (gerr == nil) != (werr == nil) {
				t.Fatalf("raw argument %x: MarshalJSON %v, encoding/json %v", r.b, gerr, werr)
			}
			if gerr == nil && !sameJSONText(got, want) {
				t.Fatalf("raw argument %x:\n got %s\nwant %s", r.b, got, want)
			}
		case RawJSON:
			if !json.Valid(r.b) || !utf8.Valid(r.b) {
				t.Fatalf("raw JSON argument %q is not valid JSON text", r.b)
			}
			if _, err := json.Marshal(r); err != nil {
				t.Fatalf("raw JSON argument %q: %v", r.b, err)
			}
		}
	}
}

// sameJSONText reports whether two JSON texts mean the same value (numbers
// compared as encoding/json reads them).
func sameJSONText(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// roundTrip encodes m with enc, decodes it with dec, twice, and checks the
// second round changes nothing.
func roundTrip(t *testing.T, m *Message, enc func(*Message) ([]byte, error), dec func(string) (*Message, error)) {
	t.Helper()
	b1, err := enc(m)
	if err != nil {
		if unencodable(err) {
			return
		}
		t.Fatalf("re-encode %+v: %v", m, err)
	}
	m2, err := dec(string(b1))
	if err != nil {
		t.Fatalf("re-encoded frame %q does not decode: %v", b1, err)
	}
	b2, err := enc(m2)
	if err != nil {
		t.Fatalf("second re-encode of %q: %v", b1, err)
	}
	m3, err := dec(string(b2))
	if err != nil {
		t.Fatalf("second re-encoded frame %q does not decode: %v", b2, err)
	}
	if c2, c3 := canon(t, m2), canon(t, m3); !bytes.Equal(c2, c3) {
		t.Fatalf("unstable round trip:\n%q\n%q\n%+v\n%+v", b1, b2, m2, m3)
	}
}

func FuzzDecodeClassicBroadcast(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeClassicBroadcast(string(b))
		checkOneOf(t, m, err)
		if err != nil {
			return
		}
		checkArgs(t, m.Packet.Data)
		roundTrip(t, m, func(m *Message) ([]byte, error) {
			return AppendClassicBroadcast(nil, m.UID, &m.Packet, &m.Opts)
		}, DecodeClassicBroadcast)
	})
}

func FuzzDecodeClassicRequest(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeClassicRequest(string(b))
		checkOneOf(t, m, err)
		if err != nil {
			return
		}
		checkArgs(t, m.Packet.Data)
		if m.Legacy || m.Type == TypeSockets {
			return // pre-8.0 requests, which Go never sends
		}
		roundTrip(t, m, func(m *Message) ([]byte, error) { return AppendClassicRequest(nil, m) }, DecodeClassicRequest)
	})
}

func FuzzDecodeClassicResponse(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeClassicResponse(string(b))
		checkOneOf(t, m, err)
		if err != nil {
			return
		}
		roundTrip(t, m, func(m *Message) ([]byte, error) { return AppendClassicResponse(nil, m) }, DecodeClassicResponse)
	})
}

func FuzzDecodeCluster(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeCluster(string(b))
		checkOneOf(t, m, err)
		if err != nil {
			return
		}
		checkArgs(t, m.Packet.Data)
		for _, format := range []ClusterFormat{FormatMsgpack, FormatSharded} {
			roundTrip(t, m, func(m *Message) ([]byte, error) { return AppendCluster(nil, m, format) }, DecodeCluster)
		}
	})
}

func FuzzDecodeStreamEntry(f *testing.F) {
	vs, err := loadVectors()
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range vs.Vectors {
		if v.Kind == "xadd" {
			f.Add(v.Fields[2][1], v.Data)
		}
	}
	f.Add("1", "")
	f.Add("10", `{"requestId":"r","packet":{"a":[1,2.5,"x"]}}`)
	f.Add("8", b64(mustHex(f, "82a9726571756573744964a172a7736f636b657473918"+"2a26964a173a464617461c40101")))
	f.Fuzz(func(t *testing.T, typ, data string) {
		m, err := DecodeStreamEntry("u", "/", typ, data)
		checkOneOf(t, m, err)
		if err != nil {
			return
		}
		checkArgs(t, m.Packet.Data)
		for _, binaryOK := range []bool{true, false} {
			roundTrip(t, m, func(m *Message) ([]byte, error) {
				typ, data, _, err := StreamFields(m, binaryOK)
				return []byte(typ + "\x00" + data), err
			}, func(s string) (*Message, error) {
				typ, data, _ := strings.Cut(s, "\x00")
				return DecodeStreamEntry("u", "/", typ, data)
			})
		}
	})
}

// FuzzRawJSON checks the two JSON paths against encoding/json: MessagePack
// values transcoded by RawMsgpack.MarshalJSON, and JSON read by the
// decoders' JSON reader.
func FuzzRawJSON(f *testing.F) {
	for _, s := range goldenFrames(f) {
		f.Add([]byte(s))
	}
	for _, s := range []string{`{"a":[1,-0,1e21,1.5e-7,"\u00e9\ud83d\ude00\ud800",null,true]}`, `"\b\f\n\u2028"`, `[01]`, `1.`, "\"\xff\"",
		"\x82\xa1a\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00\xa1b\xd7\xff\x00\x00\x00\x01\x00\x00\x00\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := string(b)
		// MessagePack to JSON.
		raw := RawMsgpack{b: s}
		if v, err := raw.Value(); err == nil {
			got, gerr := raw.MarshalJSON()
			want, werr := stdJSON(v)
			if gerr != nil && werr == nil && hasDuplicateKeys(s) {
				// A map with a key given twice is transcoded with both
				// entries (JSON readers keep the last, as Value does): a
				// NaN in the entry Value drops still fails MarshalJSON.
				return
			}
			if (gerr == nil) != (werr == nil) {
				t.Fatalf("%x: MarshalJSON %s, %v; encoding/json %s, %v", b, got, gerr, want, werr)
			}
			if gerr == nil && !sameJSONText(got, want) {
				if _, ambiguous := fixUTF8(v); ambiguous {
					// Keys that differ only in invalid bytes become one
					// JSON key: MarshalJSON writes the entries in
					// MessagePack order (a reader keeps the last, as
					// Node's decoder does), encoding/json sorts them.
					return
				}
				t.Fatalf("%x:\n got %s\nwant %s", b, got, want)
			}
		} else if got, err := raw.MarshalJSON(); err == nil {
			t.Fatalf("%x: Value fails (%v), MarshalJSON gives %s", b, err, got)
		}
		// JSON read by the decoders.
		r := &jsonReader{s: s, budget: math.MaxInt}
		v, err := r.any(0)
		if err == nil {
			err = r.done()
		}
		var std any
		stdErr := json.Unmarshal(b, &std)
		switch {
		case err == nil && stdErr != nil:
			t.Fatalf("%q accepted, encoding/json refuses it: %v", b, stdErr)
		case err == nil:
			g, ambiguous := fixUTF8(v)
			w, _ := fixUTF8(std)
			if ambiguous {
				// Keys that differ only in invalid bytes, which
				// encoding/json reads as one key.
				return
			}
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("%q:\n got %#v\nwant %#v", b, g, w)
			}
		case stdErr == nil && !errors.Is(err, ErrTooDeep):
			t.Fatalf("%q refused (%v), encoding/json reads it", b, err)
		}
	})
}

// hasDuplicateKeys reports whether a MessagePack value has a map with a key
// given twice.
func hasDuplicateKeys(s string) bool {
	r := &reader{s: s, budget: math.MaxInt}
	var walk func(depth int) bool
	walk = func(depth int) bool {
		start := r.i
		kind, n, _, err := r.head()
		if err != nil || depth > MaxDepth {
			return false
		}
		switch kind {
		case kArray:
			for range n {
				if walk(depth + 1) {
					return true
				}
			}
		case kMap:
			seen := map[string]bool{}
			for range n {
				k, err := r.key()
				if err != nil {
					return false
				}
				if seen[k] || walk(depth+1) {
					return true
				}
				seen[k] = true
			}
		default:
			r.i = start
			_ = r.skip(depth)
		}
		return false
	}
	return walk(0)
}

// fixUTF8 replaces the invalid bytes of the strings in v with U+FFFD, as
// encoding/json does when it reads them; ambiguous reports two keys of a map
// made one by that.
func fixUTF8(v any) (out any, ambiguous bool) {
	switch t := v.(type) {
	case string:
		if !utf8.ValidString(t) {
			return string(validUTF8(t)), false
		}
	case []any:
		for i, e := range t {
			var amb bool
			t[i], amb = fixUTF8(e)
			ambiguous = ambiguous || amb
		}
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			fk, _ := fixUTF8(k)
			fe, amb := fixUTF8(e)
			if _, dup := out[fk.(string)]; dup {
				amb = true
			}
			ambiguous = ambiguous || amb
			out[fk.(string)] = fe
		}
		return out, ambiguous
	}
	return v, ambiguous
}
