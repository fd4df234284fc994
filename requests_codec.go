package redisadapter

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// The wire of cross-server requests and responses, as the Node adapter writes
// it: JSON for every type but BROADCAST (7) and BROADCAST_ACK (9), which are
// msgpack maps because they may carry binary. On receive, a frame starting
// with '{' is JSON and anything else msgpack, whatever its type. Struct field
// order is Node's key order.

// requestOut is an outgoing request.
type requestOut struct {
	UID       string   `json:"uid,omitempty"`
	RequestID string   `json:"requestId,omitempty"`
	Type      int      `json:"type"`
	Opts      *optsOut `json:"opts,omitempty"`
	Rooms     []string `json:"rooms,omitempty"`
	Close     *bool    `json:"close,omitempty"`
	Data      []any    `json:"data,omitempty"`
}

type optsOut struct {
	Rooms  []string `json:"rooms"`
	Except []string `json:"except"`
}

func roomsOut(rooms []socket.Room) []string {
	out := make([]string, len(rooms))
	for i, r := range rooms {
		out[i] = string(r)
	}
	return out
}

// fetchResponse answers REMOTE_FETCH. Sockets is always present, [] when
// nothing matches: Node's requester only counts answers that carry it.
type fetchResponse struct {
	RequestID string         `json:"requestId"`
	Sockets   []socketDetail `json:"sockets"`
}

type socketDetail struct {
	ID        string        `json:"id"`
	Handshake handshakeWire `json:"handshake"`
	Rooms     []string      `json:"rooms"`
	Data      any           `json:"data"`
}

// handshakeWire is a handshake as Node's socket.handshake looks in JSON:
// header and query values are strings (arrays only when repeated), time is a
// date string and issued is in milliseconds.
type handshakeWire struct {
	Headers map[string]any `json:"headers"`
	Time    string         `json:"time"`
	Address string         `json:"address"`
	Xdomain bool           `json:"xdomain"`
	Secure  bool           `json:"secure"`
	Issued  int64          `json:"issued"`
	URL     string         `json:"url"`
	Query   map[string]any `json:"query"`
	Auth    any            `json:"auth"`
}

type allRoomsResponse struct {
	RequestID string   `json:"requestId"`
	Rooms     []string `json:"rooms"`
}

type socketsResponse struct {
	RequestID string   `json:"requestId"`
	Sockets   []string `json:"sockets"`
}

type sseResponse struct {
	Type      int    `json:"type"`
	RequestID string `json:"requestId"`
	Data      any    `json:"data"`
}

type clientCountResponse struct {
	Type        int    `json:"type"`
	RequestID   string `json:"requestId"`
	ClientCount uint64 `json:"clientCount"`
}

// marshalJSON encodes v like JavaScript's JSON.stringify: no HTML escaping and
// no trailing newline.
func marshalJSON(e *encoder, v any) error {
	enc := json.NewEncoder(&e.buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	e.buf.Truncate(e.buf.Len() - 1)
	return nil
}

// appendAckRequest writes the BROADCAST (7) request in Node's key order:
// {uid, requestId, type, packet, opts}.
func (e *encoder) appendAckRequest(uid, id string, pkt *parser.Packet, rooms, except []socket.Room, flags wireFlags) error {
	enc := e.enc
	_ = enc.EncodeMapLen(5)
	_ = enc.EncodeString("uid")
	_ = enc.EncodeString(uid)
	_ = enc.EncodeString("requestId")
	_ = enc.EncodeString(id)
	_ = enc.EncodeString("type")
	_ = enc.EncodeInt(reqBroadcast)
	_ = enc.EncodeString("packet")
	p := *pkt
	p.Id = nil
	if err := e.appendPacket(&p, true); err != nil {
		return err
	}
	_ = enc.EncodeString("opts")
	_ = enc.EncodeMapLen(3)
	_ = enc.EncodeString("rooms")
	e.appendRooms(rooms)
	_ = enc.EncodeString("except")
	e.appendRooms(except)
	_ = enc.EncodeString("flags")
	e.appendFlags(flags)
	return nil
}

// appendAckResponse writes BROADCAST_ACK (9): {type, requestId, packet}.
func (e *encoder) appendAckResponse(id string, value any) error {
	enc := e.enc
	_ = enc.EncodeMapLen(3)
	_ = enc.EncodeString("type")
	_ = enc.EncodeInt(reqBroadcastAck)
	_ = enc.EncodeString("requestId")
	_ = enc.EncodeString(id)
	_ = enc.EncodeString("packet")
	return enc.Encode(value)
}

// message is a decoded request or response: the JSON or msgpack map.
type message map[string]any

// decodeMessage decodes a request or response frame.
func decodeMessage(payload []byte) (message, error) {
	if len(payload) == 0 {
		return nil, errEmptyFrame
	}
	if payload[0] == '{' {
		var m map[string]any
		if err := json.Unmarshal(payload, &m); err != nil {
			return nil, fmt.Errorf("%w: %v", errFrameShape, err)
		}
		return m, nil
	}
	fd := getDecoder(payload)
	defer putDecoder(fd)
	v, err := fd.value(0)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: request is a %T, not a map", errFrameShape, v)
	}
	if fd.r.Len() != 0 {
		return nil, errTrailing
	}
	return m, nil
}

