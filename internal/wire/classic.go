package wire

import (
	"math"
	"sync"
)

// The classic protocol of @socket.io/redis-adapter's createAdapter (8.x),
// byte for byte:
//
//   - a broadcast is the MessagePack array [uid, packet, opts], published on
//     key#nsp# or, for exactly one room, key#nsp#room#;
//   - requests go to key-request#nsp#, as JSON, except a broadcast with
//     acknowledgements (type 7), which is a MessagePack map;
//   - responses go to key-response#nsp# (or key-response#nsp#uid#), as JSON,
//     except an acknowledgement (type 9), a MessagePack map.
//
// On receive, a request or response starting with '{' is JSON and anything
// else MessagePack, whatever its type.

// Classic request types (RequestType in @socket.io/redis-adapter).
const (
	classicSockets              = 0
	classicAllRooms             = 1
	classicRemoteJoin           = 2
	classicRemoteLeave          = 3
	classicRemoteDisconnect     = 4
	classicRemoteFetch          = 5
	classicServerSideEmit       = 6
	classicBroadcast            = 7
	classicBroadcastClientCount = 8
	classicBroadcastAck         = 9
)

// ClassicTypes lists the classic request types, for tests and docs.
var ClassicTypes = map[int]Type{
	classicSockets:              TypeSockets,
	classicAllRooms:             TypeAllRooms,
	classicRemoteJoin:           TypeSocketsJoin,
	classicRemoteLeave:          TypeSocketsLeave,
	classicRemoteDisconnect:     TypeDisconnectSockets,
	classicRemoteFetch:          TypeFetchSockets,
	classicServerSideEmit:       TypeServerSideEmit,
	classicBroadcast:            TypeBroadcast,
	classicBroadcastClientCount: TypeBroadcastClientCount,
	classicBroadcastAck:         TypeBroadcastAck,
}

var scratchPool = sync.Pool{New: func() any { return &Writer{B: make([]byte, 0, 512), SortKeys: true} }}

// asJSON writes a message with build in MessagePack, then appends it to dst
// transcoded to JSON, so that one writer serves both encodings. Map keys are
// sorted, as encoding/json sorts them.
func asJSON(dst []byte, build func(w *Writer) error) ([]byte, error) {
	w := scratchPool.Get().(*Writer)
	defer func() {
		if cap(w.B) <= 64<<10 {
			w.B = w.B[:0]
			scratchPool.Put(w)
		}
	}()
	w.B = w.B[:0]
	if err := build(w); err != nil {
		return nil, err
	}
	r := &reader{s: BytesString(w.B), budget: math.MaxInt, jsDates: true}
	return r.appendJSON(dst, 0)
}

// writePacket writes {type, data[, nsp][, id]} in Node's key order.
func writePacket(w *Writer, p *Packet, withNsp bool) error {
	n := 2
	if withNsp {
		n++
	}
	if p.ID != nil {
		n++
	}
	w.MapLen(n)
	w.String("type")
	w.Int(int64(p.Type))
	w.String("data")
	if err := w.Value(p.Data); err != nil {
		return err
	}
	if withNsp {
		w.String("nsp")
		w.String(p.Nsp)
	}
	if p.ID != nil {
		w.String("id")
		w.Uint(*p.ID)
	}
	return nil
}

// writeOpts writes {rooms, except[, flags]}.
func writeOpts(w *Writer, o *Opts, withFlags bool) {
	if withFlags {
		w.MapLen(3)
	} else {
		w.MapLen(2)
	}
	w.String("rooms")
	w.Strings(o.Rooms)
	w.String("except")
	w.Strings(o.Except)
	if withFlags {
		w.String("flags")
		writeFlags(w, &o.Flags)
	}
}

// writeFlags writes the flags that are set, the timeout in milliseconds.
func writeFlags(w *Writer, f *Flags) {
	n := 0
	if f.Volatile {
		n++
	}
	if f.Compress != nil {
		n++
	}
	if f.Timeout != nil {
		n++
	}
	w.MapLen(n)
	if f.Volatile {
		w.String("volatile")
		w.Bool(true)
	}
	if f.Compress != nil {
		w.String("compress")
		w.Bool(*f.Compress)
	}
	if f.Timeout != nil {
		w.String("timeout")
		w.Int(f.Timeout.Milliseconds())
	}
}

