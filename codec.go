package redisadapter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// This file owns the wire format. Every frame shape here is the one the Node.js
// adapter (@socket.io/redis-adapter 8.x, classic mode) and emitter
// (@socket.io/redis-emitter 5.x) put on Redis, byte for byte: msgpack as
// notepack.io writes it (smallest integer encodings, float64 for non-integers,
// maps with keys in JavaScript insertion order, empty arrays rather than nil).
//
// Decoding treats every frame as hostile: anyone who can PUBLISH on the
// adapter's channels reaches this code. Decoders never panic, refuse lengths
// that exceed the bytes actually present (so a frame claiming a 4 GiB array
// allocates nothing), and limit nesting depth.

// maxDepth bounds the nesting of arrays and maps in a decoded payload. Deeper
// frames are rejected instead of recursing without limit.
const maxDepth = 64

// Errors returned by the decoders. They are wrapped with context; test with
// errors.Is.
var (
	errEmptyFrame   = errors.New("redisadapter: empty frame")
	errFrameShape   = errors.New("redisadapter: unexpected frame shape")
	errFrameTooDeep = errors.New("redisadapter: frame nested too deeply")
	errFrameLength  = errors.New("redisadapter: frame claims more elements than it holds")
	errTrailing     = errors.New("redisadapter: trailing bytes after frame")
)

// wireType translates the server's ASCII packet type ('0'..'6') into the number
// Node puts on the wire (0..6).
func wireType(t parser.PacketType) int64 { return int64(t) - '0' }

// packetType translates a wire packet type (0..6) into the server's ASCII type.
func packetType(n int64) (parser.PacketType, bool) {
	if n < 0 || n > 6 {
		return 0, false
	}
	return parser.PacketType(n + '0'), true
}

// broadcastFrame is the decoded form of the classic broadcast message
// [uid, packet, opts].
type broadcastFrame struct {
	UID    string
	Packet parser.Packet
	Rooms  []socket.Room
	Except []socket.Room
	Flags  wireFlags
}

// wireFlags holds the broadcast flags that travel between servers. Node only
// writes the flags a user set; so do we.
type wireFlags struct {
	Volatile bool
	Compress bool
	// Timeout is set when the broadcast expects acknowledgements; on the wire
	// it is an integer number of milliseconds.
	Timeout *time.Duration
}

func flagsFromOptions(f *socket.BroadcastFlags) wireFlags {
	if f == nil {
		return wireFlags{}
	}
	return wireFlags{Volatile: f.Volatile, Compress: f.Compress, Timeout: f.Timeout}
}

// encoder is a pooled msgpack encoder with the notepack-compatible settings.
type encoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

var encoderPool = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = msgpack.NewEncoder(&e.buf)
	e.enc.UseCompactInts(true)
	e.enc.UseCompactFloats(true)
	return e
}}

func getEncoder() *encoder {
	e := encoderPool.Get().(*encoder)
	e.buf.Reset()
	return e
}

// putEncoder returns e to the pool. Buffers that grew past 64 KiB are dropped so
// one large message does not pin memory forever.
func putEncoder(e *encoder) {
	if e.buf.Cap() > 64<<10 {
		return
	}
	encoderPool.Put(e)
}

// appendBroadcast encodes [uid, packet, opts] into e. The packet's data must
// already be normalized (see normalizeData).
func (e *encoder) appendBroadcast(uid string, pkt *parser.Packet, rooms, except []socket.Room, flags wireFlags) error {
	enc := e.enc
	if err := enc.EncodeArrayLen(3); err != nil {
		return err
	}
	_ = enc.EncodeString(uid)
	if err := e.appendPacket(pkt, true); err != nil {
		return err
	}
	_ = enc.EncodeMapLen(3)
	_ = enc.EncodeString("rooms")
	e.appendRooms(rooms)
	_ = enc.EncodeString("except")
	e.appendRooms(except)
	_ = enc.EncodeString("flags")
	e.appendFlags(flags)
	return nil
}

