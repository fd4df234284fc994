package redisadapter

import (
	"log/slog"
	"sync/atomic"

	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// This file handles the messages of other servers (and emitters) for one
// namespace, whatever the protocol: broadcasts, joins and leaves, and the
// answers to their requests. It runs on the goroutine that read the frame;
// nothing here waits on Redis (answers are queued without blocking, or
// dropped and counted when the queue is full).

// handle processes one decoded message.
func (a *Adapter) handle(m *wire.Message, in *inbound) {
	b := a.b
	if m.Type.IsResponse() {
		if err := b.onResponse(m); err != nil {
			b.stats.droppedMalformed.Add(1)
			b.log.Debug("dropped an invalid answer", slog.String("nsp", a.name), slog.Any("error", err))
		}
		return
	}
	if m.UID == b.uid {
		b.stats.droppedOwn.Add(1)
		return
	}
	if m.Nsp != "" && m.Nsp != a.name {
		b.stats.droppedUnsupported.Add(1)
		return
	}
	switch m.Type {
	case wire.TypeBroadcast:
		pkt := fromWirePacket(&m.Packet, a.name)
		if m.RequestID == "" {
			a.addOffset(pkt, &m.Opts, in.id)
			a.deliver(pkt, a.exceptRestored(&m.Opts, in.id, false), nil)
			return
		}
		if m.UID == "" {
			b.stats.droppedMalformed.Add(1)
			return
		}
		a.answerBroadcastWithAck(m, pkt)
	case wire.TypeSocketsJoin, wire.TypeSocketsLeave, wire.TypeDisconnectSockets:
		a.applyRemote(m)
	case wire.TypeFetchSockets:
		resp := &wire.Message{Type: wire.TypeFetchSocketsResponse, RequestID: m.RequestID, Sockets: []wire.Socket{}}
		a.forEachSocket(m.Opts.Rooms, m.Opts.Except, func(s *socket.Socket) {
			resp.Sockets = append(resp.Sockets, toWireSocket(s))
		})
		a.send(resp, m.UID, false, nil)
	case wire.TypeServerSideEmit:
		a.onServerSideEmit(m)
	case wire.TypeAllRooms:
		resp := &wire.Message{Type: wire.TypeAllRoomsResponse, RequestID: m.RequestID, Rooms: []string{}}
		a.Rooms().Range(func(r socket.Room, _ *types.Set[socket.SocketId]) bool {
			resp.Rooms = append(resp.Rooms, string(r))
			return true
		})
		a.send(resp, m.UID, false, nil)
	case wire.TypeSockets:
		resp := &wire.Message{Type: wire.TypeSocketsResponse, RequestID: m.RequestID, SocketIDs: []string{}}
		a.forEachSocket(m.Rooms, nil, func(s *socket.Socket) { resp.SocketIDs = append(resp.SocketIDs, string(s.Id())) })
		a.send(resp, m.UID, false, nil)
	default:
		// Heartbeats and ADAPTER_CLOSE of 0.2.x streams servers, and types
		// of newer versions.
		b.stats.droppedUnsupported.Add(1)
	}
}

// applyRemote applies another server's socketsJoin, socketsLeave or
// disconnectSockets to the local sockets. Its joins never wait for room
// subscriptions.
func (a *Adapter) applyRemote(m *wire.Message) {
	if m.Legacy {
		a.legacyJoinLeave(m)
		return
	}
	var sockets []*socket.Socket
	a.forEachSocket(m.Opts.Rooms, m.Opts.Except, func(s *socket.Socket) { sockets = append(sockets, s) })
	for _, s := range sockets {
		switch m.Type {
		case wire.TypeSocketsJoin:
			a.noWait.Store(s.Id(), struct{}{})
			s.Join(toRooms(m.Rooms)...)
			a.noWait.Delete(s.Id())
		case wire.TypeSocketsLeave:
			for _, r := range m.Rooms {
				s.Leave(socket.Room(r))
			}
		default:
			s.Disconnect(m.Close)
		}
	}
}

// legacyJoinLeave handles the pre-8.0 classic form {sid, room, requestId}.
func (a *Adapter) legacyJoinLeave(m *wire.Message) {
	s, ok := a.Nsp().Sockets().Load(socket.SocketId(m.SID))
	if !ok || m.Room == "" {
		return
	}
	if m.Type == wire.TypeSocketsJoin {
		a.noWait.Store(s.Id(), struct{}{})
		s.Join(socket.Room(m.Room))
		a.noWait.Delete(s.Id())
	} else {
		s.Leave(socket.Room(m.Room))
	}
	a.send(&wire.Message{Type: wire.TypeLegacyJoinResponse, RequestID: m.RequestID}, m.UID, false, nil)
}

// onServerSideEmit hands another server's event to the namespace's
// listeners, with an acknowledgement that answers once (its first argument)
// when the sender asked for one.
func (a *Adapter) onServerSideEmit(m *wire.Message) {
	if m.RequestID == "" {
		a.Nsp().OnServerSideEmit(m.Args)
		return
	}
	var once atomic.Bool
	ack := socket.Ack(func(args []any, _ error) {
		if once.Swap(true) {
			return
		}
		a.answerValue(wire.TypeServerSideEmitResponse, m.RequestID, m.UID, firstArg(args))
	})
	a.Nsp().OnServerSideEmit(append(append([]any(nil), m.Args...), ack))
}

// answerBroadcastWithAck delivers another server's broadcast with
// acknowledgements to the local clients (with a packet id of this server),
// and answers with their count and each client's acknowledgement. The flags
// of the request do not apply, as in Node.
func (a *Adapter) answerBroadcastWithAck(m *wire.Message, pkt *parser.Packet) {
	opts := wire.Opts{Rooms: m.Opts.Rooms, Except: m.Opts.Except}
	a.localBroadcastWithAck(pkt, &opts,
		func(n uint64) {
			a.send(&wire.Message{Type: wire.TypeBroadcastClientCount, RequestID: m.RequestID, ClientCount: n}, m.UID, false, nil)
		},
		func(args []any, _ error) {
			a.answerValue(wire.TypeBroadcastAck, m.RequestID, m.UID, firstArg(args))
		})
}

// answerValue sends one value (an acknowledgement) to the requester.
func (a *Adapter) answerValue(t wire.Type, requestID, to string, v any) {
	n, err := wire.Normalize(v)
	if err != nil {
		a.b.log.Debug("cannot encode an acknowledgement; sending null", slog.Any("error", err))
		n = nil
	}
	a.send(&wire.Message{Type: t, RequestID: requestID, Value: n}, to, false, nil)
}