// writeSocket writes one socket of a fetchSockets answer, with the key order
// of Node's socket.handshake.
func writeSocket(w *Writer, s *Socket) error {
	w.MapLen(4)
	w.String("id")
	w.String(s.ID)
	w.String("handshake")
	h := &s.Handshake
	w.MapLen(9)
	w.String("headers")
	if err := w.Value(mapOrEmpty(h.Headers)); err != nil {
		return err
	}
	w.String("time")
	w.String(h.Time)
	w.String("address")
	w.String(h.Address)
	w.String("xdomain")
	w.Bool(h.Xdomain)
	w.String("secure")
	w.Bool(h.Secure)
	w.String("issued")
	w.Int(h.Issued)
	w.String("url")
	w.String(h.URL)
	w.String("query")
	if err := w.Value(mapOrEmpty(h.Query)); err != nil {
		return err
	}
	w.String("auth")
	auth := h.Auth
	if auth == nil {
		auth = map[string]any{}
	}
	if err := w.Value(auth); err != nil {
		return err
	}
	w.String("rooms")
	w.Strings(s.Rooms)
	w.String("data")
	return w.Value(s.Data)
}

func mapOrEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// AppendClassicBroadcast appends the broadcast frame [uid, packet, opts]
// (the packet with its nsp, opts with rooms, except and flags).
func AppendClassicBroadcast(dst []byte, uid string, p *Packet, o *Opts) ([]byte, error) {
	w := Writer{B: dst}
	w.ArrayLen(3)
	w.String(uid)
	if err := writePacket(&w, p, true); err != nil {
		return dst, err
	}
	writeOpts(&w, o, true)
	return w.B, nil
}

// ClassicBroadcastPrefix returns the first bytes of every broadcast frame of
// the server uid, which recognise its own frames without decoding them.
func ClassicBroadcastPrefix(uid string) string {
	w := Writer{}
	w.ArrayLen(3)
	w.String(uid)
	return string(w.B)
}

// AppendClassicRequest appends a request of m.Type: a MessagePack map for a
// broadcast with acknowledgements, JSON for every other type.
func AppendClassicRequest(dst []byte, m *Message) ([]byte, error) {
	if m.Type == TypeBroadcast {
		w := Writer{B: dst}
		w.MapLen(5)
		w.String("uid")
		w.String(m.UID)
		w.String("requestId")
		w.String(m.RequestID)
		w.String("type")
		w.Int(classicBroadcast)
		w.String("packet")
		p := m.Packet
		p.ID = nil
		if err := writePacket(&w, &p, true); err != nil {
			return dst, err
		}
		w.String("opts")
		writeOpts(&w, &m.Opts, true)
		return w.B, nil
	}
	return asJSON(dst, func(w *Writer) error {
		fields := 2 // uid, type
		if m.UID == "" {
			fields--
		}
		if m.RequestID != "" {
			fields++
		}
		switch m.Type {
		case TypeSocketsJoin, TypeSocketsLeave, TypeDisconnectSockets:
			fields += 2
		case TypeFetchSockets, TypeServerSideEmit:
			fields++
		}
		w.MapLen(fields)
		if m.UID != "" {
			w.String("uid")
			w.String(m.UID)
		}
		if m.RequestID != "" {
			w.String("requestId")
			w.String(m.RequestID)
		}
		w.String("type")
		w.Int(int64(classicNumber(m.Type)))
		switch m.Type {
		case TypeSocketsJoin, TypeSocketsLeave:
			w.String("opts")
			writeOpts(w, &m.Opts, false)
			w.String("rooms")
			w.Strings(m.Rooms)
		case TypeDisconnectSockets:
			w.String("opts")
			writeOpts(w, &m.Opts, false)
			w.String("close")
			w.Bool(m.Close)
		case TypeFetchSockets:
			w.String("opts")
			writeOpts(w, &m.Opts, false)
		case TypeServerSideEmit:
			w.String("data")
			return w.Value(m.Args)
		}
		return nil
	})
}

func classicNumber(t Type) int {
	for n, ct := range ClassicTypes {
		if ct == t {
			return n
		}
	}
	return -1
}

// AppendClassicResponse appends a response of m.Type: a MessagePack map for
// an acknowledgement, JSON for every other type.
func AppendClassicResponse(dst []byte, m *Message) ([]byte, error) {
	if m.Type == TypeBroadcastAck {
		w := Writer{B: dst}
		w.MapLen(3)
		w.String("type")
		w.Int(classicBroadcastAck)
		w.String("requestId")
		w.String(m.RequestID)
		w.String("packet")
		return w.B, w.Value(m.Value)
	}
	return asJSON(dst, func(w *Writer) error {
		switch m.Type {
		case TypeServerSideEmitResponse:
			w.MapLen(3)
			w.String("type")
			w.Int(classicServerSideEmit)
			w.String("requestId")
			w.String(m.RequestID)
			w.String("data")
			return w.Value(m.Value)
		case TypeBroadcastClientCount:
			w.MapLen(3)
			w.String("type")
			w.Int(classicBroadcastClientCount)
			w.String("requestId")
			w.String(m.RequestID)
			w.String("clientCount")
			w.Uint(m.ClientCount)
			return nil
		}
		if m.Type == TypeLegacyJoinResponse {
			w.MapLen(1)
		} else {
			w.MapLen(2)
		}
		w.String("requestId")
		w.String(m.RequestID)
		switch m.Type {
		case TypeFetchSocketsResponse:
			w.String("sockets")
			w.ArrayLen(len(m.Sockets))
			for i := range m.Sockets {
				if err := writeSocket(w, &m.Sockets[i]); err != nil {
					return err
				}
			}
		case TypeAllRoomsResponse:
			w.String("rooms")
			w.Strings(m.Rooms)
		case TypeSocketsResponse:
			w.String("sockets")
			w.Strings(m.SocketIDs)
		}
		return nil
	})
}

