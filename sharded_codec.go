package redisadapter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"unicode/utf16"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// The wire of the sharded adapter: the ClusterAdapter messages of
// socket.io-adapter 2.5 (used by createShardedAdapter of
// @socket.io/redis-adapter 8.x), {type, data, uid, nsp} in this key order.
// A message is JSON, unless its type may carry binary (BROADCAST,
// BROADCAST_ACK, FETCH_SOCKETS_RESPONSE, SERVER_SIDE_EMIT,
// SERVER_SIDE_EMIT_RESPONSE) and its data holds binary: then the whole message
// is one msgpack map, as notepack.io writes it. On receive, a frame starting
// with '{' is JSON and anything else msgpack (decodeMessage).

// ClusterAdapter message types (socket.io-adapter lib/cluster-adapter.ts).
const (
	shBroadcast              = 3
	shSocketsJoin            = 4
	shSocketsLeave           = 5
	shDisconnectSockets      = 6
	shFetchSockets           = 7
	shFetchSocketsResponse   = 8
	shServerSideEmit         = 9
	shServerSideEmitResponse = 10
	shBroadcastClientCount   = 11
	shBroadcastAck           = 12
)

// mayContainBinary reports whether Node encodes a message of type t with
// msgpack when its data holds binary.
func mayContainBinary(t int) bool {
	switch t {
	case shBroadcast, shBroadcastAck, shFetchSocketsResponse, shServerSideEmit, shServerSideEmitResponse:
		return true
	}
	return false
}

// kv is one entry of an omap.
type kv struct {
	k string
	v any
}

// omap is a map that keeps its keys in insertion order, like a JavaScript
// object, in both JSON and msgpack.
type omap []kv

// EncodeMsgpack implements msgpack.CustomEncoder.
func (m omap) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeMapLen(len(m)); err != nil {
		return err
	}
	for _, e := range m {
		if err := enc.EncodeString(e.k); err != nil {
			return err
		}
		if err := enc.Encode(e.v); err != nil {
			return err
		}
	}
	return nil
}

// writeJSON writes v as JSON.stringify would (no HTML escaping), keeping the
// key order of omaps.
func writeJSON(buf *bytes.Buffer, v any) error {
	switch t := v.(type) {
	case omap:
		buf.WriteByte('{')
		for i, e := range t {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, e.k); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := writeJSON(buf, e.v); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
		return nil
	case []any:
		buf.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
		return nil
	}
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // the newline Encode appends
	return nil
}

