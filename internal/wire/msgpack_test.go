package wire

import (
	"encoding/hex"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Every form Writer chooses, at the boundaries where it changes.
func TestWriterForms(t *testing.T) {
	w := func(f func(w *Writer)) string {
		var w Writer
		f(&w)
		return hex.EncodeToString(w.B)
	}
	head := func(s string, n int) string { return s[:2*n] }
	cases := []struct{ got, want string }{
		{w(func(w *Writer) { w.Int(0) }), "00"},
		{w(func(w *Writer) { w.Int(127) }), "7f"},
		{w(func(w *Writer) { w.Int(128) }), "cc80"},
		{w(func(w *Writer) { w.Int(255) }), "ccff"},
		{w(func(w *Writer) { w.Int(256) }), "cd0100"},
		{w(func(w *Writer) { w.Int(65535) }), "cdffff"},
		{w(func(w *Writer) { w.Int(65536) }), "ce00010000"},
		{w(func(w *Writer) { w.Int(math.MaxUint32) }), "ceffffffff"},
		{w(func(w *Writer) { w.Int(math.MaxUint32 + 1) }), "cf0000000100000000"},
		{w(func(w *Writer) { w.Uint(math.MaxUint64) }), "cfffffffffffffffff"},
		{w(func(w *Writer) { w.Int(-1) }), "ff"},
		{w(func(w *Writer) { w.Int(-32) }), "e0"},
		{w(func(w *Writer) { w.Int(-33) }), "d0df"},
		{w(func(w *Writer) { w.Int(-128) }), "d080"},
		{w(func(w *Writer) { w.Int(-129) }), "d1ff7f"},
		{w(func(w *Writer) { w.Int(-32768) }), "d18000"},
		{w(func(w *Writer) { w.Int(-32769) }), "d2ffff7fff"},
		{w(func(w *Writer) { w.Int(math.MinInt32) }), "d280000000"},
		{w(func(w *Writer) { w.Int(math.MinInt32 - 1) }), "d3ffffffff7fffffff"},
		{w(func(w *Writer) { w.Int(math.MinInt64) }), "d38000000000000000"},
		{w(func(w *Writer) { w.Float(1) }), "01"},
		{w(func(w *Writer) { w.Float(math.Copysign(0, -1)) }), "00"},
		{w(func(w *Writer) { w.Float(-200) }), "d1ff38"},
		{w(func(w *Writer) { w.Float(1.5) }), "cb3ff8000000000000"},
		{w(func(w *Writer) { w.Float(1 << 63) }), "cf8000000000000000"},
		{w(func(w *Writer) { w.Float(1 << 64) }), "cb43f0000000000000"},
		{w(func(w *Writer) { w.Float(-(1 << 63)) }), "d38000000000000000"},
		{w(func(w *Writer) { w.Float(math.Inf(1)) }), "cb7ff0000000000000"},
		{w(func(w *Writer) { w.Float(math.NaN()) }), "cb7ff8000000000000"},
		{w(func(w *Writer) { w.Nil(); w.Bool(true); w.Bool(false) }), "c0c3c2"},
		{w(func(w *Writer) { w.String("") }), "a0"},
		{head(w(func(w *Writer) { w.String(strings.Repeat("x", 31)) }), 1), "bf"},
		{head(w(func(w *Writer) { w.String(strings.Repeat("x", 32)) }), 2), "d920"},
		{head(w(func(w *Writer) { w.String(strings.Repeat("x", 255)) }), 2), "d9ff"},
		{head(w(func(w *Writer) { w.String(strings.Repeat("x", 256)) }), 3), "da0100"},
		{head(w(func(w *Writer) { w.String(strings.Repeat("x", 65535)) }), 3), "daffff"},
		{head(w(func(w *Writer) { w.String(strings.Repeat("x", 65536)) }), 5), "db00010000"},
		{w(func(w *Writer) { w.Binary(nil) }), "c400"},
		{head(w(func(w *Writer) { w.Binary(make([]byte, 255)) }), 2), "c4ff"},
		{head(w(func(w *Writer) { w.Binary(make([]byte, 256)) }), 3), "c50100"},
		{head(w(func(w *Writer) { w.Binary(make([]byte, 65536)) }), 5), "c600010000"},
		{w(func(w *Writer) { w.ArrayLen(15) }), "9f"},
		{w(func(w *Writer) { w.ArrayLen(16) }), "dc0010"},
		{w(func(w *Writer) { w.ArrayLen(65535) }), "dcffff"},
		{w(func(w *Writer) { w.ArrayLen(65536) }), "dd00010000"},
		{w(func(w *Writer) { w.MapLen(15) }), "8f"},
		{w(func(w *Writer) { w.MapLen(16) }), "de0010"},
		{w(func(w *Writer) { w.MapLen(65536) }), "df00010000"},
		{w(func(w *Writer) { w.Strings(nil) }), "90"},
		{w(func(w *Writer) { w.Strings([]string{"a"}) }), "91a161"},
		// Timestamps: 32 bits for whole seconds up to 2^32-1, 64 bits up
		// to 2^34-1 seconds, 96 bits otherwise (and before 1970).
		{w(func(w *Writer) { w.Time(time.Unix(0, 0)) }), "d6ff00000000"},
		{w(func(w *Writer) { w.Time(time.Unix(math.MaxUint32, 0)) }), "d6ffffffffff"},
		{w(func(w *Writer) { w.Time(time.Unix(math.MaxUint32+1, 0)) }), "d7ff0000000100000000"},
		{w(func(w *Writer) { w.Time(time.Unix(0, 1)) }), "d7ff0000000400000000"},
		{w(func(w *Writer) { w.Time(time.Unix(1<<34-1, 999999999)) }), "d7ffee6b27ffffffffff"},
		{w(func(w *Writer) { w.Time(time.Unix(1<<34, 0)) }), "c70cff000000000000000400000000"},
		{w(func(w *Writer) { w.Time(time.Unix(-1, 0)) }), "c70cff00000000ffffffffffffffff"},
	}
	for i, c := range cases {
		if c.got != c.want {
			t.Errorf("case %d: %s, want %s", i, c.got, c.want)
		}
	}
}

// Values written by Writer decode to what was written, in the kinds the
// decoder returns.
func TestWriterValueRoundTrip(t *testing.T) {
	local := time.FixedZone("X", 3600)
	cases := []struct{ in, out any }{
		{nil, nil}, {true, true}, {"é", "é"},
		{int8(-5), int64(-5)}, {int16(300), uint64(300)}, {int32(-70000), int64(-70000)}, {int64(1 << 40), uint64(1 << 40)},
		{uint8(200), uint64(200)}, {uint16(1), uint64(1)}, {uint32(1 << 31), uint64(1 << 31)}, {uint(7), uint64(7)}, {int(-7), int64(-7)},
		{float32(1.5), 1.5}, {2.25, 2.25}, {3.0, uint64(3)},
		{[]byte{}, []byte{}}, {[]byte{0, 255}, []byte{0, 255}},
		{time.Date(2000, 6, 13, 1, 0, 0, 5, local), time.Date(2000, 6, 13, 0, 0, 0, 5, time.UTC)},
		{[]any{}, []any{}}, {[]any{1, "a", nil}, []any{uint64(1), "a", nil}},
		{map[string]any{}, map[string]any{}}, {map[string]any{"k": []any{map[string]any{"x": -1}}}, map[string]any{"k": []any{map[string]any{"x": int64(-1)}}}},
		{RawMsgpack{b: "\x92\x01\xa1a"}, []any{uint64(1), "a"}},
		{RawJSON{b: []byte(`{"a":[1,2.5,"x",null,true]}`)}, map[string]any{"a": []any{uint64(1), 2.5, "x", nil, true}}},
	}
	for _, c := range cases {
		w := Writer{}
		if err := w.Value(c.in); err != nil {
			t.Fatalf("%#v: %v", c.in, err)
		}
		r := newReader(string(w.B))
		got, err := r.any(0)
		if err != nil || r.done() != nil {
			t.Fatalf("%#v (%x): %v", c.in, w.B, err)
		}
		if !reflect.DeepEqual(got, c.out) {
			t.Errorf("%#v: %#v, want %#v", c.in, got, c.out)
		}
	}
}

func TestWriterRefusesUnnormalizedValues(t *testing.T) {
	type user struct{ Name string }
	for _, v := range []any{user{"a"}, &user{"a"}, []string{"a"}, map[string]int{"a": 1}, func() {}, make(chan int),
		[]any{1, struct{}{}}, map[string]any{"k": []int{1}}, RawJSON{b: []byte("{")}} {
		w := Writer{}
		if err := w.Value(v); err == nil {
			t.Errorf("%T encoded as %x", v, w.B)
		}
	}
}

// SortKeys makes map output deterministic; without it, every key is still
// written once.
func TestWriterSortKeys(t *testing.T) {
	m := map[string]any{"b": 1, "a": 2, "c": map[string]any{"z": 1, "y": 2}}
	w := Writer{SortKeys: true}
	if err := w.Value(m); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(w.B); got != "83a16102a16201a16382a17902a17a01" {
		t.Fatalf("sorted: %s", got)
	}
	u := Writer{}
	if err := u.Value(m); err != nil {
		t.Fatal(err)
	}
	sameMsgpack(t, "unsorted", u.B, w.B)
}
