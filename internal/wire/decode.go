package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unsafe"
)

// Limits of the decoders.
const (
	// MaxDepth bounds the nesting of arrays and maps in a frame.
	MaxDepth = 64
	// BudgetFactor and BudgetFloor give every frame its memory budget: a
	// frame may cost at most BudgetFactor times its size, plus BudgetFloor,
	// once decoded. A frame that would cost more is refused before anything
	// of it is allocated.
	BudgetFactor = 4
	BudgetFloor  = 16 << 10
)

// Budget returns the memory budget of a frame of size bytes.
func Budget(size int) int { return BudgetFactor*size + BudgetFloor }

// Errors of the decoders, wrapped with details; test them with errors.Is.
var (
	ErrEmpty    = errors.New("wire: empty frame")
	ErrShape    = errors.New("wire: unexpected frame shape")
	ErrTooDeep  = errors.New("wire: frame nested too deeply")
	ErrLength   = errors.New("wire: frame claims more bytes than it holds")
	ErrTrailing = errors.New("wire: trailing bytes after frame")
	ErrBudget   = errors.New("wire: frame would exceed its memory budget")
)

func shapeErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrShape, fmt.Sprintf(format, args...))
}

// reader decodes MessagePack from a string without copying it: the strings
// it returns share the input's memory, which is safe because Go strings are
// immutable. Byte slices are copied.
//
// Every value that is turned into Go values is first walked without
// allocating (scan), which checks its lengths against the bytes present and
// computes an upper bound of what materializing it costs; the value is only
// materialized when that cost fits in the frame's remaining budget.
type reader struct {
	s      string
	i      int
	budget int
	// jsDates makes appendJSON write timestamps as JavaScript's
	// Date.prototype.toJSON does (what Node's JSON.stringify puts on the
	// wire), instead of encoding/json's time.Time text.
	jsDates bool
}

func newReader(s string) *reader { return &reader{s: s, budget: Budget(len(s))} }

func (r *reader) left() int { return len(r.s) - r.i }

func (r *reader) done() error {
	if r.i != len(r.s) {
		return ErrTrailing
	}
	return nil
}

// charge takes n bytes from the budget.
func (r *reader) charge(n int) error {
	if n > r.budget {
		return ErrBudget
	}
	r.budget -= n
	return nil
}

func (r *reader) peek() (byte, error) {
	if r.i >= len(r.s) {
		return 0, ErrLength
	}
	return r.s[r.i], nil
}

func (r *reader) byte1() (byte, error) {
	c, err := r.peek()
	if err == nil {
		r.i++
	}
	return c, err
}

// uintN reads a big-endian unsigned integer of n bytes (1, 2, 4 or 8).
func (r *reader) uintN(n int) (uint64, error) {
	if r.left() < n {
		return 0, ErrLength
	}
	var v uint64
	for _, c := range []byte(r.s[r.i : r.i+n]) {
		v = v<<8 | uint64(c)
	}
	r.i += n
	return v, nil
}

// bytesN returns the next n bytes, checked against what is left.
func (r *reader) bytesN(n uint64) (string, error) {
	if n > uint64(r.left()) {
		return "", ErrLength
	}
	s := r.s[r.i : r.i+int(n)]
	r.i += int(n)
	return s, nil
}

// Header kinds.
const (
	kNil = iota
	kBool
	kInt
	kUint
	kFloat
	kStr
	kBin
	kArray
	kMap
	kExt
)