// hasBinary reports whether v holds a byte slice, like Node's hasBinary.
func hasBinary(v any) bool {
	switch t := v.(type) {
	case []byte:
		return true
	case omap:
		for _, e := range t {
			if hasBinary(e.v) {
				return true
			}
		}
	case []any:
		for _, e := range t {
			if hasBinary(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range t {
			if hasBinary(e) {
				return true
			}
		}
	}
	return false
}

// encodeShardMessage encodes the message {type, data, uid, nsp} into a pooled
// encoder: msgpack when Node would (binary data in a type that may carry
// it), JSON otherwise.
func encodeShardMessage(typ int, data omap, uid, nsp string) (*encoder, error) {
	msg := omap{{"type", typ}, {"data", data}, {"uid", uid}, {"nsp", nsp}}
	e := getEncoder()
	var err error
	if mayContainBinary(typ) && hasBinary(data) {
		err = e.enc.Encode(msg)
	} else {
		err = writeJSON(&e.buf, msg)
	}
	if err != nil {
		putEncoder(e)
		return nil, fmt.Errorf("redisadapter: encode sharded message of type %d: %w", typ, err)
	}
	return e, nil
}

// flagsOmap writes broadcast flags as Node does: only the flags that are set,
// the timeout in milliseconds.
func flagsOmap(f wireFlags) omap {
	m := omap{}
	if f.Volatile {
		m = append(m, kv{"volatile", true})
	}
	if f.Compress {
		m = append(m, kv{"compress", true})
	}
	if f.Timeout != nil {
		m = append(m, kv{"timeout", f.Timeout.Milliseconds()})
	}
	return m
}

// optsOmap is the {rooms, except, flags} of a request.
func optsOmap(rooms, except []socket.Room, f wireFlags) omap {
	return omap{{"rooms", roomsOut(rooms)}, {"except", roomsOut(except)}, {"flags", flagsOmap(f)}}
}

// broadcastData is the data of a BROADCAST: {packet, opts}, or
// {packet, requestId, opts} when acknowledgements are expected. The packet
// carries no nsp and no id, as in Node.
func broadcastData(pkt *parser.Packet, requestID string, rooms, except []socket.Room, f wireFlags) omap {
	p := omap{{"type", wireType(pkt.Type)}, {"data", pkt.Data}}
	d := omap{{"packet", p}}
	if requestID != "" {
		d = append(d, kv{"requestId", requestID})
	}
	return append(d, kv{"opts", optsOmap(rooms, except, f)})
}

// socketOmap describes a local socket in a FETCH_SOCKETS_RESPONSE, with the
// key order of Node's socket.handshake.
func socketOmap(s socket.SocketDetails) omap {
	d := detailOf(s)
	data, err := normalizeData(d.Data)
	if err != nil {
		data = jsonSafe(d.Data)
	}
	h := d.Handshake
	hs := omap{
		{"headers", h.Headers}, {"time", h.Time}, {"address", h.Address}, {"xdomain", h.Xdomain},
		{"secure", h.Secure}, {"issued", h.Issued}, {"url", h.URL}, {"query", h.Query}, {"auth", h.Auth},
	}
	return omap{{"id", d.ID}, {"handshake", hs}, {"rooms", d.Rooms}, {"data", data}}
}

// dataOf returns the data map of a received message (empty when absent).
func dataOf(m message) message {
	d, _ := m["data"].(map[string]any)
	return d
}

// shardOptions decodes {rooms, except, flags} of a received request.
func (m message) shardOptions() (rooms, except []socket.Room, f wireFlags, err error) {
	o, ok := m["opts"].(map[string]any)
	if !ok {
		if m["opts"] == nil {
			return nil, nil, f, nil
		}
		return nil, nil, f, fmt.Errorf("%w: opts is a %T", errFrameShape, m["opts"])
	}
	if rooms, err = roomList(o["rooms"]); err != nil {
		return nil, nil, f, err
	}
	if except, err = roomList(o["except"]); err != nil {
		return nil, nil, f, err
	}
	if fl, ok := o["flags"].(map[string]any); ok {
		f.Volatile = jsTruthy(fl["volatile"])
		f.Compress = jsTruthy(fl["compress"])
	}
	return rooms, except, f, nil
}

// jsTruthy is JavaScript truthiness for decoded values.
func jsTruthy(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	case string:
		return t != ""
	case float64:
		return t != 0 && !math.IsNaN(t)
	case int64:
		return t != 0
	case uint64:
		return t != 0
	}
	return true
}

// jsLength is the length of s as JavaScript counts it (UTF-16 code units):
// Node's sharded adapter treats a room whose length is 20 as a socket id.
func jsLength(s string) int {
	n := 0
	for _, r := range s {
		if utf16.IsSurrogate(r) || r > 0xFFFF {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// looksLikeNodeSocketID is Node's looksLikeASocketId.
func looksLikeNodeSocketID(room socket.Room) bool { return jsLength(string(room)) == 20 }

// keySlot returns the Redis Cluster hash slot of a key or sharded channel
// (CRC16/XMODEM of the hash tag, modulo 16384).
func keySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for j := 0; j < 8; j++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// groupBySlot splits channels into groups of the same slot, each at most max
// long, in a stable order. Without cluster, every channel is in one group
// (split by max only).
func groupBySlot(channels []string, cluster bool, max int) [][]string {
	sort.Strings(channels)
	var groups [][]string
	if !cluster {
		for len(channels) > 0 {
			n := min(len(channels), max)
			groups = append(groups, channels[:n:n])
			channels = channels[n:]
		}
		return groups
	}
	bySlot := map[int][]string{}
	var slots []int
	for _, c := range channels {
		s := keySlot(c)
		if _, ok := bySlot[s]; !ok {
			slots = append(slots, s)
		}
		bySlot[s] = append(bySlot[s], c)
	}
	sort.Ints(slots)
	for _, s := range slots {
		g := bySlot[s]
		for len(g) > 0 {
			n := min(len(g), max)
			groups = append(groups, g[:n:n])
			g = g[n:]
		}
	}
	return groups
}
