package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// AppendJSON appends v as JavaScript's JSON.stringify writes it: no HTML
// escaping. v must be normalized (see Normalize).
func AppendJSON(dst []byte, v any) ([]byte, error) {
	switch t := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendJSONString(dst, t), nil
	case bool:
		return strconv.AppendBool(dst, t), nil
	case int64:
		return strconv.AppendInt(dst, t, 10), nil
	case float64:
		return appendJSONFloat(dst, t)
	case RawJSON:
		return append(dst, t.b...), nil
	}
	buf := bytes.NewBuffer(dst)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	out := buf.Bytes()
	return out[:len(out)-1], nil // the newline Encode appends
}

// jsonReader decodes JSON from a string with the guarantees of reader: it
// validates and prices a value before materializing it, and its strings share
// the input's memory when they hold no escape.
type jsonReader struct {
	s      string
	i      int
	budget int
	// counts are the member counts of the containers of the value any is
	// materializing, in the order value meets them (ci is the next one);
	// nc counts the containers a scan meets, and scan records their member
	// counts only when counts is allocated.
	counts []int32
	ci, nc int
}

func newJSONReader(s string) *jsonReader { return &jsonReader{s: s, budget: Budget(len(s))} }

func (r *jsonReader) ws() {
	for r.i < len(r.s) {
		switch r.s[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

func (r *jsonReader) peek() (byte, error) {
	r.ws()
	if r.i >= len(r.s) {
		return 0, ErrLength
	}
	return r.s[r.i], nil
}

func (r *jsonReader) done() error {
	r.ws()
	if r.i != len(r.s) {
		return ErrTrailing
	}
	return nil
}

func (r *jsonReader) expect(c byte) error {
	p, err := r.peek()
	if err != nil {
		return err
	}
	if p != c {
		return shapeErr("expected %q, found %q", c, p)
	}
	r.i++
	return nil
}

// stringToken scans a string token and reports its raw content (between the
// quotes) and whether it holds escapes.
func (r *jsonReader) stringToken() (raw string, escaped bool, err error) {
	if err := r.expect('"'); err != nil {
		return "", false, err
	}
	start := r.i
	for r.i < len(r.s) {
		c := r.s[r.i]
		switch {
		case c == '"':
			raw = r.s[start:r.i]
			r.i++
			return raw, escaped, nil
		case c == '\\':
			// Escapes are checked here, so that a value kept raw is valid
			// JSON.
			escaped = true
			if r.i+1 >= len(r.s) {
				return "", false, ErrLength
			}
			switch r.s[r.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				r.i += 2
			case 'u':
				if _, ok := hex4(r.s, r.i+2); !ok {
					return "", false, shapeErr("bad \\u escape")
				}
				r.i += 6
			default:
				return "", false, shapeErr("bad escape")
			}
		case c < 0x20:
			return "", false, shapeErr("control character in a JSON string")
		default:
			r.i++
		}
	}
	return "", false, ErrLength
}

// unescape decodes the content of a string token that holds escapes.
func unescape(raw string) (string, error) {
	b := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		i++
		if i >= len(raw) {
			return "", ErrLength
		}
		switch raw[i] {
		case '"', '\\', '/':
			b = append(b, raw[i])
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r1, ok := hex4(raw, i+1)
			if !ok {
				return "", shapeErr("bad \\u escape")
			}
			i += 4
			if utf16.IsSurrogate(r1) {
				if r2, ok := hex4(raw, i+3); ok && i+2 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
					if d := utf16.DecodeRune(r1, r2); d != utf8.RuneError {
						i += 6
						b = utf8.AppendRune(b, d)
						continue
					}
				}
				r1 = utf8.RuneError
			}
			b = utf8.AppendRune(b, r1)
		default:
			return "", shapeErr("bad escape")
		}
	}
	return BytesString(b), nil
}

func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	n, err := strconv.ParseUint(s[i:i+4], 16, 32)
	return rune(n), err == nil
}

// str decodes a string, charging what unescaping it costs.
func (r *jsonReader) str() (string, error) {
	raw, escaped, err := r.stringToken()
	if err != nil || !escaped {
		return raw, err
	}
	if err := r.charge(allocSize(len(raw))); err != nil {
		return "", err
	}
	return unescape(raw)
}

// text decodes a string already charged by scan.
func (r *jsonReader) text() (string, error) {
	raw, escaped, err := r.stringToken()
	if err != nil || !escaped {
		return raw, err
	}
	return unescape(raw)
}

// stringCost is what a string costs once decoded: its unescaped copy.
func stringCost(raw string, escaped bool) int {
	if escaped {
		return allocSize(len(raw))
	}
	return 0
}

func (r *jsonReader) charge(n int) error {
	if n > r.budget {
		return ErrBudget
	}
	r.budget -= n
	return nil
}

// numberToken scans a number token.
func (r *jsonReader) numberToken() (string, error) {
	r.ws()
	start := r.i
	for r.i < len(r.s) {
		c := r.s[r.i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			r.i++
			continue
		}
		break
	}
	tok := r.s[start:r.i]
	if tok == "" {
		return "", shapeErr("expected a JSON value")
	}
	if _, err := strconv.ParseFloat(tok, 64); err != nil || !jsonNumber(tok) {
		return "", shapeErr("bad JSON number %q", tok)
	}
	return tok, nil
}

