package wire

import (
	"strconv"
	"strings"
	"unicode/utf16"
)

// ClassicChannels are the Redis channels of one namespace in the classic
// protocol, Node's layout:
//
//	key#nsp#               broadcast to all (or to several rooms)
//	key#nsp#room#          broadcast to exactly one room
//	key-request#nsp#       requests between servers
//	key-response#nsp#      responses (shared)
//	key-response#nsp#uid#  responses addressed to the server uid
type ClassicChannels struct {
	// Broadcast is "key#nsp#", the prefix of every broadcast channel.
	Broadcast string
	// Pattern matches every broadcast channel of the namespace, with the
	// glob characters of the key and namespace escaped.
	Pattern          string
	Request          string
	Response         string
	SpecificResponse string
}

// NewClassicChannels returns the channels of namespace nsp for the server uid.
func NewClassicChannels(key, nsp, uid string) ClassicChannels {
	return ClassicChannels{
		Broadcast:        key + "#" + nsp + "#",
		Pattern:          GlobEscape(key+"#"+nsp+"#") + "*",
		Request:          key + "-request#" + nsp + "#",
		Response:         key + "-response#" + nsp + "#",
		SpecificResponse: key + "-response#" + nsp + "#" + uid + "#",
	}
}

// Room returns the channel of a broadcast to exactly one room.
func (c *ClassicChannels) Room(room string) string { return c.Broadcast + room + "#" }

// ResponseOf returns the specific response channel of the server uid.
func (c *ClassicChannels) ResponseOf(uid string) string { return c.Response + uid + "#" }

// RoomOf extracts the room of a broadcast channel: "" for the broadcast
// channel itself; ok is false when the channel is not one of the namespace's.
func (c *ClassicChannels) RoomOf(channel string) (room string, ok bool) {
	rest, found := strings.CutPrefix(channel, c.Broadcast)
	if !found {
		return "", false
	}
	if rest == "" {
		return "", true
	}
	if rest[len(rest)-1] != '#' {
		return "", false
	}
	return rest[:len(rest)-1], true
}

// ClusterChannels are the pub/sub channels of one namespace in the cluster
// protocol (createShardedAdapter, and the streams adapter's ephemeral
// messages):
//
//	prefix#nsp#        every message (the main, public channel)
//	prefix#nsp#uid#    responses to the server uid (its private channel)
//	prefix#nsp#room#   broadcasts to exactly one room (sharded dynamic modes)
type ClusterChannels struct {
	Main string
	// Private is this server's own response channel.
	Private string
}

// NewClusterChannels returns the channels of namespace nsp for the server uid.
func NewClusterChannels(prefix, nsp, uid string) ClusterChannels {
	main := prefix + "#" + nsp + "#"
	return ClusterChannels{Main: main, Private: main + uid + "#"}
}

// Room returns the channel of a room.
func (c *ClusterChannels) Room(room string) string { return c.Main + room + "#" }

// ResponseOf returns the private channel of the server uid.
func (c *ClusterChannels) ResponseOf(uid string) string { return c.Main + uid + "#" }

// GlobEscape escapes the characters Redis' glob-style patterns treat
// specially, so that a namespace named "/a*" matches only itself.
func GlobEscape(s string) string {
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

// JSLength is the length of s as JavaScript counts it, in UTF-16 code units.
func JSLength(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// LooksLikeNodeSocketID is Node's looksLikeASocketId (createShardedAdapter):
// a room of 20 characters is taken for a socket id.
func LooksLikeNodeSocketID(room string) bool { return JSLength(room) == 20 }

// HashCode is the string hash of the streams adapter (Java's, over UTF-16
// code units, wrapped to a signed 32-bit integer at each step).
func HashCode(s string) int32 {
	var h int32
	for _, r := range s {
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			h = h*31 + r1
			h = h*31 + r2
			continue
		}
		h = h*31 + r
	}
	return h
}

// StreamName returns the stream of namespace nsp: name itself with one
// stream, else name-i with i = HashCode(nsp) % count, which JavaScript
// computes with the sign of the hash: "/orders-namespace" with 4 streams is
// in "socket.io--2".
func StreamName(name string, count int, nsp string) string {
	if count <= 1 {
		return name
	}
	return name + "-" + strconv.Itoa(int(HashCode(nsp)%int32(count)))
}
