package wire

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// The memory budget: a frame costs at most BudgetFactor times its size (plus
// BudgetFloor) once decoded, and a frame that would cost more is refused.
// Each hostile shape goes through every decoder, at every place a value of
// any shape is accepted; what each decode allocates is measured.

// allocBytes returns the bytes f allocates per call (runtime.MemStats
// TotalAlloc around runs calls). The caller has called f once before, so
// that what happens once (sync.Once, lazy tables) is not counted.
func allocBytes(runs int, f func()) float64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.TotalAlloc-before.TotalAlloc) / float64(runs)
}

// budgetSize is the size of the big hostile payloads: the 16 KiB floor of the
// budget is under 2% of their budget.
const budgetSize = 256 << 10

// A site is one place of one decoder where a value of any shape goes, in
// MessagePack (mp) or JSON (js): the frame holding the payload, and the
// decoder.
type site struct {
	name   string
	json   bool
	frame  func(payload string) string
	decode func(frame string) (*Message, error)
	// b64: the frame is base64, which the decoder decodes first.
	b64 bool
	// raw: the payload is one event argument, kept raw when it holds no
	// binary; packet: the payload is the packet's data, its elements the
	// arguments; otherwise the payload is materialized.
	raw, packet bool
}

func streamEntryJSON(frame string) (*Message, error) {
	return DecodeStreamEntry("u", "/", "3", frame)
}