// DecodeClassicBroadcast decodes a broadcast frame [uid, packet, opts]. A
// packet without nsp is in "/", as in Node.
func DecodeClassicBroadcast(frame string) (*Message, error) {
	if frame == "" {
		return nil, ErrEmpty
	}
	r := newReader(frame)
	n, err := r.arrayLen(false)
	if err != nil {
		return nil, err
	}
	if n != 3 {
		return nil, shapeErr("broadcast array of %d elements", n)
	}
	m := &Message{Type: TypeBroadcast}
	if m.UID, err = r.str(); err != nil {
		return nil, err
	}
	vr := msgpackReader{r}
	if err := readPacket(vr, &m.Packet); err != nil {
		return nil, err
	}
	if m.Packet.Nsp == "" {
		m.Packet.Nsp = "/"
	}
	m.Nsp = m.Packet.Nsp
	if err := readOpts(vr, &m.Opts); err != nil {
		return nil, err
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeClassicRequest decodes a request (JSON or MessagePack).
func DecodeClassicRequest(frame string) (*Message, error) {
	r, err := newValueReader(frame)
	if err != nil {
		return nil, err
	}
	m := &Message{}
	typ, hasOpts, hasPacket := -1, false, false
	err = r.object(func(k string) error {
		var err error
		switch k {
		case "uid":
			m.UID, err = optString(r)
		case "requestId":
			m.RequestID, err = optString(r)
		case "type":
			typ, err = typeNumber(r)
		case "opts":
			hasOpts = true
			err = readOpts(r, &m.Opts)
		case "rooms":
			m.Rooms, err = r.rooms()
		case "close":
			m.Close, err = r.truthy()
		case "data":
			var v any
			v, err = r.any()
			args, ok := v.([]any)
			if err == nil && (!ok || len(args) == 0) {
				return shapeErr("serverSideEmit data is not a non-empty array")
			}
			m.Args = args
		case "packet":
			hasPacket = true
			err = readPacket(r, &m.Packet)
		case "sid":
			m.SID, err = optString(r)
		case "room":
			m.Room, err = optString(r)
		default:
			err = r.skip()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	t, ok := ClassicTypes[typ]
	if !ok {
		return nil, shapeErr("request type %d", typ)
	}
	m.Type = t
	switch t {
	case TypeSocketsJoin, TypeSocketsLeave:
		m.Legacy = !hasOpts
	case TypeBroadcast:
		if m.RequestID == "" || !hasPacket {
			return nil, shapeErr("broadcast request without requestId or packet")
		}
	case TypeServerSideEmit:
		if m.Args == nil {
			return nil, shapeErr("serverSideEmit without data")
		}
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeClassicResponse decodes a response (JSON or MessagePack). Classic
// responses to fetchSockets, allRooms and the legacy requests carry no type:
// it is told by their fields.
func DecodeClassicResponse(frame string) (*Message, error) {
	r, err := newValueReader(frame)
	if err != nil {
		return nil, err
	}
	m := &Message{}
	typ := -1
	var hasSockets, hasRooms bool
	err = r.object(func(k string) error {
		var err error
		switch k {
		case "requestId":
			m.RequestID, err = optString(r)
		case "type":
			typ, err = typeNumber(r)
		case "sockets":
			hasSockets = true
			err = readSockets(r, m, true)
		case "rooms":
			hasRooms = true
			m.Rooms, err = r.rooms()
		case "data", "packet":
			m.Value, err = r.any()
		case "clientCount":
			m.ClientCount, err = readCount(r)
		default:
			err = r.skip()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if m.RequestID == "" {
		return nil, shapeErr("response without requestId")
	}
	switch {
	case typ == classicServerSideEmit:
		m.Type = TypeServerSideEmitResponse
	case typ == classicBroadcastClientCount:
		m.Type = TypeBroadcastClientCount
	case typ == classicBroadcastAck:
		m.Type = TypeBroadcastAck
	case typ != -1:
		return nil, shapeErr("response type %d", typ)
	case hasSockets && len(m.SocketIDs) > 0:
		m.Type = TypeSocketsResponse
	case hasSockets:
		m.Type = TypeFetchSocketsResponse
	case hasRooms:
		m.Type = TypeAllRoomsResponse
	default:
		m.Type = TypeLegacyJoinResponse
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return m, nil
}