// appendPacket writes {type, data, nsp[, id]} in Node's key order.
func (e *encoder) appendPacket(pkt *parser.Packet, withNsp bool) error {
	enc := e.enc
	n := 2
	if withNsp {
		n++
	}
	if pkt.Id != nil {
		n++
	}
	_ = enc.EncodeMapLen(n)
	_ = enc.EncodeString("type")
	_ = enc.EncodeInt(wireType(pkt.Type))
	_ = enc.EncodeString("data")
	if err := enc.Encode(pkt.Data); err != nil {
		return fmt.Errorf("redisadapter: encode packet data: %w", err)
	}
	if withNsp {
		_ = enc.EncodeString("nsp")
		_ = enc.EncodeString(pkt.Nsp)
	}
	if pkt.Id != nil {
		_ = enc.EncodeString("id")
		_ = enc.EncodeUint(*pkt.Id)
	}
	return nil
}

func (e *encoder) appendRooms(rooms []socket.Room) {
	_ = e.enc.EncodeArrayLen(len(rooms))
	for _, r := range rooms {
		_ = e.enc.EncodeString(string(r))
	}
}

func (e *encoder) appendFlags(f wireFlags) {
	n := 0
	if f.Volatile {
		n++
	}
	if f.Compress {
		n++
	}
	if f.Timeout != nil {
		n++
	}
	enc := e.enc
	_ = enc.EncodeMapLen(n)
	if f.Volatile {
		_ = enc.EncodeString("volatile")
		_ = enc.EncodeBool(true)
	}
	if f.Compress {
		_ = enc.EncodeString("compress")
		_ = enc.EncodeBool(true)
	}
	if f.Timeout != nil {
		_ = enc.EncodeString("timeout")
		_ = enc.EncodeInt(f.Timeout.Milliseconds())
	}
}

// frameDecoder decodes one frame from a byte slice. It checks every claimed
// length against the bytes that remain, so hostile length prefixes cannot make
// it allocate.
type frameDecoder struct {
	buf []byte
	r   bytes.Reader
	d   *msgpack.Decoder
}

var decoderPool = sync.Pool{New: func() any {
	fd := &frameDecoder{}
	fd.d = msgpack.NewDecoder(&fd.r)
	return fd
}}

func getDecoder(b []byte) *frameDecoder {
	fd := decoderPool.Get().(*frameDecoder)
	fd.buf = b
	fd.r.Reset(b)
	fd.d.Reset(&fd.r)
	return fd
}

func putDecoder(fd *frameDecoder) {
	fd.buf = nil
	fd.r.Reset(nil)
	decoderPool.Put(fd)
}

// arrayLen decodes an array header and checks it against the remaining bytes.
func (fd *frameDecoder) arrayLen() (int, error) {
	n, err := fd.d.DecodeArrayLen()
	if err != nil {
		return 0, err
	}
	if n > fd.r.Len() {
		return 0, errFrameLength
	}
	return n, nil
}

// mapLen decodes a map header and checks it against the remaining bytes.
func (fd *frameDecoder) mapLen() (int, error) {
	n, err := fd.d.DecodeMapLen()
	if err != nil {
		return 0, err
	}
	if n > fd.r.Len()/2 {
		return 0, errFrameLength
	}
	return n, nil
}

// checkPayloadLen reads the length prefix of the string, binary or extension
// value that starts at the current position (code c) without consuming it, and
// fails when it claims more bytes than remain. The msgpack library would
// otherwise allocate up to 1 MiB per claimed value before noticing.
func (fd *frameDecoder) checkPayloadLen(c byte) error {
	off := len(fd.buf) - fd.r.Len()
	hdr := fd.buf[off:]
	var n, size int
	switch c {
	case msgpcode.Str8, msgpcode.Bin8, msgpcode.Ext8:
		size = 1
	case msgpcode.Str16, msgpcode.Bin16, msgpcode.Ext16:
		size = 2
	case msgpcode.Str32, msgpcode.Bin32, msgpcode.Ext32:
		size = 4
	default:
		return nil // fixed-size value, or a fixstr whose length is in c
	}
	if len(hdr) < 1+size {
		return errFrameLength
	}
	for _, x := range hdr[1 : 1+size] {
		n = n<<8 | int(x)
	}
	if n > len(hdr)-1-size {
		return errFrameLength
	}
	return nil
}

