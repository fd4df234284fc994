package wire

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// stdJSON is encoding/json's output for v, without HTML escaping (json.Marshal
// adds it around a Marshaler's output, see TestRawMsgpackHTMLEscaping).
func stdJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// checkTranscode checks that the MessagePack value b transcodes to the JSON
// encoding/json writes for its materialized value: byte for byte when exact,
// else up to the order of map keys. It reports whether both succeeded.
func checkTranscode(t *testing.T, b string, exact bool) bool {
	t.Helper()
	v := RawMsgpack{b: b}
	val, verr := v.Value()
	got, gerr := v.MarshalJSON()
	if verr != nil {
		if gerr == nil {
			t.Errorf("%x: Value fails (%v), MarshalJSON gives %s", b, verr, got)
		}
		return false
	}
	want, werr := stdJSON(val)
	if (gerr != nil) != (werr != nil) {
		t.Errorf("%x (%#v): MarshalJSON %s, %v; encoding/json %s, %v", b, val, got, gerr, want, werr)
		return false
	}
	if gerr != nil {
		return false
	}
	if exact {
		if !bytes.Equal(got, want) {
			t.Errorf("%x (%#v):\n got %s\nwant %s", b, val, got, want)
		}
		return true
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Errorf("%x: MarshalJSON gives invalid JSON %s: %v", b, got, err)
		return false
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%x:\n got %s\nwant %s", b, got, want)
	}
	return true
}

func TestRawMsgpackJSONKinds(t *testing.T) {
	enc := func(f func(w *Writer)) string {
		var w Writer
		f(&w)
		return string(w.B)
	}
	value := func(v any) string {
		w := Writer{SortKeys: true}
		if err := w.Value(v); err != nil {
			t.Fatal(err)
		}
		return string(w.B)
	}
	ok := []string{
		// Integers of every width.
		"\x00", "\x7f", "\xcc\xff", "\xcd\xff\xff", "\xce\xff\xff\xff\xff", "\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
		"\xff", "\xe0", "\xd0\x80", "\xd1\x80\x00", "\xd2\x80\x00\x00\x00", "\xd3\x80\x00\x00\x00\x00\x00\x00\x00",
		// Integers in wider forms than needed (other encoders write them).
		"\xcc\x01", "\xd3\xff\xff\xff\xff\xff\xff\xff\xff", "\xd0\x05",
		// Floats: float32, and float64 across encoding/json's format switches.
		"\xca\x3d\xcc\xcc\xcd", "\xca\x7f\x7f\xff\xff",
		enc(func(w *Writer) { w.Float(1.5) }),
		value(1e21), value(1e20 + 0.5), value(-1e21), value(1e-7), value(-1e-7), value(1e-6), value(123456789.125),
		value(math.MaxFloat64), value(math.SmallestNonzeroFloat64), value(0.1),
		"\xcb\x80\x00\x00\x00\x00\x00\x00\x00", // -0.0 as a float64
		// Strings.
		value(""), value("plain"), value(`quo"te and back\slash`), value("\x00\x01\x1f\x7f\b\f\n\r\t"),
		value("é😀"), value(strings.Repeat("long ", 100)), value("/ is not escaped"),
		// Binary (only JSON requests hold it here): base64, as encoding/json.
		value([]byte{}), value([]byte{0, 1, 2, 253, 254, 255}),
		// Timestamps of all three sizes.
		value(time.Unix(1000, 0)), value(time.Unix(1<<33, 123)), value(time.Unix(-1, 5e8)), value(time.Unix(0, 1)),
		value(time.Date(2024, 1, 2, 3, 4, 5, 678e6, time.UTC)), value(time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)),
		// Containers.
		value(nil), value(true), value(false), value([]any{}), value([]any{1, "a", nil, []any{[]any{}}}),
		value(map[string]any{}), value(map[string]any{"k": 1}),
		value([]any{map[string]any{"a": map[string]any{"b": []any{true}}}}),
	}
	for _, b := range ok {
		if !checkTranscode(t, b, true) {
			t.Errorf("%x did not transcode", b)
		}
	}
	// Maps of several keys keep the sender's key order (encoding/json sorts).
	maps := []string{
		value(map[string]any{"z": 1, "a": []any{map[string]any{"y": nil, "b": 2.5}}, "m": "x"}),
		"\x82\xa1z\x01\xa1a\x02",
		// Numeric keys (a JavaScript object's keys are strings).
		"\x83\x01\xa1a\xff\xa1b\xcf\xff\xff\xff\xff\xff\xff\xff\xff\xa1c",
	}
	for _, b := range maps {
		if !checkTranscode(t, b, false) {
			t.Errorf("%x did not transcode", b)
		}
	}
	if got, _ := (RawMsgpack{b: "\x82\xa1z\x01\xa1a\x02"}).MarshalJSON(); string(got) != `{"z":1,"a":2}` {
		t.Errorf("key order: %s", got)
	}
	if got, _ := (RawMsgpack{b: "\x81\xff\xa1a"}).MarshalJSON(); string(got) != `{"-1":"a"}` {
		t.Errorf("numeric key: %s", got)
	}
	// What JSON cannot hold is an error, as in encoding/json.
	for _, b := range []string{
		value(math.NaN()), value(math.Inf(1)), value(math.Inf(-1)), "\x91\xca\x7f\xc0\x00\x00",
		value(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)), "\xc7\x0c\xff\x00\x00\x00\x00\x80\x00\x00\x00\x00\x00\x00\x00",
	} {
		if got, err := (RawMsgpack{b: b}).MarshalJSON(); err == nil {
			t.Errorf("%x: %s", b, got)
		}
		checkTranscode(t, b, true)
	}
	// Malformed values are errors, never panics or partial output.
	for _, b := range []string{"", "\xc1", "\x92\x01", "\x01\x02", "\xa5abc", "\x81\xc0\x01", "\x81\x80\x01", "\xd4\x05\x00", "\xd6\xff\x00"} {
		if got, err := (RawMsgpack{b: b}).MarshalJSON(); err == nil {
			t.Errorf("%x: %s", b, got)
		}
	}
}