// head reads the header of the next value: its kind, and its length for
// strings, binaries, arrays, maps and extensions, or its value for scalars.
// Lengths are not yet checked against the bytes left.
func (r *reader) head() (kind int, n uint64, x uint64, err error) {
	c, err := r.byte1()
	if err != nil {
		return 0, 0, 0, err
	}
	switch {
	case c <= 0x7f:
		return kUint, 0, uint64(c), nil
	case c >= 0xe0:
		return kInt, 0, uint64(int64(int8(c))), nil
	case c >= 0xa0 && c <= 0xbf:
		return kStr, uint64(c & 0x1f), 0, nil
	case c >= 0x90 && c <= 0x9f:
		return kArray, uint64(c & 0x0f), 0, nil
	case c >= 0x80 && c <= 0x8f:
		return kMap, uint64(c & 0x0f), 0, nil
	}
	var size int
	switch c {
	case 0xc0:
		return kNil, 0, 0, nil
	case 0xc2, 0xc3:
		return kBool, 0, uint64(c - 0xc2), nil
	case 0xcc, 0xcd, 0xce, 0xcf:
		size = 1 << (c - 0xcc)
		v, err := r.uintN(size)
		return kUint, 0, v, err
	case 0xd0, 0xd1, 0xd2, 0xd3:
		size = 1 << (c - 0xd0)
		v, err := r.uintN(size)
		shift := 64 - 8*size
		return kInt, 0, uint64(int64(v<<shift) >> shift), err
	case 0xca:
		v, err := r.uintN(4)
		return kFloat, 0, math.Float64bits(float64(math.Float32frombits(uint32(v)))), err
	case 0xcb:
		v, err := r.uintN(8)
		return kFloat, 0, v, err
	case 0xd9, 0xda, 0xdb:
		v, err := r.uintN(1 << (c - 0xd9))
		return kStr, v, 0, err
	case 0xc4, 0xc5, 0xc6:
		v, err := r.uintN(1 << (c - 0xc4))
		return kBin, v, 0, err
	case 0xdc, 0xdd:
		v, err := r.uintN(2 << (c - 0xdc))
		return kArray, v, 0, err
	case 0xde, 0xdf:
		v, err := r.uintN(2 << (c - 0xde))
		return kMap, v, 0, err
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16
		return kExt, 1 << (c - 0xd4), 0, nil
	case 0xc7, 0xc8, 0xc9:
		v, err := r.uintN(1 << (c - 0xc7))
		return kExt, v, 0, err
	}
	return 0, 0, 0, shapeErr("byte 0x%02x is not a MessagePack value", c)
}

// allocSize bounds what the allocator takes for an object of n bytes: its
// size class up to 32 KiB (at most a quarter more, plus 16 bytes), whole
// 8 KiB pages above.
func allocSize(n int) int {
	switch {
	case n <= 0:
		return 0
	case n <= 32<<10:
		return n + n/4 + 16
	}
	return (n + 8191) &^ 8191
}

// Costs of materialized values: upper bounds of what Go 1.24-1.26 allocate,
// checked against the running Go by the cost tests (cost_test.go).

// sliceCost is a []any of n elements, boxed in an interface.
func sliceCost(n uint64) int { return allocSize(16*int(n)) + 24 }

// mapCost is a map[string]any of n entries (a Swiss table, which may split
// while it fills: up to about 92 bytes an entry measured).
func mapCost(n uint64) int {
	if n <= 8 {
		return 352
	}
	return 96*int(n) + 512
}

// numberCost is a number boxed in an interface: 8 bytes, which the race
// detector, turning off the tiny allocator, makes 16.
const numberCost = 16

// binCost is a []byte of n bytes, boxed in an interface.
func binCost(n uint64) int { return allocSize(int(n)) + 24 }

// scan walks one value without allocating. It returns what materializing it
// would cost and whether it holds binary, and checks every length against the
// bytes present.
func (r *reader) scan(depth int) (cost int, bin bool, err error) {
	if depth > MaxDepth {
		return 0, false, ErrTooDeep
	}
	kind, n, _, err := r.head()
	if err != nil {
		return 0, false, err
	}
	switch kind {
	case kNil, kBool:
		return 0, false, nil
	case kInt, kUint, kFloat:
		return numberCost, false, nil
	case kStr:
		_, err := r.bytesN(n)
		return 16, false, err
	case kBin:
		_, err := r.bytesN(n)
		return binCost(n), true, err
	case kExt:
		// Only the timestamp (-1) of 4, 8 or 12 bytes decodes (see ext):
		// refused here, so that a value kept raw always decodes later.
		ext, err := r.bytesN(n + 1)
		if err == nil && (ext[0] != 0xff || n != 4 && n != 8 && n != 12) {
			err = shapeErr("extension %d of %d bytes", int8(ext[0]), n)
		}
		return 32, false, err
	case kArray, kMap:
		per := uint64(1)
		if kind == kMap {
			per = 2
		}
		// Each element takes at least one byte.
		if n > uint64(r.left())/per {
			return 0, false, ErrLength
		}
		if kind == kArray {
			cost = sliceCost(n)
		} else {
			cost = mapCost(n)
		}
		for i := uint64(0); i < n*per; i++ {
			if kind == kMap && i%2 == 0 {
				// A key: a string or an integer (see key).
				c, err := r.scanKey()
				if err != nil {
					return 0, false, err
				}
				cost += c
				continue
			}
			c, b, err := r.scan(depth + 1)
			if err != nil {
				return 0, false, err
			}
			cost += c
			bin = bin || b
		}
		return cost, bin, nil
	}
	return 0, false, ErrShape
}