// value decodes any msgpack value into the Go shapes the Socket.IO server
// encodes: []any, map[string]any, string, []byte, int64, uint64, float64,
// bool, nil and time.Time (timestamp extension).
func (fd *frameDecoder) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, errFrameTooDeep
	}
	c, err := fd.d.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := fd.arrayLen()
		if err != nil {
			return nil, err
		}
		s := make([]any, n)
		for i := range s {
			if s[i], err = fd.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return s, nil
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := fd.mapLen()
		if err != nil {
			return nil, err
		}
		m := make(map[string]any, n)
		for i := 0; i < n; i++ {
			k, err := fd.key()
			if err != nil {
				return nil, err
			}
			if m[k], err = fd.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return m, nil
	case msgpcode.IsBin(c):
		if err := fd.checkPayloadLen(c); err != nil {
			return nil, err
		}
		return fd.d.DecodeBytes()
	case msgpcode.IsString(c):
		if err := fd.checkPayloadLen(c); err != nil {
			return nil, err
		}
		return fd.d.DecodeString()
	default:
		return fd.scalar()
	}
}

// scalar decodes a value that must not be an array or a map (a number, a
// string, a boolean, nil or an extension), after checking its claimed length.
// Containers are refused: decoding them generically would bypass the length
// checks of value.
func (fd *frameDecoder) scalar() (any, error) {
	c, err := fd.d.PeekCode()
	if err != nil {
		return nil, err
	}
	if isContainer(c) {
		return nil, fmt.Errorf("%w: unexpected array or map", errFrameShape)
	}
	if err := fd.checkPayloadLen(c); err != nil {
		return nil, err
	}
	if msgpcode.IsBin(c) {
		return fd.d.DecodeBytes()
	}
	v, err := fd.d.DecodeInterfaceLoose()
	if t, ok := v.(time.Time); ok {
		// msgpack decodes a timestamp in the local zone; a JavaScript Date
		// is an instant that Node serializes in UTC, and so does the sender.
		v = t.UTC()
	}
	return v, err
}

func isContainer(c byte) bool {
	return msgpcode.IsFixedArray(c) || msgpcode.IsFixedMap(c) ||
		c == msgpcode.Array16 || c == msgpcode.Array32 || c == msgpcode.Map16 || c == msgpcode.Map32
}

// str decodes a string after checking its claimed length.
func (fd *frameDecoder) str() (string, error) {
	c, err := fd.d.PeekCode()
	if err != nil {
		return "", err
	}
	if err := fd.checkPayloadLen(c); err != nil {
		return "", err
	}
	return fd.d.DecodeString()
}

// key decodes a map key. JavaScript object keys are strings; numbers are
// accepted and formatted in decimal, anything else is an error.
func (fd *frameDecoder) key() (string, error) {
	c, err := fd.d.PeekCode()
	if err != nil {
		return "", err
	}
	if err := fd.checkPayloadLen(c); err != nil {
		return "", err
	}
	if msgpcode.IsString(c) {
		return fd.d.DecodeString()
	}
	v, err := fd.scalar()
	if err != nil {
		return "", err
	}
	switch k := v.(type) {
	case int64:
		return strconv.FormatInt(k, 10), nil
	case uint64:
		return strconv.FormatUint(k, 10), nil
	}
	return "", fmt.Errorf("%w: map key of type %T", errFrameShape, v)
}

// room decodes one room name: a string, or a number (Node allows numeric
// rooms: io.to(123)), which becomes its decimal representation.
func (fd *frameDecoder) room() (socket.Room, error) {
	c, err := fd.d.PeekCode()
	if err != nil {
		return "", err
	}
	if err := fd.checkPayloadLen(c); err != nil {
		return "", err
	}
	if msgpcode.IsString(c) {
		s, err := fd.d.DecodeString()
		return socket.Room(s), err
	}
	v, err := fd.scalar()
	if err != nil {
		return "", err
	}
	s, ok := numberString(v)
	if !ok {
		return "", fmt.Errorf("%w: room of type %T", errFrameShape, v)
	}
	return socket.Room(s), nil
}

