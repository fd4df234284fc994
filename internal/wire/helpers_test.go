package wire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// mustHex decodes a hex string captured from Node.
func mustHex(tb testing.TB, s string) string {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatalf("bad hex %q: %v", s, err)
	}
	return string(b)
}

// ptr returns a pointer to v.
func ptr[T any](v T) *T { return &v }

// raw builds a RawMsgpack from hex, as a decoder would return it.
func raw(tb testing.TB, h string) RawMsgpack {
	tb.Helper()
	return RawMsgpack{b: mustHex(tb, h)}
}

// plain replaces the raw arguments in v (RawMsgpack, RawJSON), at any depth,
// with their decoded values, so that decoded data can be compared with
// reflect.DeepEqual.
func plain(tb testing.TB, v any) any {
	tb.Helper()
	switch t := v.(type) {
	case RawMsgpack:
		x, err := t.Value()
		if err != nil {
			tb.Fatalf("RawMsgpack %x: %v", t.b, err)
		}
		return x
	case RawJSON:
		x, err := t.Value()
		if err != nil {
			tb.Fatalf("RawJSON %s: %v", t.b, err)
		}
		return x
	case []any:
		if t == nil {
			return t
		}
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = plain(tb, e)
		}
		return out
	case map[string]any:
		if t == nil {
			return t
		}
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = plain(tb, e)
		}
		return out
	}
	return v
}

// semJSON is v through encoding/json and back: a form in which values that
// mean the same JSON compare equal whatever their Go types and key orders.
func semJSON(tb testing.TB, v any) any {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("json.Marshal(%#v): %v", v, err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		tb.Fatalf("json.Unmarshal(%s): %v", b, err)
	}
	return out
}

// sameJSON fails unless got and want mean the same JSON.
func sameJSON(tb testing.TB, what string, got, want any) {
	tb.Helper()
	if g, w := semJSON(tb, got), semJSON(tb, want); !reflect.DeepEqual(g, w) {
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		tb.Errorf("%s:\n got %s\nwant %s", what, gb, wb)
	}
}

// msgpackOracle decodes MessagePack with an independent implementation
// (vmihailenco/msgpack), for comparisons where map key order does not
// matter: maps become map[string]any, integers int64 or uint64, timestamps
// UTC time.Time.
func msgpackOracle(tb testing.TB, b []byte) any {
	tb.Helper()
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	dec.UseLooseInterfaceDecoding(true)
	dec.SetMapDecoder(func(d *msgpack.Decoder) (any, error) { return d.DecodeUntypedMap() })
	v, err := dec.DecodeInterface()
	if err != nil {
		tb.Fatalf("oracle cannot decode %x: %v", b, err)
	}
	return utcTimes(stringKeys(v))
}

func stringKeys(v any) any {
	switch t := v.(type) {
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[fmt.Sprint(k)] = stringKeys(e)
		}
		return out
	case []any:
		for i, e := range t {
			t[i] = stringKeys(e)
		}
	}
	return v
}

func utcTimes(v any) any {
	switch t := v.(type) {
	case time.Time:
		return t.UTC()
	case map[string]any:
		for k, e := range t {
			t[k] = utcTimes(e)
		}
	case []any:
		for i, e := range t {
			t[i] = utcTimes(e)
		}
	}
	return v
}

// sameMsgpack fails unless got and want are the same MessagePack value up to
// the order of map keys: same length, and equal once decoded by the oracle.
func sameMsgpack(tb testing.TB, what string, got, want []byte) {
	tb.Helper()
	if bytes.Equal(got, want) {
		return
	}
	if len(got) != len(want) {
		tb.Errorf("%s: %d bytes, want %d:\n got %x\nwant %x", what, len(got), len(want), got, want)
		return
	}
	if g, w := msgpackOracle(tb, got), msgpackOracle(tb, want); !reflect.DeepEqual(g, w) {
		tb.Errorf("%s:\n got %x\nwant %x\n got %#v\nwant %#v", what, got, want, g, w)
	}
}