// Invalid UTF-8 becomes U+FFFD, control characters are escaped, U+2028 and
// U+2029 are left as JavaScript's JSON.stringify leaves them (encoding/json
// escapes them: the same JSON).
func TestRawMsgpackJSONStrings(t *testing.T) {
	cases := map[string]string{
		"a\xffb":            `"a\ufffdb"`,
		"\xe2\x82":          `"\ufffd\ufffd"`,
		"\xed\xa0\x80":      `"\ufffd\ufffd\ufffd"`, // a UTF-16 surrogate in UTF-8
		"\x00\x1f\x08\x0c":  `"\u0000\u001f\b\f"`,
		"\u2028\u2029":      "\"\u2028\u2029\"",
		"<a href='x'>&</a>": `"<a href='x'>&</a>"`,
	}
	for s, want := range cases {
		w := Writer{}
		w.String(s)
		got, err := RawMsgpack{b: string(w.B)}.MarshalJSON()
		if err != nil || string(got) != want {
			t.Errorf("%q: %s, %v; want %s", s, got, err, want)
		}
		checkTranscode(t, string(w.B), !strings.ContainsAny(s, "\u2028\u2029"))
	}
}

// json.Marshal escapes <, > and & in a RawMsgpack's output, as it does in a
// string: a packet holding raw arguments encodes like one holding values.
func TestRawMsgpackHTMLEscaping(t *testing.T) {
	w := Writer{}
	if err := w.Value([]any{"<b>&</b>", "\u2028"}); err != nil {
		t.Fatal(err)
	}
	raw := RawMsgpack{b: string(w.B)}
	got, err := json.Marshal([]any{"ev", raw})
	if err != nil {
		t.Fatal(err)
	}
	val, _ := raw.Value()
	want, _ := json.Marshal([]any{"ev", val})
	if !bytes.Equal(got, want) || !bytes.Contains(got, []byte(`\u003cb\u003e\u0026`)) {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

func TestRawJSON(t *testing.T) {
	r := RawJSON{b: []byte(`{"b":[1,2.5,"<x>"],"a":null}`)}
	got, err := json.Marshal([]any{"ev", r})
	if err != nil || string(got) != `["ev",{"b":[1,2.5,"\u003cx\u003e"],"a":null}]` {
		t.Fatalf("marshal: %s, %v", got, err)
	}
	v, err := r.Value()
	if err != nil || !reflect.DeepEqual(v, map[string]any{"b": []any{int64(1), 2.5, "<x>"}, "a": nil}) {
		t.Fatalf("value %#v, %v", v, err)
	}
	// Written to MessagePack as its value.
	w := Writer{SortKeys: true}
	if err := w.Value(r); err != nil {
		t.Fatal(err)
	}
	if got, _ := (RawMsgpack{b: string(w.B)}).MarshalJSON(); string(got) != `{"a":null,"b":[1,2.5,"<x>"]}` {
		t.Fatalf("as MessagePack: %s", got)
	}
}

// Random values written by Writer transcode to encoding/json's output for
// their decoded form, and decode back to what was written.
func TestRawMsgpackRandomValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for i := 0; i < 3000; i++ {
		v := randomValue(rng, 0)
		w := Writer{}
		if err := w.Value(v); err != nil {
			t.Fatal(err)
		}
		b := string(w.B)
		checkTranscode(t, b, false)
		got, err := RawMsgpack{b: b}.Value()
		if err != nil {
			t.Fatalf("%x: %v", b, err)
		}
		if want := decodedForm(v); !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip of %#v:\n got %#v\nwant %#v", v, got, want)
		}
		// And the decoded form writes the same bytes back (maps sorted).
		w1, w2 := Writer{SortKeys: true}, Writer{SortKeys: true}
		if w1.Value(v) != nil || w2.Value(got) != nil || !bytes.Equal(w1.B, w2.B) {
			t.Fatalf("%#v re-encodes as %x, want %x", got, w2.B, w1.B)
		}
	}
}