func streamEntryMsgpack(frame string) (*Message, error) {
	return DecodeStreamEntry("u", "/", "3", frame)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func streamEntryResponse(frame string) (*Message, error) {
	return DecodeStreamEntry("u", "/", "10", frame)
}

func streamEntryResponseMsgpack(frame string) (*Message, error) {
	return DecodeStreamEntry("u", "/", "10", frame)
}

const (
	mpPacketHead  = "\x82\xa4type\x02\xa4data"
	mpBroadcastUO = "\xa3uid\xa1u\xa3nsp\xa1/"
)

var sites = []site{
	// Classic broadcast [uid, packet, opts].
	{name: "classic broadcast, data", frame: func(p string) string { return "\x93\xa1u" + mpPacketHead + p + "\x80" }, decode: DecodeClassicBroadcast, packet: true},
	{name: "classic broadcast, argument", frame: func(p string) string { return "\x93\xa1u" + mpPacketHead + "\x92\xa2ev" + p + "\x80" }, decode: DecodeClassicBroadcast, raw: true},
	// Classic requests.
	{name: "classic request mp (7), data", frame: func(p string) string {
		return "\x84\xa3uid\xa1u\xa9requestId\xa1r\xa4type\x07\xa6packet" + mpPacketHead + p
	}, decode: DecodeClassicRequest, packet: true},
	{name: "classic request mp (6), args", frame: func(p string) string {
		return "\x83\xa3uid\xa1u\xa4type\x06\xa4data\x92\xa2ev" + p
	}, decode: DecodeClassicRequest},
	{name: "classic request js (6), args", json: true, frame: func(p string) string {
		return `{"uid":"u","type":6,"data":["ev",` + p + `]}`
	}, decode: DecodeClassicRequest},
	{name: "classic request js (7), data", json: true, frame: func(p string) string {
		return `{"uid":"u","requestId":"r","type":7,"packet":{"type":2,"data":` + p + `}}`
	}, decode: DecodeClassicRequest, packet: true},
	// Classic responses.
	{name: "classic response mp (9), value", frame: func(p string) string { return "\x83\xa4type\x09\xa9requestId\xa1r\xa6packet" + p }, decode: DecodeClassicResponse},
	{name: "classic response js (6), value", json: true, frame: func(p string) string { return `{"type":6,"requestId":"r","data":` + p + `}` }, decode: DecodeClassicResponse},
	{name: "classic response js, socket data", json: true, frame: func(p string) string {
		return `{"requestId":"r","sockets":[{"id":"s","handshake":{"headers":{}},"rooms":[],"data":` + p + `}]}`
	}, decode: DecodeClassicResponse},
	// Cluster messages (sharded, streams pub/sub).
	{name: "cluster mp (3), data", frame: func(p string) string {
		return "\x84\xa4type\x03\xa4data\x81\xa6packet" + mpPacketHead + p + mpBroadcastUO
	}, decode: DecodeCluster, packet: true},
	{name: "cluster mp (3), argument", frame: func(p string) string {
		return "\x84\xa4type\x03\xa4data\x81\xa6packet" + mpPacketHead + "\x92\xa2ev" + p + mpBroadcastUO
	}, decode: DecodeCluster, raw: true},
	{name: "cluster mp (9), args", frame: func(p string) string {
		return "\x84\xa4type\x09\xa4data\x81\xa6packet\x92\xa2ev" + p + mpBroadcastUO
	}, decode: DecodeCluster},
	{name: "cluster js (3), data", json: true, frame: func(p string) string {
		return `{"type":3,"data":{"packet":{"type":2,"data":` + p + `},"opts":{}},"uid":"u","nsp":"/"}`
	}, decode: DecodeCluster, packet: true},
	{name: "cluster js (3), argument", json: true, frame: func(p string) string {
		return `{"type":3,"data":{"packet":{"type":2,"data":["ev",` + p + `]},"opts":{}},"uid":"u","nsp":"/"}`
	}, decode: DecodeCluster, raw: true},
	{name: "cluster js (10), value", json: true, frame: func(p string) string {
		return `{"type":10,"data":{"requestId":"r","packet":` + p + `},"uid":"u","nsp":"/"}`
	}, decode: DecodeCluster},
	{name: "cluster js (8), socket data", json: true, frame: func(p string) string {
		return `{"type":8,"data":{"requestId":"r","sockets":[{"id":"s","handshake":{},"rooms":[],"data":` + p + `}]},"uid":"u","nsp":"/"}`
	}, decode: DecodeCluster},
	// Stream entries: JSON data, and base64 of MessagePack.
	{name: "stream entry js, data", json: true, frame: func(p string) string { return `{"packet":{"type":2,"data":` + p + `},"opts":{}}` }, decode: streamEntryJSON, packet: true},
	{name: "stream entry js, argument", json: true, frame: func(p string) string { return `{"packet":{"type":2,"data":["ev",` + p + `]},"opts":{}}` }, decode: streamEntryJSON, raw: true},
	{name: "stream entry js (10), value", json: true, frame: func(p string) string { return `{"requestId":"r","packet":` + p + `}` }, decode: streamEntryResponse},
	{name: "stream entry b64, data", frame: func(p string) string { return b64("\x82\xa6packet" + mpPacketHead + p + "\xa4opts\x80") }, decode: streamEntryMsgpack, packet: true, b64: true},
	{name: "stream entry b64, argument", frame: func(p string) string { return b64("\x82\xa6packet" + mpPacketHead + "\x92\xa2ev" + p + "\xa4opts\x80") }, decode: streamEntryMsgpack, raw: true, b64: true},
	{name: "stream entry b64 (10), value", frame: func(p string) string { return b64("\x82\xa9requestId\xa1r\xa6packet" + p) }, decode: streamEntryResponseMsgpack, b64: true},
}

// A shape is a payload generator and what decoding it may give.
type shape struct {
	name string
	mp   func(size int) string // MessagePack payload of about size bytes; nil: none
	js   func(size int) string // JSON payload
	// errs are the acceptable outcomes at each kind of site (nil in a list
	// is success).
	raw, packet, materialized []error
}

func u32(b []byte, n int) []byte { return binary.BigEndian.AppendUint32(b, uint32(n)) }

// nested repeats a container header, each claiming what is left of size.
func nested(size int, head func(b []byte, left int) []byte) string {
	var b []byte
	for len(b) < size {
		b = head(b, size-len(b))
	}
	return string(b)
}

func repeatJoin(n int, elem func(i int) string, sep, open, close string) string {
	var sb strings.Builder
	sb.WriteString(open)
	for i := range n {
		if i > 0 {
			sb.WriteString(sep)
		}
		sb.WriteString(elem(i))
	}
	sb.WriteString(close)
	return sb.String()
}

func mpArray(n int, elem func(i int) string) string {
	w := Writer{}
	w.ArrayLen(n)
	return repeatJoin(n, elem, "", string(w.B), "")
}

func mpMap(n int, entry func(i int) string) string {
	w := Writer{}
	w.MapLen(n)
	return repeatJoin(n, entry, "", string(w.B), "")
}

func mpStr(s string) string {
	w := Writer{}
	w.String(s)
	return string(w.B)
}

func smallObjectMP(i int) string {
	return "\x83\xa2id" + mpUint(i) + "\xa4name" + mpStr("user-"+strconv.Itoa(i)) + "\xa2ok\xc3"
}

func smallObjectJS(i int) string {
	return `{"id":` + strconv.Itoa(i) + `,"name":"user-` + strconv.Itoa(i) + `","ok":true}`
}

func mpUint(n int) string {
	w := Writer{}
	w.Int(int64(n))
	return string(w.B)
}

var (
	ok       = []error{nil}
	tooDeep  = []error{ErrTooDeep}
	length   = []error{ErrLength}
	budget   = []error{ErrBudget}
	deepOrLn = []error{ErrTooDeep, ErrLength}
	// A header claiming more than the frame holds is refused: by its
	// length, or by the budget when the claim is priced first, or by the
	// shape of what its claim swallowed.
	claims       = []error{ErrLength, ErrBudget, ErrShape}
	deepOrClaims = []error{ErrTooDeep, ErrLength, ErrBudget}
)

var shapes = []shape{
	{
		name: "array32 headers each claiming the rest",
		mp: func(size int) string {
			return nested(size, func(b []byte, left int) []byte { return u32(append(b, 0xdd), left-5) })
		},
		raw: deepOrLn, packet: deepOrClaims, materialized: deepOrLn,
	},
	{
		name: "map32 headers each claiming the rest",
		mp: func(size int) string {
			return nested(size, func(b []byte, left int) []byte { return append(u32(append(b, 0xdf), (left-7)/2), 0xa1, 'k') })
		},
		raw: deepOrLn, packet: deepOrClaims, materialized: deepOrLn,
	},
	{
		name: "str32 claiming more than the rest",
		mp:   func(size int) string { return string(u32([]byte{0xdb}, size+1000)) + strings.Repeat("s", size) },
		raw:  length, packet: length, materialized: length,
	},
	{
		name: "bin32 claiming more than the rest",
		mp:   func(size int) string { return string(u32([]byte{0xc6}, size+1000)) + strings.Repeat("b", size) },
		raw:  length, packet: length, materialized: length,
	},
	{
		name: "array claiming more elements than bytes",
		mp:   func(size int) string { return string(u32([]byte{0xdd}, size+1)) + strings.Repeat("\xc0", size) },
		raw:  claims, packet: claims, materialized: claims,
	},
	{
		name: "a string of the whole frame",
		mp:   func(size int) string { return mpStr(strings.Repeat("s", size)) },
		js:   func(size int) string { return `"` + strings.Repeat("s", size) + `"` },
		raw:  ok, packet: ok, materialized: ok,
	},
	{
		name: "an escaped string of the whole frame",
		js:   func(size int) string { return `"` + strings.Repeat(`\n\u00e9`, size/8) + `"` },
		raw:  ok, packet: ok, materialized: ok,
	},
	{
		name: "binary of the whole frame",
		mp: func(size int) string {
			w := Writer{}
			w.Binary(make([]byte, size))
			return string(w.B)
		},
		raw: ok, packet: ok, materialized: ok,
	},
	{
		name: "nesting deeper than MaxDepth",
		mp:   func(int) string { return strings.Repeat("\x91", MaxDepth+1) + "\xc0" },
		js:   func(int) string { return strings.Repeat("[", MaxDepth+2) + strings.Repeat("]", MaxDepth+2) },
		raw:  tooDeep, packet: tooDeep, materialized: tooDeep,
	},
	{
		name: "nesting just under MaxDepth",
		mp:   func(int) string { return strings.Repeat("\x91", MaxDepth-4) + "\xc0" },
		js:   func(int) string { return strings.Repeat("[", MaxDepth-4) + strings.Repeat("]", MaxDepth-4) },
		raw:  ok, packet: ok, materialized: ok,
	},
	{
		name: "many containers nested just under MaxDepth",
		mp: func(size int) string {
			deep := strings.Repeat("\x91", MaxDepth-4) + "\xc0"
			return mpArray(size/len(deep), func(int) string { return deep })
		},
		js: func(size int) string {
			deep := strings.Repeat("[", MaxDepth-4) + strings.Repeat("]", MaxDepth-4)
			return repeatJoin(size/(len(deep)+1), func(int) string { return deep }, ",", "[", "]")
		},
		raw: ok, packet: ok, materialized: budget,
	},
	{
		name: "1 MB array of nils",
		mp:   func(int) string { return mpArray(1<<20, func(int) string { return "\xc0" }) },
		js:   func(int) string { return repeatJoin(1<<20/5, func(int) string { return "null" }, ",", "[", "]") },
		// As JSON, 5 bytes a null: a []any of them fits the budget.
		raw: ok, packet: budget, materialized: []error{ErrBudget, nil},
	},
	{
		name: "array of empty arrays",
		mp:   func(size int) string { return mpArray(size, func(int) string { return "\x90" }) },
		js:   func(size int) string { return repeatJoin(size/3, func(int) string { return "[]" }, ",", "[", "]") },
		raw:  ok, packet: budget, materialized: budget,
	},
	{
		name: "map of empty maps",
		mp: func(size int) string {
			return mpMap(size/8, func(i int) string { return mpStr(fmt.Sprintf("k%05x", i)) + "\x80" })
		},
		js: func(size int) string {
			return repeatJoin(size/12, func(i int) string { return fmt.Sprintf(`"k%05x":{}`, i) }, ",", "{", "}")
		},
		raw: ok, packet: budget, materialized: budget,
	},
	{
		name: "map with integer keys",
		mp: func(size int) string {
			return mpMap(size/10, func(i int) string {
				return "\xcf" + string(binary.BigEndian.AppendUint64(nil, 1<<63+uint64(i))) + "\xc0"
			})
		},
		raw: ok, packet: budget, materialized: budget,
	},
	{
		name: "5,000 small objects",
		mp:   func(int) string { return mpArray(5000, smallObjectMP) },
		js:   func(int) string { return repeatJoin(5000, smallObjectJS, ",", "[", "]") },
		// As packet data, 5,000 arguments, each kept raw.
		raw: ok, packet: ok, materialized: budget,
	},
}

// budgetCase is one (site, shape) pair, with the outcomes allowed.
type budgetCase struct {
	site  *site
	shape *shape
	gen   func(int) string
	want  []error
}

func budgetCases() []budgetCase {
	var out []budgetCase
	for i := range sites {
		s := &sites[i]
		for j := range shapes {
			sh := &shapes[j]
			gen := sh.mp
			if s.json {
				gen = sh.js
			}
			if gen == nil {
				continue
			}
			want := sh.materialized
			switch {
			case s.raw:
				want = sh.raw
			case s.packet:
				want = sh.packet
			}
			out = append(out, budgetCase{site: s, shape: sh, gen: gen, want: want})
		}
	}
	return out
}

func isOneOf(err error, want []error) bool {
	for _, w := range want {
		if (w == nil && err == nil) || (w != nil && errors.Is(err, w)) {
			return true
		}
	}
	return false
}

func TestBudgetHostileShapes(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations of big frames")
	}
	var worst, worstSmall float64
	for _, c := range budgetCases() {
		name := c.site.name + ": " + c.shape.name
		frame := c.site.frame(c.gen(budgetSize))
		_, err := c.site.decode(frame)
		if !isOneOf(err, c.want) {
			t.Errorf("%s: %v, want one of %v", name, err, c.want)
			continue
		}
		runs := 1 // the decode of a big frame dwarfs the noise
		switch {
		case len(frame) < 4096:
			runs = 1000
		case err != nil:
			runs = 10 // little is allocated: average the noise away
		}
		alloc := allocBytes(runs, func() { _, _ = c.site.decode(frame) })
		limit := float64(BudgetFactor * len(frame))
		if len(frame) < budgetSize {
			limit = float64(Budget(len(frame)))
		}
		ratio := alloc / float64(len(frame))
		if len(frame) >= budgetSize {
			worst = max(worst, ratio)
		} else {
			worstSmall = max(worstSmall, alloc)
		}
		t.Logf("%-50s %-45s %8d B  %10.0f B/op  %5.2fx  %v", c.site.name, c.shape.name, len(frame), alloc, ratio, err)
		if alloc > limit {
			t.Errorf("%s: %.0f bytes allocated for a frame of %d (%.2fx), limit %.0f", name, alloc, len(frame), ratio, limit)
		}
		// A refused frame is refused before its values are allocated:
		// what it costs is the decoder's fixed overhead, and the bytes of
		// base64 data.
		refused := 2048.0
		if c.site.b64 {
			refused += float64(allocSize(base64.StdEncoding.DecodedLen(len(frame))))
		}
		if err != nil && alloc > refused {
			t.Errorf("%s: refused (%v) after allocating %.0f bytes", name, err, alloc)
		}
	}
	t.Logf("worst ratio %.2fx for frames of %d bytes or more; at most %.0f bytes for smaller ones", worst, budgetSize, worstSmall)
}

