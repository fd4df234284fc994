package emitter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/zishang520/engine.io/v2/types"
)

// This file owns the emitter's wire format, the one of @socket.io/redis-emitter
// 5.1.0 (lib/index.ts):
//
//   - a broadcast is the MessagePack array
//     ["emitter", {type: 2, data: [ev, ...args], nsp}, {rooms, flags, except}],
//     with the keys in that order (the opts key order differs from the
//     adapter's rooms, except, flags), encoded as notepack.io does;
//   - socketsJoin, socketsLeave and disconnectSockets are the JSON objects
//     {"type":2|3|4,"opts":{"rooms":[...],"except":[...]},"rooms":[...]|"close":bool},
//     without uid, so that every server applies them;
//   - serverSideEmit is the JSON object {"uid":"emitter","type":6,"data":[...]}.

// requestOpts is the opts object of a join, leave or disconnect request.
// Empty lists are [] on the wire, never null.
type requestOpts struct {
	Rooms  []string `json:"rooms"`
	Except []string `json:"except"`
}

// roomsRequest is a REMOTE_JOIN (2) or REMOTE_LEAVE (3) request.
type roomsRequest struct {
	Type  int         `json:"type"`
	Opts  requestOpts `json:"opts"`
	Rooms []string    `json:"rooms"`
}

// disconnectRequest is a REMOTE_DISCONNECT (4) request.
type disconnectRequest struct {
	Type  int         `json:"type"`
	Opts  requestOpts `json:"opts"`
	Close bool        `json:"close"`
}

// sseRequest is a SERVER_SIDE_EMIT (6) request without acknowledgement.
type sseRequest struct {
	UID  string `json:"uid"`
	Type int    `json:"type"`
	Data []any  `json:"data"`
}

// encodeJSON encodes v as JavaScript's JSON.stringify would: no HTML escaping
// and no trailing newline.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("emitter: encode request: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// newEncoder returns a MessagePack encoder writing to w with notepack.io's
// choices: the smallest integer encoding, integral floats as integers, and
// (for determinism, since Go maps have no insertion order) sorted map keys.
func newEncoder(w io.Writer) *msgpack.Encoder {
	enc := msgpack.NewEncoder(w)
	enc.UseCompactInts(true)
	enc.UseCompactFloats(true)
	enc.SetSortMapKeys(true)
	return enc
}

// encodeBroadcast encodes the broadcast frame of the event ev with args.
func encodeBroadcast(nsp, ev string, args []any, rooms, except []string, flags []flag) ([]byte, error) {
	data, err := normalizeArgs(args)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := newEncoder(&buf)
	// Writes to a bytes.Buffer cannot fail; only Encode of user data can.
	_ = enc.EncodeArrayLen(3)
	_ = enc.EncodeString(uid)

	_ = enc.EncodeMapLen(3)
	_ = enc.EncodeString("type")
	_ = enc.EncodeInt(packetEvent)
	_ = enc.EncodeString("data")
	_ = enc.EncodeArrayLen(1 + len(data))
	_ = enc.EncodeString(ev)
	for i, v := range data {
		if err := enc.Encode(v); err != nil {
			return nil, fmt.Errorf("emitter: encode argument %d of %q: %w", i+1, ev, err)
		}
	}
	_ = enc.EncodeString("nsp")
	_ = enc.EncodeString(nsp)

	_ = enc.EncodeMapLen(3)
	_ = enc.EncodeString("rooms")
	encodeStrings(enc, rooms)
	_ = enc.EncodeString("flags")
	_ = enc.EncodeMapLen(len(flags))
	for _, f := range flags {
		_ = enc.EncodeString(f.name)
		_ = enc.EncodeBool(f.value)
	}
	_ = enc.EncodeString("except")
	encodeStrings(enc, except)
	return buf.Bytes(), nil
}

// encodeStrings writes s as an array; a nil s is [] (0x90), as in Node.
func encodeStrings(enc *msgpack.Encoder, s []string) {
	_ = enc.EncodeArrayLen(len(s))
	for _, r := range s {
		_ = enc.EncodeString(r)
	}
}

// normalizeArgs returns the arguments of an event in the shapes the encoders
// handle the way Node does (see normalize). args itself is not modified.
func normalizeArgs(args []any) ([]any, error) {
	out := make([]any, len(args))
	for i, a := range args {
		v, err := normalize(a)
		if err != nil {
			return nil, fmt.Errorf("emitter: argument %d: %w", i, err)
		}
		out[i] = v
	}
	return out, nil
}

// normalize converts v into a value that both MessagePack and JSON encode as
// a Socket.IO server would send it to its clients:
//
//   - nil, strings, booleans, built-in integer types, float64, []byte and
//     time.Time are kept; float32 becomes float64 (notepack.io only writes
//     float64); a nil pointer becomes nil;
//   - []any and map[string]any are converted element by element;
//   - text readers (*strings.Reader, *types.StringBuffer) become strings and
//     other readers []byte (see readBinary);
//   - values with their own MessagePack encoding (msgpack.CustomEncoder,
//     msgpack.Marshaler) are kept;
//   - anything else (structs, named types, typed slices and maps, pointers,
//     json.Marshaler implementations) goes through encoding/json and back, so
//     json tags and MarshalJSON apply, as in the server's own JSON encoding.
func normalize(v any) (any, error) {
	switch t := v.(type) {
	case nil, string, bool, []byte, time.Time, float64,
		int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return v, nil
	case float32:
		return float64(t), nil
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return nil, nil // a nil pointer is null, whatever its type
	}
	switch t := v.(type) {
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			n, err := normalize(e)
			if err != nil {
				return nil, err
			}
			out[i] = n
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			n, err := normalize(e)
			if err != nil {
				return nil, err
			}
			out[k] = n
		}
		return out, nil
	case *types.StringBuffer:
		return t.String(), nil
	case *strings.Reader:
		b, err := readBinary(t)
		return string(b), err
	case io.Reader:
		return readBinary(t)
	case msgpack.CustomEncoder, msgpack.Marshaler:
		return v, nil
	}
	return viaJSON(v)
}

// readBinary returns the unread content of r. Buffers and in-memory readers
// (*bytes.Buffer, engine.io's *types.BytesBuffer, *bytes.Reader,
// *strings.Reader) are not consumed, so the same value can be sent again;
// other readers are read to EOF and left open.
func readBinary(r io.Reader) ([]byte, error) {
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

// viaJSON converts v through encoding/json into []any, map[string]any,
// string, bool, nil, int64 (integers that fit) and float64.
func viaJSON(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
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