// randomValue returns a random value of the kinds Normalize returns.
func randomValue(rng *rand.Rand, depth int) any {
	n := 14
	if depth > 4 {
		n = 10
	}
	switch rng.IntN(n) {
	case 0:
		return nil
	case 1:
		return rng.IntN(2) == 0
	case 2:
		return rng.Int64() >> rng.IntN(64)
	case 3:
		return -(rng.Int64() >> rng.IntN(64))
	case 4:
		return rng.Uint64() >> rng.IntN(64)
	case 5:
		return math.Float64frombits(rng.Uint64()>>2 | 0x3000000000000000) // finite
	case 6:
		return []float64{0.5, -1e21, 1e-7, 3, -0.25, 1e300}[rng.IntN(6)]
	case 7:
		return randomString(rng)
	case 8:
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	case 9:
		return time.Unix(rng.Int64N(1<<36)-1<<35, rng.Int64N(1e9)).UTC()
	case 10, 11:
		a := make([]any, rng.IntN(6))
		for i := range a {
			a[i] = randomValue(rng, depth+1)
		}
		return a
	default:
		m := map[string]any{}
		for range rng.IntN(6) {
			m[randomString(rng)] = randomValue(rng, depth+1)
		}
		return m
	}
}

func randomString(rng *rand.Rand) string {
	const alphabet = "ab\"\\\n\x01<>&é😀\u2028 "
	rs := []rune(alphabet)
	var sb strings.Builder
	for range rng.IntN(40) {
		sb.WriteRune(rs[rng.IntN(len(rs))])
	}
	if rng.IntN(20) == 0 {
		sb.WriteString(strings.Repeat("x", 300))
	}
	return sb.String()
}

// decodedForm is v as the decoder returns it.
func decodedForm(v any) any {
	switch t := v.(type) {
	case int64:
		if t >= 0 {
			return uint64(t)
		}
	case float64:
		if t == math.Trunc(t) && t >= math.MinInt64 && t < 1<<64 {
			if t < 0 {
				return int64(t)
			}
			return uint64(t)
		}
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = decodedForm(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = decodedForm(e)
		}
		return out
	}
	return v
}

// An argument kept as RawJSON is forwarded to clients as it is, so the
// decoder accepts only what encoding/json accepts as JSON.
func TestRawJSONArgumentsAreValid(t *testing.T) {
	frame := func(arg string) string {
		return `{"type":3,"data":{"packet":{"type":2,"data":["ev",` + arg + `]},"opts":{}},"uid":"u","nsp":"/"}`
	}
	good := []string{`0`, `-0`, `1.5`, `-1.5e-3`, `1E+2`, `1e40`, `"\u00e9\ud83d\ude00\/\b\f\n\r\t\"\\"`, `{"a":[1,{"b":null}]}`, `[]`, `{}`, "\"\u2028\"", `true`}
	for _, arg := range good {
		m, err := DecodeCluster(frame(arg))
		if err != nil {
			t.Errorf("%s: %v", arg, err)
			continue
		}
		r := m.Packet.Data.([]any)[1].(RawJSON)
		b, err := json.Marshal(r)
		if err != nil || !json.Valid(r.b) {
			t.Errorf("%s: forwarded as %s, %v", arg, b, err)
		}
	}
	bad := []string{`01`, `1.`, `.5`, `+1`, `-`, `1e`, `1e+`, `--1`, `0x10`, `1_000`, `NaN`, `Infinity`, `1e400`,
		`"\x"`, `"\u12"`, `"\u12g4"`, `"\'"`, "\"a\x01\"", `"abc`, `tru`, `nul`, `[1,]`, `{"a":1,}`, `{"a"}`, `{1:2}`}
	for _, arg := range bad {
		if m, err := DecodeCluster(frame(arg)); err == nil {
			t.Errorf("%s accepted: %+v", arg, m.Packet.Data)
		}
	}
}

// Invalid UTF-8 in a JSON argument reaches clients as U+FFFD, as it does
// through encoding/json.
func TestRawJSONInvalidUTF8(t *testing.T) {
	m, err := DecodeCluster("{\"type\":3,\"data\":{\"packet\":{\"type\":2,\"data\":[\"ev\",{\"a\xff\":\"b\xe2\x82c\"}]},\"opts\":{}},\"uid\":\"u\",\"nsp\":\"/\"}")
	if err != nil {
		t.Fatal(err)
	}
	r := m.Packet.Data.([]any)[1].(RawJSON)
	if want := "{\"a\uFFFD\":\"b\uFFFD\uFFFDc\"}"; string(r.b) != want {
		t.Fatalf("got %q, want %q", r.b, want)
	}
}
