package wire

import (
	"encoding/base64"
	"strconv"
)

// The cluster protocol: socket.io-adapter's ClusterAdapter messages
// {type, data, uid, nsp}, in this key order, shared by createShardedAdapter
// (@socket.io/redis-adapter 8.x) and @socket.io/redis-streams-adapter 0.3.x.
// The data of each type, in Node's key order:
//
//	3  BROADCAST               {packet: {type, data}, [requestId], opts: {rooms, except, flags}}
//	4  SOCKETS_JOIN, 5 LEAVE   {opts, rooms}
//	6  DISCONNECT_SOCKETS      {opts, close}
//	7  FETCH_SOCKETS           {opts, requestId}
//	8  FETCH_SOCKETS_RESPONSE  {requestId, sockets}
//	9  SERVER_SIDE_EMIT        {[requestId], packet: [event, ...args]}
//	10 SERVER_SIDE_EMIT_RESPONSE, 12 BROADCAST_ACK  {requestId, packet: value}
//	11 BROADCAST_CLIENT_COUNT  {requestId, clientCount}
//	1, 2, 13                   no data

// ClusterFormat selects how a cluster message is written.
type ClusterFormat int

const (
	// FormatSharded is createShardedAdapter's choice: JSON, unless the type
	// may carry binary and the data holds some, then MessagePack.
	FormatSharded ClusterFormat = iota
	// FormatMsgpack is always MessagePack (the streams adapter's pub/sub
	// messages).
	FormatMsgpack
)

// mayCarryBinary reports whether Node encodes the data of type t in
// MessagePack when it holds binary.
func mayCarryBinary(t Type) bool {
	switch t {
	case TypeBroadcast, TypeBroadcastAck, TypeFetchSocketsResponse, TypeServerSideEmit, TypeServerSideEmitResponse:
		return true
	}
	return false
}

// dataHasBinary reports whether the data of m holds binary.
func dataHasBinary(m *Message) bool {
	switch m.Type {
	case TypeBroadcast:
		return HasBinary(m.Packet.Data)
	case TypeServerSideEmit:
		return HasBinary(m.Args)
	case TypeServerSideEmitResponse, TypeBroadcastAck:
		return HasBinary(m.Value)
	case TypeFetchSocketsResponse:
		for i := range m.Sockets {
			if HasBinary(m.Sockets[i].Data) {
				return true
			}
		}
	}
	return false
}

// hasData reports whether a message of type t has a data field.
func hasData(t Type) bool {
	return t != TypeInitialHeartbeat && t != TypeHeartbeat && t != TypeAdapterClose
}

// writeClusterData writes the data of m.
func writeClusterData(w *Writer, m *Message) error {
	opts := func() {
		w.String("opts")
		writeOpts(w, &m.Opts, true)
	}
	id := func() {
		w.String("requestId")
		w.String(m.RequestID)
	}
	switch m.Type {
	case TypeBroadcast:
		if m.RequestID != "" {
			w.MapLen(3)
		} else {
			w.MapLen(2)
		}
		w.String("packet")
		p := m.Packet
		if m.RequestID != "" {
			// Node publishes a broadcast with acknowledgements before
			// the packet gets its id; a plain broadcast keeps the id of
			// a socket.emit with an ack.
			p.ID = nil
		}
		if err := writePacket(w, &p, false); err != nil {
			return err
		}
		if m.RequestID != "" {
			id()
		}
		opts()
	case TypeSocketsJoin, TypeSocketsLeave:
		w.MapLen(2)
		opts()
		w.String("rooms")
		w.Strings(m.Rooms)
	case TypeDisconnectSockets:
		w.MapLen(2)
		opts()
		w.String("close")
		w.Bool(m.Close)
	case TypeFetchSockets:
		w.MapLen(2)
		opts()
		id()
	case TypeFetchSocketsResponse:
		w.MapLen(2)
		id()
		w.String("sockets")
		w.ArrayLen(len(m.Sockets))
		for i := range m.Sockets {
			if err := writeSocket(w, &m.Sockets[i]); err != nil {
				return err
			}
		}
	case TypeServerSideEmit:
		if m.RequestID != "" {
			w.MapLen(2)
			id()
		} else {
			w.MapLen(1)
		}
		w.String("packet")
		return w.Value(m.Args)
	case TypeServerSideEmitResponse, TypeBroadcastAck:
		w.MapLen(2)
		id()
		w.String("packet")
		return w.Value(m.Value)
	case TypeBroadcastClientCount:
		w.MapLen(2)
		id()
		w.String("clientCount")
		w.Uint(m.ClientCount)
	default:
		return shapeErr("type %d has no cluster form", m.Type)
	}
	return nil
}

// writeCluster writes the whole message {type, data, uid, nsp}.
func writeCluster(w *Writer, m *Message) error {
	if hasData(m.Type) {
		w.MapLen(4)
	} else {
		w.MapLen(3)
	}
	w.String("type")
	w.Int(int64(m.Type))
	if hasData(m.Type) {
		w.String("data")
		if err := writeClusterData(w, m); err != nil {
			return err
		}
	}
	w.String("uid")
	w.String(m.UID)
	w.String("nsp")
	w.String(m.Nsp)
	return nil
}

// AppendCluster appends the message m (with its UID and Nsp) in format f.
func AppendCluster(dst []byte, m *Message, f ClusterFormat) ([]byte, error) {
	if f == FormatMsgpack || (mayCarryBinary(m.Type) && dataHasBinary(m)) {
		w := Writer{B: dst}
		err := writeCluster(&w, m)
		return w.B, err
	}
	return asJSON(dst, func(w *Writer) error { return writeCluster(w, m) })
}