func (m message) str(k string) string {
	s, _ := m[k].(string)
	return s
}

func (m message) has(k string) bool {
	_, ok := m[k]
	return ok
}

// num returns a numeric field; ok is false when it is missing or not a number.
func (m message) num(k string) (float64, bool) {
	switch n := m[k].(type) {
	case float64:
		return n, true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float32:
		return float64(n), true
	}
	return 0, false
}

func (m message) typ() int {
	n, ok := m.num("type")
	if !ok || n != math.Trunc(n) || n < 0 || n > 100 {
		return -1
	}
	return int(n)
}

// roomList converts a JSON or msgpack array of rooms (strings or numbers).
func roomList(v any) ([]socket.Room, error) {
	if v == nil {
		return nil, nil
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: rooms is a %T", errFrameShape, v)
	}
	out := make([]socket.Room, 0, len(arr))
	for _, r := range arr {
		switch t := r.(type) {
		case string:
			out = append(out, socket.Room(t))
		default:
			s, ok := numberString(t)
			if !ok {
				return nil, fmt.Errorf("%w: room of type %T", errFrameShape, r)
			}
			out = append(out, socket.Room(s))
		}
	}
	return out, nil
}

// broadcastOptions converts a request's opts into the server's options.
func (m message) broadcastOptions() (*socket.BroadcastOptions, error) {
	opts := &socket.BroadcastOptions{Rooms: types.NewSet[socket.Room](), Except: types.NewSet[socket.Room](), Flags: &socket.BroadcastFlags{}}
	o, ok := m["opts"].(map[string]any)
	if !ok {
		if m["opts"] == nil {
			return opts, nil
		}
		return nil, fmt.Errorf("%w: opts is a %T", errFrameShape, m["opts"])
	}
	rooms, err := roomList(o["rooms"])
	if err != nil {
		return nil, err
	}
	except, err := roomList(o["except"])
	if err != nil {
		return nil, err
	}
	opts.Rooms.Add(rooms...)
	opts.Except.Add(except...)
	return opts, nil
}

// packetOf converts the packet of a BROADCAST (7) request.
func (m message) packetOf(nsp string) (*parser.Packet, error) {
	pm, ok := m["packet"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: packet is a %T", errFrameShape, m["packet"])
	}
	p := &parser.Packet{Type: parser.EVENT, Nsp: nsp, Data: pm["data"]}
	if n, ok := message(pm).num("type"); ok {
		t, ok := packetType(int64(n))
		if !ok {
			return nil, fmt.Errorf("%w: packet type %v", errFrameShape, n)
		}
		p.Type = t
	}
	if _, ok := p.Data.([]any); !ok {
		return nil, fmt.Errorf("%w: packet data is a %T", errFrameShape, p.Data)
	}
	return p, nil
}