// jsonNumber reports whether tok is a number in JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? (ParseFloat also takes
// "01", "1." and "+1", which a value kept raw must not hold).
func jsonNumber(tok string) bool {
	i := 0
	digits := func() int {
		start := i
		for i < len(tok) && tok[i] >= '0' && tok[i] <= '9' {
			i++
		}
		return i - start
	}
	if i < len(tok) && tok[i] == '-' {
		i++
	}
	if i < len(tok) && tok[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(tok) && tok[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(tok) && (tok[i] == 'e' || tok[i] == 'E') {
		i++
		if i < len(tok) && (tok[i] == '+' || tok[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(tok)
}

func (r *jsonReader) number() (float64, error) {
	tok, err := r.numberToken()
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(tok, 64)
}

func (r *jsonReader) literal(word string) error {
	if len(r.s)-r.i < len(word) || r.s[r.i:r.i+len(word)] != word {
		return shapeErr("bad JSON literal")
	}
	r.i += len(word)
	return nil
}

// scan walks one value without allocating and returns what materializing it
// costs.
func (r *jsonReader) scan(depth int) (int, error) {
	if depth > MaxDepth {
		return 0, ErrTooDeep
	}
	c, err := r.peek()
	if err != nil {
		return 0, err
	}
	switch c {
	case '{':
		r.i++
		cost, n, at := 0, uint64(0), r.nc
		r.nc++
		err := r.members('}', func() error {
			n++
			raw, escaped, err := r.stringToken()
			if err != nil {
				return err
			}
			if err := r.expect(':'); err != nil {
				return err
			}
			c, err := r.scan(depth + 1)
			cost += c + stringCost(raw, escaped)
			return err
		})
		if r.counts != nil {
			r.counts[at] = int32(n)
		}
		return cost + mapCost(n), err
	case '[':
		r.i++
		cost, n, at := 0, uint64(0), r.nc
		r.nc++
		err := r.members(']', func() error {
			n++
			c, err := r.scan(depth + 1)
			cost += c
			return err
		})
		if r.counts != nil {
			r.counts[at] = int32(n)
		}
		return cost + sliceCost(n), err
	case '"':
		// Boxed in an interface.
		raw, escaped, err := r.stringToken()
		return 16 + stringCost(raw, escaped), err
	case 't':
		return 0, r.literal("true")
	case 'f':
		return 0, r.literal("false")
	case 'n':
		return 0, r.literal("null")
	}
	_, err = r.numberToken()
	return numberCost, err
}

// members calls fn for each member of an object or array whose opening
// bracket was consumed, until the closing one.
func (r *jsonReader) members(closing byte, fn func() error) error {
	c, err := r.peek()
	if err != nil {
		return err
	}
	if c == closing {
		r.i++
		return nil
	}
	for {
		if err := fn(); err != nil {
			return err
		}
		c, err := r.peek()
		if err != nil {
			return err
		}
		r.i++
		switch c {
		case ',':
		case closing:
			return nil
		default:
			return shapeErr("expected ',' or %q", closing)
		}
	}
}

// any materializes one value after checking it fits in the budget: objects
// become map[string]any, arrays []any, numbers float64.
//
// A first scan validates and prices the value; a second, once the price is
// paid, records the member count of each container, so that value allocates
// each slice and map at its final size.
func (r *jsonReader) any(depth int) (any, error) {
	r.ws()
	start := r.i
	r.counts, r.nc = nil, 0
	cost, err := r.scan(depth)
	if err != nil {
		return nil, err
	}
	if err := r.charge(cost + allocSize(4*r.nc)); err != nil {
		return nil, err
	}
	if r.nc > 0 {
		r.counts, r.nc, r.i = make([]int32, r.nc), 0, start
		if _, err := r.scan(depth); err != nil {
			return nil, err
		}
	}
	r.i, r.ci = start, 0
	v, err := r.value(depth)
	r.counts = nil
	return v, err
}

// nextCount returns the member count scan recorded for the next container.
func (r *jsonReader) nextCount() int {
	if r.ci >= len(r.counts) {
		return 0
	}
	n := r.counts[r.ci]
	r.ci++
	return int(n)
}

func (r *jsonReader) value(depth int) (any, error) {
	c, err := r.peek()
	if err != nil {
		return nil, err
	}
	switch c {
	case '{':
		r.i++
		m := make(map[string]any, r.nextCount())
		err := r.members('}', func() error {
			k, err := r.text()
			if err != nil {
				return err
			}
			if err := r.expect(':'); err != nil {
				return err
			}
			m[k], err = r.value(depth + 1)
			return err
		})
		return m, err
	case '[':
		r.i++
		s := make([]any, 0, r.nextCount())
		err := r.members(']', func() error {
			v, err := r.value(depth + 1)
			s = append(s, v)
			return err
		})
		return s, err
	case '"':
		return r.text()
	case 't':
		return true, r.literal("true")
	case 'f':
		return false, r.literal("false")
	case 'n':
		return nil, r.literal("null")
	}
	return r.number()
}

// isNull consumes a null if one is next.
func (r *jsonReader) isNull() bool {
	if c, err := r.peek(); err == nil && c == 'n' {
		return r.literal("null") == nil
	}
	return false
}