// Frames of ordinary traffic decode within their budget.
func TestBudgetLegalFrames(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations")
	}
	check := func(name, frame string, decode func(string) (*Message, error), verify func(*Message)) {
		t.Helper()
		m, err := decode(frame)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		verify(m)
		runs := 10000
		if len(frame) > 4096 {
			runs = 20
		}
		alloc := allocBytes(runs, func() { _, _ = decode(frame) })
		t.Logf("%-55s %8d B  %9.0f B/op  %5.2fx", name, len(frame), alloc, alloc/float64(len(frame)))
		if alloc > float64(Budget(len(frame))) {
			t.Errorf("%s: %.0f bytes allocated for %d", name, alloc, len(frame))
		}
	}

	// A chat message.
	chat := Packet{Type: PacketEvent, Data: []any{"chat message", map[string]any{"user": "alice", "text": "hello, world!", "ts": int64(1700000000000)}}, Nsp: "/"}
	b, _ := AppendClassicBroadcast(nil, "zsEYvl", &chat, &Opts{Rooms: []string{"room1"}})
	isChat := func(m *Message) {
		if d, ok := m.Packet.Data.([]any); !ok || len(d) != 2 || d[0] != "chat message" {
			t.Errorf("chat decoded as %#v", m.Packet.Data)
		}
	}
	check("chat message, classic broadcast", string(b), DecodeClassicBroadcast, isChat)
	cm := &Message{Type: TypeBroadcast, UID: "u", Nsp: "/", Packet: chat}
	b, _ = AppendCluster(nil, cm, FormatSharded)
	check("chat message, cluster JSON", string(b), DecodeCluster, isChat)
	b, _ = AppendCluster(nil, cm, FormatMsgpack)
	check("chat message, cluster MessagePack", string(b), DecodeCluster, isChat)
	_, data, _, _ := StreamFields(cm, true)
	check("chat message, stream entry", data, streamEntryJSON, isChat)

	// An argument of 5,000 small objects stays raw: it costs its box.
	objects := make([]any, 5000)
	for i := range objects {
		objects[i] = map[string]any{"id": i, "name": "user-" + strconv.Itoa(i), "ok": true}
	}
	big := Packet{Type: PacketEvent, Data: []any{"list", objects}, Nsp: "/"}
	isRaw := func(m *Message) {
		d := m.Packet.Data.([]any)
		switch d[1].(type) {
		case RawMsgpack, RawJSON:
		default:
			t.Errorf("argument materialized as %T", d[1])
		}
	}
	b, _ = AppendClassicBroadcast(nil, "zsEYvl", &big, &Opts{})
	check("5,000 objects argument, classic broadcast", string(b), DecodeClassicBroadcast, isRaw)
	bm := &Message{Type: TypeBroadcast, UID: "u", Nsp: "/", Packet: big}
	b, _ = AppendCluster(nil, bm, FormatSharded)
	check("5,000 objects argument, cluster JSON", string(b), DecodeCluster, isRaw)
	b, _ = AppendCluster(nil, bm, FormatMsgpack)
	check("5,000 objects argument, cluster MessagePack", string(b), DecodeCluster, isRaw)
	_, data, _, _ = StreamFields(bm, true)
	check("5,000 objects argument, stream entry", data, streamEntryJSON, isRaw)

	// A fetchSockets answer: 200 sockets with a browser's headers.
	fetch := &Message{Type: TypeFetchSocketsResponse, UID: "u", Nsp: "/", RequestID: "071e0462724de7ee", Sockets: realisticSockets(200)}
	is200 := func(m *Message) {
		if len(m.Sockets) != 200 || len(m.Sockets[199].Handshake.Headers) != 12 {
			t.Errorf("%d sockets", len(m.Sockets))
		}
	}
	b, _ = AppendClassicResponse(nil, fetch)
	check("fetchSockets, 200 sockets, classic JSON", string(b), DecodeClassicResponse, is200)
	b, _ = AppendCluster(nil, fetch, FormatSharded)
	check("fetchSockets, 200 sockets, cluster JSON", string(b), DecodeCluster, is200)
	b, _ = AppendCluster(nil, fetch, FormatMsgpack)
	check("fetchSockets, 200 sockets, cluster MessagePack", string(b), DecodeCluster, is200)
}

