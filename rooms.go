package redisadapter

import (
	"strings"

	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// channels holds the Redis channel names of one namespace, computed once when
// the namespace's adapter is created. The layout is the Node adapter's:
//
//	key#nsp#          broadcast to all (or to several rooms)
//	key#nsp#room#     broadcast to exactly one room
//	key-request#nsp#  requests between servers
//	key-response#nsp# responses (shared)
//	key-response#nsp#uid# responses addressed to one server
type channels struct {
	// broadcast is "key#nsp#", the prefix of every broadcast channel.
	broadcast string
	// pattern is the PSUBSCRIBE pattern matching every broadcast channel of
	// the namespace, with glob characters of the namespace escaped.
	pattern          string
	request          string
	response         string
	specificResponse string
}

func newChannels(key, nsp, uid string) channels {
	return channels{
		broadcast:        key + "#" + nsp + "#",
		pattern:          globEscape(key+"#"+nsp+"#") + "*",
		request:          key + "-request#" + nsp + "#",
		response:         key + "-response#" + nsp + "#",
		specificResponse: key + "-response#" + nsp + "#" + uid + "#",
	}
}

// responseChannelOf returns the specific response channel of another server.
func (c *channels) responseChannelOf(uid string) string {
	return c.response + uid + "#"
}

// roomChannel returns the channel of a broadcast to exactly one room.
func (c *channels) roomChannel(room socket.Room) string {
	return c.broadcast + string(room) + "#"
}

// roomOf extracts the room from a broadcast channel: "" for the broadcast
// channel itself, and ok=false when the channel does not belong to this
// namespace.
func (c *channels) roomOf(channel string) (room string, ok bool) {
	if !strings.HasPrefix(channel, c.broadcast) {
		return "", false
	}
	rest := channel[len(c.broadcast):]
	if rest == "" {
		return "", true
	}
	if rest[len(rest)-1] != '#' {
		return "", false
	}
	return rest[:len(rest)-1], true
}

// globEscape escapes the characters Redis' glob-style patterns treat
// specially, so that a namespace named "/a*" matches only itself.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			sb.WriteByte('\\')
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}

// holdsRoom reports whether a local socket is in room. The receive path uses
// it to drop frames for foreign rooms before decoding them.
func (a *Adapter) holdsRoom(room string) bool {
	ids, ok := a.Rooms().Load(socket.Room(room))
	return ok && ids.Len() > 0
}

// setKeys returns the members of a possibly nil set.
func setKeys(s *types.Set[socket.Room]) []socket.Room {
	if s == nil || s.Len() == 0 {
		return nil
	}
	return s.Keys()
}

// deliver writes a packet to the local sockets that match rooms and except.
// The packet is encoded once for all of them, and not at all when none
// matches.
//
// Unlike the server's in-memory adapter, it does not attach a pre-encoded
// WebSocket frame to the packet: engine.io v2.5.0's WebSocket transport writes
// only the first of several queued packets that carry one and silently drops
// the rest (transports/websocket.go, send). Engine.io frames each packet itself
// instead, which costs one small copy per client and loses nothing.
func (a *Adapter) deliver(pkt *parser.Packet, rooms, except []socket.Room, flags wireFlags, onSocket func(*socket.Socket)) {
	wo := &socket.WriteOptions{}
	wo.Volatile = flags.Volatile
	wo.Compress = flags.Compress
	pkt.Nsp = a.name
	// Encoded on the first matching socket: a broadcast for clients that all
	// live on other servers costs no local encoding.
	var encoded []types.BufferInterface
	a.forEachSocket(rooms, except, func(s *socket.Socket) {
		if encoded == nil {
			encoded = a.encoder.Encode(pkt)
		}
		if onSocket != nil {
			onSocket(s)
		}
		if notify := s.NotifyOutgoingListeners(); notify != nil {
			notify(pkt)
		}
		s.Client().WriteToEngine(encoded, wo)
	})
}

// forEachSocket calls fn once for every local socket that is in one of rooms
// (every socket when rooms is empty) and in none of except.
func (a *Adapter) forEachSocket(rooms, except []socket.Room, fn func(*socket.Socket)) {
	var exceptIDs map[socket.SocketId]struct{}
	for _, r := range except {
		ids, ok := a.Rooms().Load(r)
		if !ok {
			continue
		}
		if exceptIDs == nil {
			exceptIDs = make(map[socket.SocketId]struct{})
		}
		for _, id := range ids.Keys() {
			exceptIDs[id] = struct{}{}
		}
	}
	excluded := func(id socket.SocketId) bool {
		_, ok := exceptIDs[id]
		return ok
	}
	sockets := a.Nsp().Sockets()
	if len(rooms) == 0 {
		a.Sids().Range(func(id socket.SocketId, _ *types.Set[socket.Room]) bool {
			if !excluded(id) {
				if s, ok := sockets.Load(id); ok {
					fn(s)
				}
			}
			return true
		})
		return
	}
	var seen map[socket.SocketId]struct{}
	if len(rooms) > 1 {
		seen = make(map[socket.SocketId]struct{})
	}
	for _, r := range rooms {
		ids, ok := a.Rooms().Load(r)
		if !ok {
			continue
		}
		for _, id := range ids.Keys() {
			if excluded(id) {
				continue
			}
			if seen != nil {
				if _, dup := seen[id]; dup {
					continue
				}
				seen[id] = struct{}{}
			}
			if s, ok := sockets.Load(id); ok {
				fn(s)
			}
		}
	}
}
