package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	"github.com/zishang520/engine.io/v2/types"
)

// Normalize converts v into the shapes both Writer and encoding/json encode
// the way a Socket.IO server sends them to its clients, so that a value
// reaches remote clients as it reaches local ones:
//
//   - nil, strings, booleans, the built-in integer types, float64, []byte and
//     time.Time are kept; float32 becomes float64 (JavaScript has one number
//     type); a nil pointer becomes nil;
//   - []any and map[string]any are converted element by element, and copied
//     only when an element changes (the common case allocates nothing);
//   - text readers (*strings.Reader, *types.StringBuffer) become strings and
//     other readers []byte: in-memory buffers (*bytes.Buffer, *bytes.Reader,
//     *types.BytesBuffer) are read without being consumed, any other reader is
//     read to EOF (and not closed);
//   - values received from another server (RawMsgpack, RawJSON) are kept;
//   - anything else (structs, named types, typed slices and maps, pointers,
//     json.Marshaler implementations) goes through encoding/json and back, so
//     json tags and MarshalJSON apply as in the server's own JSON encoding;
//     integers that fit become int64, other numbers float64.
func Normalize(v any) (any, error) {
	n, _, err := normalize(v)
	return n, err
}

// NormalizeArgs normalizes each element of args into a new slice.
func NormalizeArgs(args []any) ([]any, error) {
	out := make([]any, len(args))
	for i, a := range args {
		v, _, err := normalize(a)
		if err != nil {
			return nil, fmt.Errorf("argument %d: %w", i, err)
		}
		out[i] = v
	}
	return out, nil
}

// normalize reports whether it changed v.
func normalize(v any) (any, bool, error) {
	switch t := v.(type) {
	case nil, string, bool, []byte, time.Time, float64, RawMsgpack, RawJSON,
		int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return v, false, nil
	case float32:
		return float64(t), true, nil
	case []any:
		var out []any
		for i, e := range t {
			n, changed, err := normalize(e)
			if err != nil {
				return nil, false, err
			}
			if changed && out == nil {
				out = make([]any, len(t))
				copy(out, t)
			}
			if out != nil {
				out[i] = n
			}
		}
		if out == nil {
			return t, false, nil
		}
		return out, true, nil
	case map[string]any:
		var out map[string]any
		for k, e := range t {
			n, changed, err := normalize(e)
			if err != nil {
				return nil, false, err
			}
			if changed && out == nil {
				out = make(map[string]any, len(t))
				for k2, e2 := range t {
					out[k2] = e2
				}
			}
			if out != nil {
				out[k] = n
			}
		}
		if out == nil {
			return t, false, nil
		}
		return out, true, nil
	case *types.StringBuffer:
		return t.String(), true, nil
	case *strings.Reader:
		b, err := readAll(t)
		return string(b), true, err
	case io.Reader:
		b, err := readAll(t)
		return b, true, err
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return nil, true, nil
	}
	out, err := viaJSON(v)
	return out, true, err
}

// readAll returns the unread content of r, without consuming in-memory
// buffers and readers.
func readAll(r io.Reader) ([]byte, error) {
	switch t := r.(type) {
	case interface{ Bytes() []byte }:
		return t.Bytes(), nil
	case interface {
		io.ReaderAt
		Len() int
		Size() int64
	}:
		b := make([]byte, t.Len())
		n, err := t.ReadAt(b, t.Size()-int64(len(b)))
		if err == io.EOF && n == len(b) {
			err = nil
		}
		return b[:n], err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %T: %w", r, err)
	}
	return b, nil
}

// viaJSON converts v through encoding/json.
func viaJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return fromJSONNumbers(out), nil
}

// fromJSONNumbers replaces the json.Number values of v with int64 when they
// are integers that fit, and float64 otherwise.
func fromJSONNumbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case []any:
		for i, e := range t {
			t[i] = fromJSONNumbers(e)
		}
	case map[string]any:
		for k, e := range t {
			t[k] = fromJSONNumbers(e)
		}
	}
	return v
}

// HasBinary reports whether v holds a byte slice, as Node's hasBinary does
// for Buffers.
func HasBinary(v any) bool {
	switch t := v.(type) {
	case []byte:
		return true
	case []any:
		for _, e := range t {
			if HasBinary(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range t {
			if HasBinary(e) {
				return true
			}
		}
	case RawMsgpack:
		return t.bin
	}
	return false
}