// realisticSockets returns n sockets as a browser's connections look: twelve
// headers, a query, rooms and some data.
func realisticSockets(n int) []Socket {
	out := make([]Socket, n)
	for i := range out {
		id := fmt.Sprintf("QF6W1EQ3isI60Ski%04d", i)
		out[i] = Socket{
			ID: id,
			Handshake: Handshake{
				Headers: map[string]any{
					"host":                     "chat.example.com",
					"connection":               "Upgrade",
					"pragma":                   "no-cache",
					"cache-control":            "no-cache",
					"user-agent":               "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
					"upgrade":                  "websocket",
					"origin":                   "https://chat.example.com",
					"sec-websocket-version":    "13",
					"accept-encoding":          "gzip, deflate, br, zstd",
					"accept-language":          "en-US,en;q=0.9,fr;q=0.8",
					"sec-websocket-key":        "ieFkY1kMIvuDBHx7ZvkoEg==",
					"sec-websocket-extensions": "permessage-deflate; client_max_window_bits",
				},
				Time:    "Sat Dec 05 2026 08:55:02 GMT+0000 (Coordinated Universal Time)",
				Address: "203.0.113." + strconv.Itoa(i%250), Issued: 1796460902296 + int64(i),
				URL:   "/socket.io/?EIO=4&transport=websocket",
				Query: map[string]any{"EIO": "4", "transport": "websocket"},
				Auth:  map[string]any{"token": "eyJhbGciOiJIUzI1NiJ9.c2Vzc2lvbi0" + strconv.Itoa(i)},
			},
			Rooms: []string{id, "room1", "user:" + strconv.Itoa(i)},
			Data:  map[string]any{"user": "user-" + strconv.Itoa(i), "n": i},
		}
	}
	return out
}
