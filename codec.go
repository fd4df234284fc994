package redisadapter

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// Conversions between the Socket.IO server's types and the wire's. The wire
// formats themselves are owned by internal/wire.

// wireType translates the server's ASCII packet type ('0'..'6') into the
// number Node puts on the wire (0..6).
func wireType(t parser.PacketType) int { return int(t) - '0' }

// packetType translates a wire packet type (0..6) into the server's.
func packetType(n int) parser.PacketType { return parser.PacketType(n + '0') }

// toWirePacket describes pkt for the wire. Its data must be normalized.
func toWirePacket(pkt *parser.Packet) wire.Packet {
	return wire.Packet{Type: wireType(pkt.Type), Data: pkt.Data, Nsp: pkt.Nsp, ID: pkt.Id}
}

// fromWirePacket builds the server's packet of namespace nsp.
func fromWirePacket(p *wire.Packet, nsp string) *parser.Packet {
	return &parser.Packet{Type: packetType(p.Type), Data: p.Data, Nsp: nsp, Id: p.ID}
}

// normalizePacket prepares a packet's data for both the wire and the local
// encoder (readers are read once; see wire.Normalize). A value that cannot be
// normalized is left as it is: the local encoder may still handle it, and
// encoding for the wire then fails and is logged.
func normalizePacket(pkt *parser.Packet) {
	if data, err := wire.Normalize(pkt.Data); err == nil {
		pkt.Data = data
	}
}

// splitOptions extracts the rooms, exceptions and flags of a broadcast, and
// whether it is local only.
func splitOptions(opts *socket.BroadcastOptions) (o wire.Opts, local bool) {
	if opts == nil {
		return o, false
	}
	o.Rooms = roomStrings(opts.Rooms)
	o.Except = roomStrings(opts.Except)
	if f := opts.Flags; f != nil {
		o.Flags.Volatile = f.Volatile
		if f.Compress {
			c := true
			o.Flags.Compress = &c
		}
		o.Flags.Timeout = f.Timeout
		local = f.Local
	}
	return o, local
}

func roomStrings(s *types.Set[socket.Room]) []string {
	if s == nil || s.Len() == 0 {
		return nil
	}
	keys := s.Keys()
	out := make([]string, len(keys))
	for i, r := range keys {
		out[i] = string(r)
	}
	return out
}

func toRooms(s []string) []socket.Room {
	out := make([]socket.Room, len(s))
	for i, r := range s {
		out[i] = socket.Room(r)
	}
	return out
}

// toWireSocket describes a local socket in a fetchSockets answer. Its data is
// normalized; data that cannot be is sent as its string form, so that one odd
// value does not lose a whole answer.
func toWireSocket(s socket.SocketDetails) wire.Socket {
	out := wire.Socket{ID: string(s.Id()), Rooms: []string{}}
	if d, err := wire.Normalize(s.Data()); err == nil {
		out.Data = d
	} else {
		out.Data = fmt.Sprint(s.Data())
	}
	if r := s.Rooms(); r != nil {
		out.Rooms = roomStrings(r)
		sort.Strings(out.Rooms)
		if out.Rooms == nil {
			out.Rooms = []string{}
		}
	}
	if h := s.Handshake(); h != nil {
		auth, err := wire.Normalize(h.Auth)
		if err != nil {
			auth = nil
		}
		out.Handshake = wire.Handshake{
			Headers: lowerKeys(flatten(h.Headers)), Time: h.Time, Address: h.Address, Xdomain: h.Xdomain,
			Secure: h.Secure, Issued: h.Issued, URL: h.Url, Query: flatten(h.Query), Auth: auth,
		}
	}
	return out
}

// flatten turns Go's map[string][]string into Node's shape: one value is a
// string, several an array.
func flatten(m map[string][]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch len(v) {
		case 0:
			out[k] = ""
		case 1:
			out[k] = v[0]
		default:
			vs := make([]any, len(v))
			for i, s := range v {
				vs[i] = s
			}
			out[k] = vs
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

// unflatten reads header or query values that are strings or arrays of
// strings.
func unflatten(m map[string]any) map[string][]string {
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

// canonicalKeys gives header names Go's canonical form, as net/http does.
func canonicalKeys(m map[string][]string) map[string][]string {
	out := make(map[string][]string, len(m))
	for k, v := range m {
		ck := http.CanonicalHeaderKey(k)
		out[ck] = append(out[ck], v...)
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

// fromWireSocket converts a socket of another server, from Go or Node.
func fromWireSocket(s *wire.Socket) *remoteSocket {
	h := &s.Handshake
	return &remoteSocket{
		id:    socket.SocketId(s.ID),
		rooms: types.NewSet(toRooms(s.Rooms)...),
		data:  s.Data,
		handshake: &socket.Handshake{
			Headers: canonicalKeys(unflatten(h.Headers)), Query: unflatten(h.Query), Time: h.Time,
			Address: h.Address, Xdomain: h.Xdomain, Secure: h.Secure, Issued: h.Issued, Url: h.URL, Auth: h.Auth,
		},
	}
}

// firstArg is the value of an acknowledgement as it travels: its first
// argument (nil without one), as in Node.
func firstArg(args []any) any {
	if len(args) == 0 {
		return nil
	}
	return args[0]
}
