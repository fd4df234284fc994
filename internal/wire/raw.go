package wire

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// RawMsgpack is one event argument received from another server and kept in
// its MessagePack form: a server forwards such arguments to its clients as
// JSON without building Go maps and slices for them, which keeps a frame's
// cost near its size. It encodes to JSON as the decoded value would (map keys
// in the sender's order) and is written back unchanged to MessagePack.
// Arguments that hold binary are always decoded instead, so that the server
// sends the binary as attachments. A map with a key given twice is written
// with both entries (JSON readers keep the last, as Value does); so are two
// keys that differ only in invalid UTF-8 bytes, which both become U+FFFD in
// JSON (a reader keeps the later one; encoding/json would sort them).
type RawMsgpack struct {
	b   string
	bin bool
}

// MarshalJSON implements json.Marshaler.
func (v RawMsgpack) MarshalJSON() ([]byte, error) {
	r := &reader{s: v.b, budget: math.MaxInt}
	out, err := r.appendJSON(make([]byte, 0, len(v.b)+len(v.b)/4+8), 0)
	if err != nil {
		return nil, err
	}
	return out, r.done()
}

// Value decodes the argument into Go values (see Normalize for the kinds).
func (v RawMsgpack) Value() (any, error) {
	r := newReader(v.b)
	x, err := r.any(0)
	if err != nil {
		return nil, err
	}
	return x, r.done()
}

// appendJSON transcodes one MessagePack value to JSON as encoding/json writes
// the decoded value (without HTML escaping, which json.Marshal adds around a
// Marshaler's output).
func (r *reader) appendJSON(dst []byte, depth int) ([]byte, error) {
	if depth > MaxDepth {
		return nil, ErrTooDeep
	}
	kind, n, x, err := r.head()
	if err != nil {
		return nil, err
	}
	switch kind {
	case kNil:
		return append(dst, "null"...), nil
	case kBool:
		return strconv.AppendBool(dst, x == 1), nil
	case kInt:
		return strconv.AppendInt(dst, int64(x), 10), nil
	case kUint:
		return strconv.AppendUint(dst, x, 10), nil
	case kFloat:
		return appendJSONFloat(dst, math.Float64frombits(x))
	case kStr:
		s, err := r.bytesN(n)
		if err != nil {
			return nil, err
		}
		return appendJSONString(dst, s), nil
	case kBin:
		// Only requests written as JSON hold binary here: encoding/json
		// writes a []byte as a base64 string.
		b, err := r.bytesN(n)
		if err != nil {
			return nil, err
		}
		return appendBase64(dst, StringBytes(b)), nil
	case kExt:
		t, err := r.ext(n)
		if err != nil {
			return nil, err
		}
		tm := t.(time.Time)
		if y := tm.Year(); y < 0 || y > 9999 {
			// As time.Time.MarshalJSON refuses it.
			return nil, &json.UnsupportedValueError{Str: tm.String()}
		}
		if r.jsDates {
			// Date.toJSON: UTC, milliseconds always written.
			return append(tm.UTC().AppendFormat(append(dst, '"'), "2006-01-02T15:04:05.000Z"), '"'), nil
		}
		return append(tm.AppendFormat(append(dst, '"'), time.RFC3339Nano), '"'), nil
	case kArray:
		if n > uint64(r.left()) {
			return nil, ErrLength
		}
		dst = append(dst, '[')
		for i := uint64(0); i < n; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = r.appendJSON(dst, depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, ']'), nil
	case kMap:
		if n > uint64(r.left())/2 {
			return nil, ErrLength
		}
		dst = append(dst, '{')
		for i := uint64(0); i < n; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			k, err := r.key()
			if err != nil {
				return nil, err
			}
			dst = append(appendJSONString(dst, k), ':')
			if dst, err = r.appendJSON(dst, depth+1); err != nil {
				return nil, err
			}
		}
		return append(dst, '}'), nil
	}
	return nil, ErrShape
}

// appendJSONFloat formats f as encoding/json does.
func appendJSONFloat(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, &json.UnsupportedValueError{Str: strconv.FormatFloat(f, 'g', -1, 64)}
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// "1e-07" is written "1e-7", as encoding/json does.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst, nil
}

// appendJSONString quotes s as encoding/json does, except for HTML escaping
// and U+2028 and U+2029, which it leaves as JavaScript's JSON.stringify does;
// invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// RawJSON is one event argument received from another server as JSON and
// forwarded to clients unchanged (see RawMsgpack).
type RawJSON struct{ b []byte }

// MarshalJSON implements json.Marshaler.
func (v RawJSON) MarshalJSON() ([]byte, error) { return v.b, nil }

// Value decodes the argument into Go values.
func (v RawJSON) Value() (any, error) { return v.materialize() }

func (v RawJSON) materialize() (any, error) {
	dec := json.NewDecoder(bytes.NewReader(v.b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return fromJSONNumbers(out), nil
}

// Materialize replaces the raw arguments of data (RawMsgpack, RawJSON) with
// decoded Go values, for code that must inspect them. Other values are kept.
func Materialize(data []any) ([]any, error) {
	var out []any
	for i, v := range data {
		var m any
		var err error
		switch t := v.(type) {
		case RawMsgpack:
			m, err = t.Value()
		case RawJSON:
			m, err = t.Value()
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = append([]any(nil), data...)
		}
		out[i] = m
	}
	if out == nil {
		return data, nil
	}
	return out, nil
}
