package wire

import (
	"encoding/base64"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

// valueReader is what the typed decoders need of a MessagePack or JSON
// reader, so that one decoder serves both encodings.
type valueReader interface {
	// object calls fn for each key of the object (or map) that comes next;
	// fn must consume the value. A null is an empty object.
	object(fn func(key string) error) error
	// array calls fn for each element of the array that comes next; fn must
	// consume it. A null is an empty array.
	array(fn func() error) error
	str() (string, error)
	number() (float64, error)
	truthy() (bool, error)
	rooms() ([]string, error)
	// count returns the number of elements of the array that comes next
	// (0 for a null) without consuming it; its elements are checked.
	count() (int, error)
	// isStringElement reports whether the array that comes next starts
	// with a string, without consuming anything.
	isStringElement() bool
	// any materializes the next value within the frame's budget.
	any() (any, error)
	// arg decodes the next event argument: kept raw (RawMsgpack, RawJSON)
	// when it holds no binary, materialized otherwise. The caller pays
	// argCost for it beforehand.
	arg() (any, error)
	skip() error
	isString() bool
	charge(n int) error
	pos() int
	seek(int)
	done() error
}

// MessagePack.

func (r *reader) object(fn func(string) error) error {
	n, err := r.mapLen(true)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		k, err := r.key()
		if err != nil {
			return err
		}
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) array(fn func() error) error {
	n, err := r.arrayLen(true)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := fn(); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) anyValue() (any, error) { return r.any(1) }

func (r *reader) isStringElement() bool {
	start := r.i
	defer func() { r.i = start }()
	n, err := r.arrayLen(false)
	return err == nil && n > 0 && r.isString()
}

func (r *reader) count() (int, error) {
	start := r.i
	defer func() { r.i = start }()
	return r.arrayLen(true)
}

func (r *reader) arg() (any, error) {
	start := r.i
	cost, bin, err := r.scan(1)
	if err != nil {
		return nil, err
	}
	if bin {
		if err := r.charge(cost); err != nil {
			return nil, err
		}
		r.i = start
		return r.value(1)
	}
	return RawMsgpack{b: r.s[start:r.i]}, nil
}

// argCost is what an argument costs at least: a raw value boxed in an
// interface.
const argCost = 32

func (r *reader) isString() bool {
	c, err := r.peek()
	return err == nil && (c >= 0xa0 && c <= 0xbf || c >= 0xd9 && c <= 0xdb)
}

func (r *reader) skipValue() error { return r.skip(1) }
func (r *reader) pos() int         { return r.i }
func (r *reader) seek(i int)       { r.i = i }

// msgpackReader adapts reader to valueReader (its any and skip take a depth).
type msgpackReader struct{ *reader }

func (m msgpackReader) any() (any, error) { return m.anyValue() }
func (m msgpackReader) skip() error       { return m.skipValue() }

// JSON.

func (r *jsonReader) object(fn func(string) error) error {
	if r.isNull() {
		return nil
	}
	if err := r.expect('{'); err != nil {
		return err
	}
	return r.members('}', func() error {
		k, err := r.str()
		if err != nil {
			return err
		}
		if err := r.expect(':'); err != nil {
			return err
		}
		return fn(k)
	})
}

func (r *jsonReader) array(fn func() error) error {
	if r.isNull() {
		return nil
	}
	if err := r.expect('['); err != nil {
		return err
	}
	return r.members(']', fn)
}

func (r *jsonReader) truthy() (bool, error) {
	c, err := r.peek()
	if err != nil {
		return false, err
	}
	switch c {
	case 't':
		return true, r.literal("true")
	case 'f':
		return false, r.literal("false")
	case 'n':
		return false, r.literal("null")
	case '"':
		raw, _, err := r.stringToken()
		return raw != "", err
	case '{', '[':
		_, err := r.scan(1)
		return true, err
	}
	f, err := r.number()
	return f != 0 && !math.IsNaN(f), err
}

func (r *jsonReader) room() (string, error) {
	if r.isString() {
		return r.str()
	}
	f, err := r.number()
	if err != nil {
		return "", shapeErr("room is neither a string nor a number")
	}
	if err := r.charge(numberStringCost); err != nil {
		return "", err
	}
	return NumberString(f)
}

func (r *jsonReader) rooms() ([]string, error) {
	n, err := r.count()
	if err != nil || n == 0 {
		return nil, errOr(err, r.skip)
	}
	if err := r.charge(allocSize(16 * n)); err != nil {
		return nil, err
	}
	out := make([]string, 0, n)
	err = r.array(func() error {
		s, err := r.room()
		out = append(out, s)
		return err
	})
	return out, err
}

func (r *jsonReader) isStringElement() bool {
	start := r.i
	defer func() { r.i = start }()
	return r.expect('[') == nil && r.isString()
}

func (r *jsonReader) count() (int, error) {
	start := r.i
	defer func() { r.i = start }()
	if r.isNull() {
		return 0, nil
	}
	if err := r.expect('['); err != nil {
		return 0, err
	}
	n := 0
	err := r.members(']', func() error {
		n++
		_, err := r.scan(1)
		return err
	})
	return n, err
}

func (r *jsonReader) anyValue() (any, error) { return r.any(1) }

func (r *jsonReader) arg() (any, error) {
	r.ws()
	start := r.i
	if _, err := r.scan(1); err != nil {
		return nil, err
	}
	raw := r.s[start:r.i]
	if !utf8.ValidString(raw) {
		// Forwarded as it is, it would reach clients as invalid text:
		// each invalid byte becomes U+FFFD, as encoding/json and Node's
		// UTF-8 decoding make it.
		if err := r.charge(allocSize(3 * len(raw))); err != nil {
			return nil, err
		}
		return RawJSON{b: validUTF8(raw)}, nil
	}
	return RawJSON{b: StringBytes(raw)}, nil
}

// validUTF8 returns s with each byte that is not part of valid UTF-8
// replaced by U+FFFD.
func validUTF8(s string) []byte {
	b := make([]byte, 0, len(s)+len(s)/2)
	for i := 0; i < len(s); {
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return b
}

func (r *jsonReader) isString() bool {
	c, err := r.peek()
	return err == nil && c == '"'
}

func (r *jsonReader) skip() error {
	_, err := r.scan(1)
	return err
}

func (r *jsonReader) pos() int   { return r.i }
func (r *jsonReader) seek(i int) { r.i = i }

// jsonValueReader adapts jsonReader to valueReader.
type jsonValueReader struct{ *jsonReader }

func (j jsonValueReader) any() (any, error) { return j.anyValue() }

// newValueReader returns the reader for a frame: JSON when it starts with
// '{', MessagePack otherwise (Node's rule).
func newValueReader(frame string) (valueReader, error) {
	if frame == "" {
		return nil, ErrEmpty
	}
	if frame[0] == '{' {
		return jsonValueReader{newJSONReader(frame)}, nil
	}
	return msgpackReader{newReader(frame)}, nil
}

// Typed decoders shared by the protocols.

// readOpts decodes {rooms, except, flags}.
func readOpts(r valueReader, o *Opts) error {
	return r.object(func(k string) error {
		var err error
		switch k {
		case "rooms":
			o.Rooms, err = r.rooms()
		case "except":
			o.Except, err = r.rooms()
		case "flags":
			err = readFlags(r, &o.Flags)
		default:
			err = r.skip()
		}
		return err
	})
}

func readFlags(r valueReader, f *Flags) error {
	return r.object(func(k string) error {
		switch k {
		case "volatile":
			v, err := r.truthy()
			f.Volatile = v
			return err
		case "compress":
			v, err := r.truthy()
			f.Compress = &v
			return err
		case "timeout":
			ms, err := r.number()
			if err != nil {
				return err
			}
			if ms >= 0 && ms < float64(math.MaxInt64/int64(time.Millisecond)) {
				d := time.Duration(ms * float64(time.Millisecond))
				f.Timeout = &d
			}
			return nil
		}
		return r.skip()
	})
}

// readPacket decodes {type, data, nsp, id}. The event name stays a string and
// the arguments are kept raw when they hold no binary (see RawMsgpack).
func readPacket(r valueReader, p *Packet) error {
	p.Type = PacketEvent
	return r.object(func(k string) error {
		switch k {
		case "type":
			n, err := r.number()
			if err != nil {
				return err
			}
			if n != math.Trunc(n) || n < 0 || n > 6 {
				return shapeErr("packet type %v", n)
			}
			p.Type = int(n)
			return nil
		case "data":
			return readPacketData(r, p)
		case "nsp":
			s, err := r.str()
			p.Nsp = s
			return err
		case "id":
			n, err := r.number()
			if err != nil {
				return err
			}
			if n >= 0 && n == math.Trunc(n) && n < 1<<53 {
				id := uint64(n)
				p.ID = &id
			}
			return nil
		}
		return r.skip()
	})
}

func readPacketData(r valueReader, p *Packet) error {
	if r.isString() || !isArrayNext(r) {
		v, err := r.any()
		p.Data = v
		return err
	}
	// The arguments and their slice are paid for before anything is
	// allocated (an argument holding binary pays the rest of its cost when
	// it is materialized).
	n, err := r.count()
	if err != nil {
		return err
	}
	if err := r.charge(sliceCost(uint64(n)) + argCost*n); err != nil {
		return err
	}
	data := make([]any, 0, n)
	err = r.array(func() error {
		var v any
		var err error
		if len(data) == 0 && r.isString() {
			v, err = r.str()
		} else {
			v, err = r.arg()
		}
		data = append(data, v)
		return err
	})
	p.Data = data
	return err
}

// isArrayNext reports whether an array comes next.
func isArrayNext(r valueReader) bool {
	switch t := r.(type) {
	case msgpackReader:
		c, err := t.peek()
		return err == nil && (c >= 0x90 && c <= 0x9f || c == 0xdc || c == 0xdd)
	case jsonValueReader:
		c, err := t.peek()
		return err == nil && c == '['
	}
	return false
}

// readSocket decodes one socket of a fetchSockets answer.
func readSocket(r valueReader, s *Socket) error {
	return r.object(func(k string) error {
		var err error
		switch k {
		case "id":
			s.ID, err = r.str()
		case "rooms":
			s.Rooms, err = r.rooms()
		case "data":
			s.Data, err = r.any()
		case "handshake":
			err = readHandshake(r, &s.Handshake)
		default:
			err = r.skip()
		}
		return err
	})
}

func readHandshake(r valueReader, h *Handshake) error {
	return r.object(func(k string) error {
		var err error
		switch k {
		case "headers":
			h.Headers, err = anyMap(r)
		case "query":
			h.Query, err = anyMap(r)
		case "auth":
			h.Auth, err = r.any()
		case "time":
			var v any
			v, err = r.any()
			switch t := v.(type) {
			case string:
				h.Time = t
			case time.Time:
				if err = r.charge(64); err == nil {
					h.Time = t.String()
				}
			}
		case "address":
			h.Address, err = optString(r)
		case "url":
			h.URL, err = optString(r)
		case "xdomain":
			h.Xdomain, err = r.truthy()
		case "secure":
			h.Secure, err = r.truthy()
		case "issued":
			var n float64
			n, err = r.number()
			if math.Abs(n) < 1<<53 {
				h.Issued = int64(n)
			}
		default:
			err = r.skip()
		}
		return err
	})
}

func anyMap(r valueReader) (map[string]any, error) {
	v, err := r.any()
	m, _ := v.(map[string]any)
	return m, err
}

// optString decodes a string, or anything else as "".
func optString(r valueReader) (string, error) {
	if r.isString() {
		return r.str()
	}
	return "", r.skip()
}

// appendBase64 writes b as a JSON string in standard base64, as encoding/json
// writes a []byte.
func appendBase64(dst, b []byte) []byte {
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, '"')
}

// errOr returns err, or what next returns when err is nil.
func errOr(err error, next func() error) error {
	if err != nil {
		return err
	}
	return next()
}

// socketCost is what a socket of a fetchSockets answer costs, beyond what
// its fields are charged when they are decoded.
var socketCost = int(unsafe.Sizeof(Socket{}))

// readSockets decodes the sockets of a fetchSockets answer: socket objects,
// or (classic SOCKETS answers) socket ids, into m.Sockets or m.SocketIDs.
// The slice is paid for before it is allocated.
func readSockets(r valueReader, m *Message, idsOK bool) error {
	n, err := r.count()
	if err != nil || n == 0 {
		return errOr(err, r.skip)
	}
	ids := idsOK && r.isStringElement()
	size := socketCost
	if ids {
		size = 16
	}
	if err := r.charge(allocSize(size * n)); err != nil {
		return err
	}
	if ids {
		m.SocketIDs = make([]string, 0, n)
	} else {
		m.Sockets = make([]Socket, 0, n)
	}
	return r.array(func() error {
		if r.isString() != ids {
			return shapeErr("sockets mix ids and objects")
		}
		if ids {
			id, err := r.str()
			m.SocketIDs = append(m.SocketIDs, id)
			return err
		}
		m.Sockets = append(m.Sockets, Socket{})
		return readSocket(r, &m.Sockets[len(m.Sockets)-1])
	})
}

// readCount decodes a count of clients: an integer from 0 to 2^53 (a
// JavaScript safe integer).
func readCount(r valueReader) (uint64, error) {
	n, err := r.number()
	if err != nil {
		return 0, err
	}
	if !(n >= 0 && n <= 1<<53) || n != math.Trunc(n) {
		return 0, shapeErr("count %v", n)
	}
	return uint64(n), nil
}

// typeNumber decodes a message type written as a number or (in stream
// entries) a decimal string.
func typeNumber(r valueReader) (int, error) {
	if r.isString() {
		s, err := r.str()
		if err != nil {
			return 0, err
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, shapeErr("type %q", s)
		}
		return n, nil
	}
	n, err := r.number()
	if err != nil {
		return 0, err
	}
	if n != math.Trunc(n) || n < 0 || n > 1000 {
		return 0, shapeErr("type %v", n)
	}
	return int(n), nil
}