// numberString formats a decoded number the way JavaScript's String() does for
// the values rooms take in practice (integers, and finite floats).
func numberString(v any) (string, bool) {
	switch n := v.(type) {
	case int64:
		return strconv.FormatInt(n, 10), true
	case uint64:
		return strconv.FormatUint(n, 10), true
	case float64:
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return "", false
		}
		return strconv.FormatFloat(n, 'f', -1, 64), true
	case float32:
		return strconv.FormatFloat(float64(n), 'f', -1, 32), true
	}
	return "", false
}

func (fd *frameDecoder) rooms() ([]socket.Room, error) {
	c, err := fd.d.PeekCode()
	if err != nil {
		return nil, err
	}
	if c == msgpcode.Nil {
		return nil, fd.d.DecodeNil()
	}
	n, err := fd.arrayLen()
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	rooms := make([]socket.Room, n)
	for i := range rooms {
		if rooms[i], err = fd.room(); err != nil {
			return nil, err
		}
	}
	return rooms, nil
}

// number decodes an integer or float as float64 (JavaScript numbers).
func (fd *frameDecoder) number() (float64, error) {
	v, err := fd.scalar()
	if err != nil {
		return 0, err
	}
	switch n := v.(type) {
	case int64:
		return float64(n), nil
	case uint64:
		return float64(n), nil
	case float64:
		return n, nil
	case float32:
		return float64(n), nil
	}
	return 0, fmt.Errorf("%w: expected a number, got %T", errFrameShape, v)
}

// truthy decodes any value and reports JavaScript truthiness for the value
// kinds flags take (booleans; anything else counts as set when non-nil and
// non-zero).
func (fd *frameDecoder) truthy() (bool, error) {
	v, err := fd.value(1)
	if err != nil {
		return false, err
	}
	switch b := v.(type) {
	case bool:
		return b, nil
	case nil:
		return false, nil
	case int64:
		return b != 0, nil
	case uint64:
		return b != 0, nil
	case float64:
		return b != 0 && !math.IsNaN(b), nil
	case string:
		return b != "", nil
	}
	return true, nil
}

// ownFramePrefix returns the first bytes of every broadcast frame encoded by
// the server uid: a 3-element array header, then the uid as a string.
func ownFramePrefix(uid string) string {
	e := getEncoder()
	defer putEncoder(e)
	_ = e.enc.EncodeArrayLen(3)
	_ = e.enc.EncodeString(uid)
	return e.buf.String()
}

// stringBytes returns the bytes of s without copying them. The decoders only
// read their input and copy every string and []byte they return, so a frame
// received as a string can be decoded in place.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// decodeBroadcast decodes a classic broadcast frame [uid, packet, opts].
func decodeBroadcast(b []byte) (*broadcastFrame, error) {
	if len(b) == 0 {
		return nil, errEmptyFrame
	}
	fd := getDecoder(b)
	defer putDecoder(fd)
	f := &broadcastFrame{}
	n, err := fd.arrayLen()
	if err != nil {
		return nil, fmt.Errorf("%w: broadcast is not an array: %v", errFrameShape, err)
	}
	if n != 3 {
		return nil, fmt.Errorf("%w: broadcast array of %d elements", errFrameShape, n)
	}
	if f.UID, err = fd.str(); err != nil {
		return nil, fmt.Errorf("%w: uid: %v", errFrameShape, err)
	}
	if err := fd.packet(&f.Packet); err != nil {
		return nil, err
	}
	if err := fd.broadcastOpts(&f.Rooms, &f.Except, &f.Flags); err != nil {
		return nil, err
	}
	if fd.r.Len() != 0 {
		return nil, errTrailing
	}
	return f, nil
}