// scanKey walks a map key, which must be one key accepts, and returns what
// key costs: nothing for a string (it shares the frame's memory), the
// decimal text of an integer.
func (r *reader) scanKey() (int, error) {
	kind, n, _, err := r.head()
	if err != nil {
		return 0, err
	}
	switch kind {
	case kStr:
		_, err = r.bytesN(n)
		return 0, err
	case kInt, kUint:
		return 24, nil
	}
	return 0, shapeErr("map key of kind %d", kind)
}

// skip discards one value.
func (r *reader) skip(depth int) error {
	_, _, err := r.scan(depth)
	return err
}

// any decodes one value into Go values (see value) after checking that it
// fits in the budget.
func (r *reader) any(depth int) (any, error) {
	start := r.i
	cost, _, err := r.scan(depth)
	if err != nil {
		return nil, err
	}
	if err := r.charge(cost); err != nil {
		return nil, err
	}
	r.i = start
	return r.value(depth)
}

// value materializes one value already scanned: []any, map[string]any,
// string, []byte, int64, uint64, float64, bool, nil and time.Time (UTC).
func (r *reader) value(depth int) (any, error) {
	if depth > MaxDepth {
		return nil, ErrTooDeep
	}
	kind, n, x, err := r.head()
	if err != nil {
		return nil, err
	}
	switch kind {
	case kNil:
		return nil, nil
	case kBool:
		return x == 1, nil
	case kInt:
		return int64(x), nil
	case kUint:
		return x, nil
	case kFloat:
		return math.Float64frombits(x), nil
	case kStr:
		return r.bytesN(n)
	case kBin:
		s, err := r.bytesN(n)
		return []byte(s), err
	case kExt:
		return r.ext(n)
	case kArray:
		if n > uint64(r.left()) {
			return nil, ErrLength
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = r.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case kMap:
		if n > uint64(r.left())/2 {
			return nil, ErrLength
		}
		out := make(map[string]any, n)
		for i := uint64(0); i < n; i++ {
			k, err := r.key()
			if err != nil {
				return nil, err
			}
			if out[k], err = r.value(depth + 1); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, ErrShape
}

// ext decodes an extension of n data bytes: only the timestamp (-1) exists
// in Socket.IO traffic (a JavaScript Date).
func (r *reader) ext(n uint64) (any, error) {
	typ, err := r.byte1()
	if err != nil {
		return nil, err
	}
	data, err := r.bytesN(n)
	if err != nil {
		return nil, err
	}
	if int8(typ) != -1 {
		return nil, shapeErr("extension type %d", int8(typ))
	}
	b := []byte(data)
	switch len(b) {
	case 4:
		return time.Unix(int64(binary.BigEndian.Uint32(b)), 0).UTC(), nil
	case 8:
		v := binary.BigEndian.Uint64(b)
		return time.Unix(int64(v&(1<<34-1)), int64(v>>34)).UTC(), nil
	case 12:
		return time.Unix(int64(binary.BigEndian.Uint64(b[4:])), int64(binary.BigEndian.Uint32(b))).UTC(), nil
	}
	return nil, shapeErr("timestamp of %d bytes", len(b))
}

// key decodes a map key: a string, or a number formatted in decimal (a
// JavaScript object's keys are strings).
func (r *reader) key() (string, error) {
	kind, n, x, err := r.head()
	if err != nil {
		return "", err
	}
	switch kind {
	case kStr:
		return r.bytesN(n)
	case kUint:
		return strconv.FormatUint(x, 10), nil
	case kInt:
		return strconv.FormatInt(int64(x), 10), nil
	}
	return "", shapeErr("map key of kind %d", kind)
}

// str decodes a string.
func (r *reader) str() (string, error) {
	kind, n, _, err := r.head()
	if err != nil {
		return "", err
	}
	if kind != kStr {
		return "", shapeErr("expected a string")
	}
	return r.bytesN(n)
}

// arrayLen decodes an array header; nilOK accepts nil as an empty array.
func (r *reader) arrayLen(nilOK bool) (int, error) {
	kind, n, _, err := r.head()
	if err != nil {
		return 0, err
	}
	if kind == kNil && nilOK {
		return 0, nil
	}
	if kind != kArray {
		return 0, shapeErr("expected an array")
	}
	if n > uint64(r.left()) {
		return 0, ErrLength
	}
	return int(n), nil
}

// mapLen decodes a map header; nilOK accepts nil as an empty map.
func (r *reader) mapLen(nilOK bool) (int, error) {
	kind, n, _, err := r.head()
	if err != nil {
		return 0, err
	}
	if kind == kNil && nilOK {
		return 0, nil
	}
	if kind != kMap {
		return 0, shapeErr("expected a map")
	}
	if n > uint64(r.left())/2 {
		return 0, ErrLength
	}
	return int(n), nil
}

// number decodes an integer or a float as a float64 (a JavaScript number).
func (r *reader) number() (float64, error) {
	kind, _, x, err := r.head()
	if err != nil {
		return 0, err
	}
	switch kind {
	case kInt:
		return float64(int64(x)), nil
	case kUint:
		return float64(x), nil
	case kFloat:
		return math.Float64frombits(x), nil
	}
	return 0, shapeErr("expected a number")
}

// truthy decodes any value and reports JavaScript truthiness.
func (r *reader) truthy() (bool, error) {
	start := r.i
	kind, _, x, err := r.head()
	if err != nil {
		return false, err
	}
	switch kind {
	case kNil:
		return false, nil
	case kBool, kInt, kUint:
		return x != 0, nil
	case kFloat:
		f := math.Float64frombits(x)
		return f != 0 && !math.IsNaN(f), nil
	case kStr:
		r.i = start
		s, err := r.str()
		return s != "", err
	}
	r.i = start
	return true, r.skip(1)
}

// room decodes a room name: a string, or a number (Node allows numeric rooms,
// io.to(123)) in its decimal form.
func (r *reader) room() (string, error) {
	start := r.i
	kind, _, _, err := r.head()
	if err != nil {
		return "", err
	}
	r.i = start
	if kind == kStr {
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

// rooms decodes an array of rooms (nil is no room).
func (r *reader) rooms() ([]string, error) {
	n, err := r.arrayLen(true)
	if err != nil || n == 0 {
		return nil, err
	}
	if err := r.charge(allocSize(16 * n)); err != nil {
		return nil, err
	}
	out := make([]string, n)
	for i := range out {
		if out[i], err = r.room(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// numberStringCost bounds what NumberString allocates (at most 24 bytes of
// text).
const numberStringCost = 32

// NumberString formats a finite number as JavaScript's String() does (a
// numeric room, io.to(123), is the room "123"): the shortest decimal that
// reads back as the number, in exponent form from 1e21 on and below 1e-6
// ("1e+21", "1.5e-7"), and "0" for -0.
func NumberString(f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", shapeErr("room is not a finite number")
	}
	if f == 0 {
		return "0", nil
	}
	if a := math.Abs(f); a < 1e21 && a >= 1e-6 {
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	}
	b := strconv.AppendFloat(make([]byte, 0, 24), f, 'e', -1, 64)
	// Go writes at least two exponent digits, JavaScript no leading zero.
	if n := len(b); b[n-2] == '0' && (b[n-3] == '+' || b[n-3] == '-') {
		b = append(b[:n-2], b[n-1])
	}
	return string(b), nil
}

// StringBytes returns the bytes of s without copying them. The caller must
// not modify them.
func StringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// BytesString returns b as a string without copying it. The caller must not
// modify b afterwards.
func BytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