// detailOf converts a local socket into the wire shape of a fetchSockets
// answer.
func detailOf(s socket.SocketDetails) socketDetail {
	d := socketDetail{ID: string(s.Id()), Rooms: []string{}, Data: s.Data()}
	if r := s.Rooms(); r != nil {
		d.Rooms = roomsOut(r.Keys())
		sort.Strings(d.Rooms)
	}
	if h := s.Handshake(); h != nil {
		d.Handshake = handshakeWire{
			Headers: lowerKeys(flatten(h.Headers)), Time: h.Time, Address: h.Address, Xdomain: h.Xdomain,
			Secure: h.Secure, Issued: h.Issued, URL: h.Url, Query: flatten(h.Query), Auth: h.Auth,
		}
	}
	if d.Handshake.Auth == nil {
		d.Handshake.Auth = map[string]any{}
	}
	return d
}

// flatten turns Go's map[string][]string into Node's shape: one value is a
// string, several are an array.
func flatten(m map[string][]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch len(v) {
		case 0:
			out[k] = ""
		case 1:
			out[k] = v[0]
		default:
			out[k] = v
		}
	}
	return out
}

// lowerKeys gives header names Node's lower-case form.
func lowerKeys(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

// canonicalKeys gives header names Go's canonical form, as net/http does.
func canonicalKeys(m map[string][]string) map[string][]string {
	out := make(map[string][]string, len(m))
	for k, v := range m {
		ck := http.CanonicalHeaderKey(k)
		out[ck] = append(out[ck], v...)
	}
	return out
}

// unflatten reads header or query values that are strings or arrays of
// strings.
func unflatten(v any) map[string][]string {
	m, _ := v.(map[string]any)
	out := make(map[string][]string, len(m))
	for k, val := range m {
		switch t := val.(type) {
		case string:
			out[k] = []string{t}
		case []any:
			for _, e := range t {
				out[k] = append(out[k], fmt.Sprint(e))
			}
		case nil:
		default:
			out[k] = []string{fmt.Sprint(t)}
		}
	}
	return out
}

// remoteSocket is a socket of another server, as its fetchSockets answer
// described it. It satisfies socket.SocketDetails.
type remoteSocket struct {
	id        socket.SocketId
	handshake *socket.Handshake
	rooms     *types.Set[socket.Room]
	data      any
}

func (r *remoteSocket) Id() socket.SocketId            { return r.id }
func (r *remoteSocket) Handshake() *socket.Handshake   { return r.handshake }
func (r *remoteSocket) Rooms() *types.Set[socket.Room] { return r.rooms }
func (r *remoteSocket) Data() any                      { return r.data }

// remoteSocketOf decodes one element of a fetchSockets answer, from Go or
// Node.
func remoteSocketOf(v any) (*remoteSocket, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: socket is a %T", errFrameShape, v)
	}
	id, _ := m["id"].(string)
	if id == "" {
		return nil, fmt.Errorf("%w: socket without id", errFrameShape)
	}
	rooms, err := roomList(m["rooms"])
	if err != nil {
		return nil, err
	}
	r := &remoteSocket{id: socket.SocketId(id), rooms: types.NewSet(rooms...), data: m["data"], handshake: &socket.Handshake{}}
	if h, ok := m["handshake"].(map[string]any); ok {
		hm := message(h)
		r.handshake.Headers = canonicalKeys(unflatten(h["headers"]))
		r.handshake.Query = unflatten(h["query"])
		r.handshake.Address = hm.str("address")
		r.handshake.Url = hm.str("url")
		r.handshake.Xdomain, _ = h["xdomain"].(bool)
		r.handshake.Secure, _ = h["secure"].(bool)
		r.handshake.Auth = h["auth"]
		if n, ok := hm.num("issued"); ok {
			r.handshake.Issued = int64(n)
		}
		switch t := h["time"].(type) {
		case string:
			r.handshake.Time = t
		case time.Time:
			r.handshake.Time = t.String()
		}
	}
	return r, nil
}

// encodeJSONFrame encodes v into a pooled encoder.
func encodeJSONFrame(v any) (*encoder, error) {
	e := getEncoder()
	if err := marshalJSON(e, v); err != nil {
		putEncoder(e)
		return nil, err
	}
	return e, nil
}

// jsonSafe replaces values encoding/json cannot encode (binary readers are
// already normalized) so that one odd value does not lose a whole answer.
func jsonSafe(v any) any {
	if _, err := json.Marshal(v); err == nil {
		return v
	}
	return fmt.Sprint(v)
}
