package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"time"
)

// Writer appends MessagePack to B the way notepack.io (the Node adapter's and
// emitter's codec) and @msgpack/msgpack (the streams adapter's) write it:
// integers in their smallest form (integral floats included, as JavaScript
// numbers are), other numbers as float64 (NaN as JavaScript's 7ff8000000000000),
// strings as fixstr/str8/16/32, byte slices as bin, time.Time as the timestamp
// extension (-1), maps with string keys, arrays. It accepts the values
// Normalize returns; anything else is an error.
//
// The two Node encoders differ only for integers beyond JavaScript's safe
// range (|n| > 2^53-1): there Writer writes uint64/int64 as notepack.io does
// (2^53+2 is cf0020000000000002; @msgpack/msgpack writes the float64
// cb4340000000000001), which both decoders read as the same number; from 2^64
// on, where notepack.io wraps around, it writes float64 as @msgpack/msgpack
// does.
type Writer struct {
	B []byte
	// SortKeys writes map keys in sorted order, for deterministic output
	// (Go maps have no insertion order to keep).
	SortKeys bool
}

// ArrayLen appends an array header.
func (w *Writer) ArrayLen(n int) {
	switch {
	case n < 16:
		w.B = append(w.B, 0x90|byte(n))
	case n <= math.MaxUint16:
		w.B = binary.BigEndian.AppendUint16(append(w.B, 0xdc), uint16(n))
	default:
		w.B = binary.BigEndian.AppendUint32(append(w.B, 0xdd), uint32(n))
	}
}

// MapLen appends a map header.
func (w *Writer) MapLen(n int) {
	switch {
	case n < 16:
		w.B = append(w.B, 0x80|byte(n))
	case n <= math.MaxUint16:
		w.B = binary.BigEndian.AppendUint16(append(w.B, 0xde), uint16(n))
	default:
		w.B = binary.BigEndian.AppendUint32(append(w.B, 0xdf), uint32(n))
	}
}

// String appends a string.
func (w *Writer) String(s string) {
	n := len(s)
	switch {
	case n < 32:
		w.B = append(w.B, 0xa0|byte(n))
	case n <= math.MaxUint8:
		w.B = append(w.B, 0xd9, byte(n))
	case n <= math.MaxUint16:
		w.B = binary.BigEndian.AppendUint16(append(w.B, 0xda), uint16(n))
	default:
		w.B = binary.BigEndian.AppendUint32(append(w.B, 0xdb), uint32(n))
	}
	w.B = append(w.B, s...)
}

// Strings appends an array of strings; nil is the empty array, as in Node.
func (w *Writer) Strings(s []string) {
	w.ArrayLen(len(s))
	for _, v := range s {
		w.String(v)
	}
}

// Binary appends a bin value.
func (w *Writer) Binary(b []byte) {
	n := len(b)
	switch {
	case n <= math.MaxUint8:
		w.B = append(w.B, 0xc4, byte(n))
	case n <= math.MaxUint16:
		w.B = binary.BigEndian.AppendUint16(append(w.B, 0xc5), uint16(n))
	default:
		w.B = binary.BigEndian.AppendUint32(append(w.B, 0xc6), uint32(n))
	}
	w.B = append(w.B, b...)
}

// Nil appends nil.
func (w *Writer) Nil() { w.B = append(w.B, 0xc0) }

// Bool appends a boolean.
func (w *Writer) Bool(v bool) {
	if v {
		w.B = append(w.B, 0xc3)
	} else {
		w.B = append(w.B, 0xc2)
	}
}

// Int appends a signed integer in its smallest encoding.
func (w *Writer) Int(n int64) {
	if n >= 0 {
		w.Uint(uint64(n))
		return
	}
	switch {
	case n >= -32:
		w.B = append(w.B, byte(n))
	case n >= math.MinInt8:
		w.B = append(w.B, 0xd0, byte(n))
	case n >= math.MinInt16:
		w.B = binary.BigEndian.AppendUint16(append(w.B, 0xd1), uint16(n))
	case n >= math.MinInt32:
		w.B = binary.BigEndian.AppendUint32(append(w.B, 0xd2), uint32(n))
	default:
		w.B = binary.BigEndian.AppendUint64(append(w.B, 0xd3), uint64(n))
	}
}

