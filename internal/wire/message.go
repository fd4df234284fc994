// Package wire owns the formats the Node.js Socket.IO adapters put on Redis:
// channel names, message type tables, the MessagePack and JSON encoders (as
// notepack.io, @msgpack/msgpack and JSON.stringify write them), the bounded
// decoders, and the typed form of every message.
//
// It serves both the adapter (the repository root) and the emitters
// (emitter/). It does not import the Socket.IO server, so an emitter stays
// light: conversions between these types and the server's live in the root
// package's codec.go.
//
// Three protocols share one message model, Message:
//
//   - classic: @socket.io/redis-adapter's createAdapter. A broadcast is the
//     MessagePack array [uid, packet, opts]; requests and responses are JSON,
//     or MessagePack maps when they may carry binary (classic.go).
//   - cluster: socket.io-adapter's ClusterAdapter messages {type, data, uid,
//     nsp}, used by createShardedAdapter (JSON, or MessagePack when the data
//     holds binary) and by @socket.io/redis-streams-adapter (stream entries
//     and MessagePack pub/sub frames) (cluster.go).
//
// Every decoder treats its input as hostile: anyone who can PUBLISH on a
// channel reaches it. Decoders never panic, refuse lengths that exceed the
// bytes present, bound nesting, and refuse a frame whose decoded form would
// need more memory than its budget (Budget) before allocating any of it.
package wire

import "time"

// Type is the type of a message. The numbers are those of socket.io-adapter's
// ClusterAdapter (MessageType), which the sharded and streams protocols put on
// the wire; the classic protocol numbers its requests differently
// (ClassicType) and has three types of its own (numbered from 100).
type Type int

// Message types.
const (
	TypeInitialHeartbeat       Type = 1
	TypeHeartbeat              Type = 2
	TypeBroadcast              Type = 3 // with RequestID: a broadcast with acknowledgements
	TypeSocketsJoin            Type = 4
	TypeSocketsLeave           Type = 5
	TypeDisconnectSockets      Type = 6
	TypeFetchSockets           Type = 7
	TypeFetchSocketsResponse   Type = 8
	TypeServerSideEmit         Type = 9
	TypeServerSideEmitResponse Type = 10
	TypeBroadcastClientCount   Type = 11
	TypeBroadcastAck           Type = 12
	TypeAdapterClose           Type = 13

	// TypeSockets is the classic SOCKETS request (0), which Node stopped
	// sending in 8.0 but still answers.
	TypeSockets Type = 100
	// TypeAllRooms is the classic ALL_ROOMS request (1).
	TypeAllRooms Type = 101
	// TypeAllRoomsResponse is the answer to TypeAllRooms.
	TypeAllRoomsResponse Type = 102
	// TypeSocketsResponse is the answer to TypeSockets.
	TypeSocketsResponse Type = 103
	// TypeLegacyJoinResponse answers a pre-8.0 remote join or leave.
	TypeLegacyJoinResponse Type = 104
)

// IsResponse reports whether t answers a request of another server.
func (t Type) IsResponse() bool {
	switch t {
	case TypeFetchSocketsResponse, TypeServerSideEmitResponse, TypeBroadcastClientCount,
		TypeBroadcastAck, TypeAllRoomsResponse, TypeSocketsResponse, TypeLegacyJoinResponse:
		return true
	}
	return false
}

// Message is one message between servers, whatever the protocol. Which
// fields are set depends on Type; the others are zero.
type Message struct {
	Type Type
	// UID identifies the sending server ("emitter" for emitters). Classic
	// responses carry none.
	UID string
	// Nsp is the namespace. Classic frames carry it in the packet or the
	// channel only.
	Nsp string
	// RequestID links a request and its answers. On a TypeBroadcast it asks
	// for acknowledgements; on a TypeServerSideEmit, for an answer.
	RequestID string

	// Packet is the packet of a TypeBroadcast.
	Packet Packet
	// Opts selects the sockets of a broadcast, a join, a leave, a disconnect
	// or a fetch.
	Opts Opts
	// Rooms are the rooms to join or leave (TypeSocketsJoin,
	// TypeSocketsLeave) or the rooms of a server (TypeAllRoomsResponse).
	Rooms []string
	// Close also closes the underlying connections (TypeDisconnectSockets).
	Close bool
	// Args are the event name and arguments of a TypeServerSideEmit.
	Args []any
	// Value is the answer of one server or client (TypeServerSideEmitResponse,
	// TypeBroadcastAck).
	Value any
	// ClientCount is a TypeBroadcastClientCount.
	ClientCount uint64
	// Sockets are the sockets of a TypeFetchSocketsResponse.
	Sockets []Socket
	// SocketIDs are the socket ids of a TypeSocketsResponse.
	SocketIDs []string

	// Legacy marks a pre-8.0 classic remote join or leave ({sid, room,
	// requestId}, without opts), kept for old peers; SID and Room are its
	// fields.
	Legacy    bool
	SID, Room string
}

// Packet is a Socket.IO packet as the adapters put it on the wire.
type Packet struct {
	// Type is the packet type as Node numbers it: 2 is EVENT, 3 ACK, 5
	// BINARY_EVENT, 6 BINARY_ACK.
	Type int
	// Data is the event name and its arguments, for an event.
	Data any
	// Nsp is the namespace (classic frames only; the cluster protocol
	// carries it in the message).
	Nsp string
	// ID is the acknowledgement id, when there is one.
	ID *uint64
}

// Packet types, as Node numbers them.
const (
	PacketEvent       = 2
	PacketBinaryEvent = 5
)

// Opts are the rooms, exceptions and flags of a broadcast or a request.
type Opts struct {
	Rooms  []string
	Except []string
	Flags  Flags
}

// Flags are the broadcast flags that travel between servers. Node writes
// only the flags a user set; so does this package.
type Flags struct {
	Volatile bool
	// Compress is nil when unset (the server's default applies).
	Compress *bool
	// Timeout is set when a broadcast expects acknowledgements; on the wire
	// it is an integer number of milliseconds.
	Timeout *time.Duration
}

// Socket describes a socket of another server in a fetchSockets answer.
type Socket struct {
	ID        string
	Handshake Handshake
	Rooms     []string
	Data      any
}

// Handshake is a socket's handshake as Node's socket.handshake looks on the
// wire: header and query values are strings, or arrays of strings when
// repeated; Time is a date string and Issued milliseconds.
type Handshake struct {
	Headers map[string]any
	Time    string
	Address string
	Xdomain bool
	Secure  bool
	Issued  int64
	URL     string
	Query   map[string]any
	Auth    any
}