// packet decodes {type, data, nsp, id}. A missing nsp means "/", as in Node.
func (fd *frameDecoder) packet(p *parser.Packet) error {
	n, err := fd.mapLen()
	if err != nil {
		return fmt.Errorf("%w: packet: %v", errFrameShape, err)
	}
	p.Type = parser.EVENT
	p.Nsp = "/"
	for i := 0; i < n; i++ {
		k, err := fd.key()
		if err != nil {
			return err
		}
		switch k {
		case "type":
			v, err := fd.number()
			if err != nil {
				return err
			}
			t, ok := packetType(int64(v))
			if !ok || float64(int64(v)) != v {
				return fmt.Errorf("%w: packet type %v", errFrameShape, v)
			}
			p.Type = t
		case "data":
			if p.Data, err = fd.value(1); err != nil {
				return err
			}
		case "nsp":
			if p.Nsp, err = fd.str(); err != nil {
				return fmt.Errorf("%w: nsp: %v", errFrameShape, err)
			}
		case "id":
			v, err := fd.number()
			if err != nil {
				return err
			}
			if v >= 0 && v <= math.MaxUint32*float64(1<<20) {
				id := uint64(v)
				p.Id = &id
			}
		default:
			if err := fd.skip(); err != nil {
				return err
			}
		}
	}
	return nil
}

// broadcastOpts decodes {rooms, except, flags} in any key order.
func (fd *frameDecoder) broadcastOpts(rooms, except *[]socket.Room, flags *wireFlags) error {
	n, err := fd.mapLen()
	if err != nil {
		return fmt.Errorf("%w: opts: %v", errFrameShape, err)
	}
	for i := 0; i < n; i++ {
		k, err := fd.key()
		if err != nil {
			return err
		}
		switch k {
		case "rooms":
			if *rooms, err = fd.rooms(); err != nil {
				return err
			}
		case "except":
			if *except, err = fd.rooms(); err != nil {
				return err
			}
		case "flags":
			if err := fd.flags(flags); err != nil {
				return err
			}
		default:
			if err := fd.skip(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (fd *frameDecoder) flags(f *wireFlags) error {
	c, err := fd.d.PeekCode()
	if err != nil {
		return err
	}
	if c == msgpcode.Nil {
		return fd.d.DecodeNil()
	}
	n, err := fd.mapLen()
	if err != nil {
		return fmt.Errorf("%w: flags: %v", errFrameShape, err)
	}
	for i := 0; i < n; i++ {
		k, err := fd.key()
		if err != nil {
			return err
		}
		switch k {
		case "volatile":
			if f.Volatile, err = fd.truthy(); err != nil {
				return err
			}
		case "compress":
			if f.Compress, err = fd.truthy(); err != nil {
				return err
			}
		case "timeout":
			ms, err := fd.number()
			if err != nil {
				return err
			}
			if ms >= 0 && ms < float64(math.MaxInt64/int64(time.Millisecond)) {
				d := time.Duration(ms * float64(time.Millisecond))
				f.Timeout = &d
			}
		default:
			if err := fd.skip(); err != nil {
				return err
			}
		}
	}
	return nil
}

// normalizeData prepares a packet's data for both the wire and the local
// encoder: readers are read once and replaced by their content (text readers by
// a string, other readers by []byte), because msgpack cannot encode a reader
// and a reader can only be read once. Containers are copied only when one of
// their elements changes, so the common case allocates nothing.
func normalizeData(v any) (any, error) {
	n, _, err := normalize(v)
	return n, err
}

func normalize(v any) (any, bool, error) {
	switch t := v.(type) {
	case nil, string, []byte, bool, int, int64, float64,
		int8, int16, int32, uint, uint8, uint16, uint32, uint64, float32, time.Time:
		return v, false, nil
	case *types.StringBuffer:
		return t.String(), true, nil
	case *strings.Reader:
		b, err := io.ReadAll(t)
		return string(b), true, err
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
	case io.Reader:
		b, err := io.ReadAll(t)
		if c, ok := t.(io.Closer); ok {
			_ = c.Close()
		}
		return b, true, err
	}
	// Anything else (structs, typed slices and maps, pointers) goes through
	// encoding/json, as the server's own encoder does for local clients: json
	// tags and MarshalJSON then apply to remote clients too. msgpack would
	// use Go field names.
	b, err := json.Marshal(v)
	if err != nil {
		return nil, false, fmt.Errorf("redisadapter: encode %T: %w", v, err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, false, err
	}
	return out, true, nil
}

// skip discards one value with the same bounds as value.
func (fd *frameDecoder) skip() error {
	_, err := fd.value(1)
	return err
}