// Uint appends an unsigned integer in its smallest encoding.
func (w *Writer) Uint(n uint64) {
	switch {
	case n < 128:
		w.B = append(w.B, byte(n))
	case n <= math.MaxUint8:
		w.B = append(w.B, 0xcc, byte(n))
	case n <= math.MaxUint16:
		w.B = binary.BigEndian.AppendUint16(append(w.B, 0xcd), uint16(n))
	case n <= math.MaxUint32:
		w.B = binary.BigEndian.AppendUint32(append(w.B, 0xce), uint32(n))
	default:
		w.B = binary.BigEndian.AppendUint64(append(w.B, 0xcf), n)
	}
}

// Float appends a number: an integer when it is integral (a JavaScript number
// has no separate integer type), float64 otherwise.
func (w *Writer) Float(f float64) {
	if f == math.Trunc(f) {
		switch {
		case f >= 0 && f < 1<<64:
			w.Uint(uint64(f)) // -0 too, as in JavaScript (-0 >= 0)
			return
		case f < 0 && f >= math.MinInt64:
			w.Int(int64(f))
			return
		}
	}
	bits := math.Float64bits(f)
	if f != f {
		bits = 0x7ff8000000000000 // JavaScript's NaN (Go's math.NaN() differs)
	}
	w.B = binary.BigEndian.AppendUint64(append(w.B, 0xcb), bits)
}

// Time appends the timestamp extension, in its 32, 64 or 96-bit form.
func (w *Writer) Time(t time.Time) {
	sec, nsec := t.Unix(), uint32(t.Nanosecond())
	switch {
	case sec>>34 == 0 && nsec == 0 && sec <= math.MaxUint32:
		w.B = binary.BigEndian.AppendUint32(append(w.B, 0xd6, 0xff), uint32(sec))
	case sec>>34 == 0:
		w.B = binary.BigEndian.AppendUint64(append(w.B, 0xd7, 0xff), uint64(nsec)<<34|uint64(sec))
	default:
		w.B = append(w.B, 0xc7, 12, 0xff)
		w.B = binary.BigEndian.AppendUint32(w.B, nsec)
		w.B = binary.BigEndian.AppendUint64(w.B, uint64(sec))
	}
}

// Value appends v, which must hold only the kinds Normalize returns (or raw
// values received from another server).
func (w *Writer) Value(v any) error {
	switch t := v.(type) {
	case nil:
		w.Nil()
	case string:
		w.String(t)
	case bool:
		w.Bool(t)
	case int:
		w.Int(int64(t))
	case int8:
		w.Int(int64(t))
	case int16:
		w.Int(int64(t))
	case int32:
		w.Int(int64(t))
	case int64:
		w.Int(t)
	case uint:
		w.Uint(uint64(t))
	case uint8:
		w.Uint(uint64(t))
	case uint16:
		w.Uint(uint64(t))
	case uint32:
		w.Uint(uint64(t))
	case uint64:
		w.Uint(t)
	case float64:
		w.Float(t)
	case float32:
		w.Float(float64(t))
	case []byte:
		w.Binary(t)
	case time.Time:
		w.Time(t)
	case []any:
		w.ArrayLen(len(t))
		for _, e := range t {
			if err := w.Value(e); err != nil {
				return err
			}
		}
	case map[string]any:
		return w.stringMap(t)
	case RawMsgpack:
		w.B = append(w.B, t.b...)
	case RawJSON:
		m, err := t.materialize()
		if err != nil {
			return err
		}
		return w.Value(m)
	default:
		return fmt.Errorf("wire: cannot encode a %T (normalize it first)", v)
	}
	return nil
}

func (w *Writer) stringMap(m map[string]any) error {
	w.MapLen(len(m))
	if !w.SortKeys {
		for k, e := range m {
			w.String(k)
			if err := w.Value(e); err != nil {
				return err
			}
		}
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w.String(k)
		if err := w.Value(m[k]); err != nil {
			return err
		}
	}
	return nil
}