// DecodeCluster decodes a message: JSON when it starts with '{', MessagePack
// otherwise.
func DecodeCluster(frame string) (*Message, error) {
	r, err := newValueReader(frame)
	if err != nil {
		return nil, err
	}
	m := &Message{}
	// The data is decoded in place when the type came first (Node's order),
	// else once the type is known.
	typ, dataAt, decodedAs, packet := -1, -1, -1, false
	err = r.object(func(k string) error {
		var err error
		switch k {
		case "type":
			typ, err = typeNumber(r)
		case "uid":
			m.UID, err = optString(r)
		case "nsp":
			m.Nsp, err = optString(r)
		case "data":
			dataAt = r.pos()
			if typ == -1 {
				return r.skip()
			}
			m.Type, decodedAs = Type(typ), typ
			packet, err = readClusterData(r, m)
		default:
			err = r.skip()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	if typ < int(TypeInitialHeartbeat) || typ > int(TypeAdapterClose) {
		return nil, shapeErr("message type %d", typ)
	}
	if dataAt >= 0 && decodedAs != typ {
		*m = Message{Type: Type(typ), UID: m.UID, Nsp: m.Nsp}
		r.seek(dataAt)
		if packet, err = readClusterData(r, m); err != nil {
			return nil, err
		}
	}
	m.Type = Type(typ)
	if err := checkCluster(m, dataAt >= 0, packet); err != nil {
		return nil, err
	}
	return m, nil
}

// checkCluster checks what a message of its type must carry: its data
// (Node's receivers throw without it), a broadcast its packet, requests and
// responses their requestId.
func checkCluster(m *Message, data, packet bool) error {
	if hasData(m.Type) && !data {
		return shapeErr("message of type %d without data", m.Type)
	}
	switch m.Type {
	case TypeBroadcast:
		if !packet {
			return shapeErr("broadcast without packet")
		}
	case TypeFetchSockets, TypeFetchSocketsResponse, TypeServerSideEmitResponse,
		TypeBroadcastClientCount, TypeBroadcastAck:
		if m.RequestID == "" {
			return shapeErr("message of type %d without requestId", m.Type)
		}
	case TypeServerSideEmit:
		if len(m.Args) == 0 {
			return shapeErr("serverSideEmit without packet")
		}
	}
	return nil
}

// readClusterData decodes the data of a message whose Type is set, and
// reports whether it held a packet.
func readClusterData(r valueReader, m *Message) (packet bool, err error) {
	err = r.object(func(k string) error {
		var err error
		switch k {
		case "requestId":
			m.RequestID, err = optString(r)
		case "opts":
			err = readOpts(r, &m.Opts)
		case "rooms":
			m.Rooms, err = r.rooms()
		case "close":
			m.Close, err = r.truthy()
		case "clientCount":
			m.ClientCount, err = readCount(r)
		case "sockets":
			err = readSockets(r, m, false)
		case "packet":
			packet = true
			switch m.Type {
			case TypeBroadcast:
				err = readPacket(r, &m.Packet)
			case TypeServerSideEmit:
				var v any
				v, err = r.any()
				args, ok := v.([]any)
				if err == nil && !ok {
					err = shapeErr("serverSideEmit packet is not an array")
				}
				m.Args = args
			default:
				m.Value, err = r.any()
			}
		default:
			err = r.skip()
		}
		return err
	})
	return packet, err
}

// StreamFields returns the type and data fields of m as the streams adapter
// writes them in a stream entry: the data is JSON, or base64 of MessagePack
// when binaryOK, the type may carry binary and the data holds some. hasData
// is false for the types without data.
func StreamFields(m *Message, binaryOK bool) (typ, data string, hasData_ bool, err error) {
	typ = strconv.Itoa(int(m.Type))
	if !hasData(m.Type) {
		return typ, "", false, nil
	}
	if binaryOK && mayCarryBinary(m.Type) && dataHasBinary(m) {
		w := Writer{}
		if err := writeClusterData(&w, m); err != nil {
			return "", "", false, err
		}
		return typ, base64.StdEncoding.EncodeToString(w.B), true, nil
	}
	b, err := asJSON(nil, func(w *Writer) error { return writeClusterData(w, m) })
	return typ, BytesString(b), true, err
}

// DecodeStreamEntry decodes a stream entry's fields. A data field starting
// with '{' is JSON, anything else base64 of MessagePack, whose decoded bytes
// (three quarters of the field) are the frame the budget applies to.
func DecodeStreamEntry(uid, nsp, typ, data string) (*Message, error) {
	n, err := strconv.Atoi(typ)
	if err != nil || n < int(TypeInitialHeartbeat) || n > int(TypeAdapterClose) {
		return nil, shapeErr("entry type %q", typ)
	}
	m := &Message{Type: Type(n), UID: uid, Nsp: nsp}
	if data == "" {
		if err := checkCluster(m, false, false); err != nil {
			return nil, err
		}
		return m, nil
	}
	var r valueReader
	if data[0] == '{' {
		r = jsonValueReader{newJSONReader(data)}
	} else {
		b, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return nil, shapeErr("entry data is neither JSON nor base64: %v", err)
		}
		if len(b) == 0 {
			return nil, ErrEmpty
		}
		r = msgpackReader{newReader(BytesString(b))}
	}
	packet, err := readClusterData(r, m)
	if err != nil {
		return nil, err
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	if err := checkCluster(m, true, packet); err != nil {
		return nil, err
	}
	return m, nil
}
