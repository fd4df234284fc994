package redisadapter

import (
	"log/slog"
	"time"

	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// This file owns what a server knows of its rooms: which rooms it holds
// (frames of other rooms are dropped before decoding), the subscriptions of
// the modes that subscribe per room, and local delivery.

// holdsRoom reports whether a local socket is in room.
func (a *Adapter) holdsRoom(room string) bool {
	ids, ok := a.Rooms().Load(socket.Room(room))
	return ok && ids.Len() > 0
}

// AddAll adds a socket to rooms. In the modes that subscribe per room it
// subscribes to the new rooms' channels and waits, up to JoinTimeout, for
// Redis to confirm them, so that a broadcast sent right after the join by
// another server is not lost. Joins applied for another server's socketsJoin
// do not wait.
func (a *Adapter) AddAll(id socket.SocketId, rooms *types.Set[socket.Room]) {
	a.Adapter.AddAll(id, rooms)
	if !a.b.perRoom || rooms == nil {
		return
	}
	waits := a.syncRooms(rooms.Keys())
	if _, remote := a.noWait.Load(id); !remote {
		a.b.waitReady(waits)
	}
}

// Del removes a socket from a room, and unsubscribes from the room's channel
// when it was the last local member (in the modes that subscribe per room).
func (a *Adapter) Del(id socket.SocketId, room socket.Room) {
	a.Adapter.Del(id, room)
	if a.b.perRoom {
		a.syncRooms([]socket.Room{room})
	}
}

// DelAll removes a socket from all its rooms.
func (a *Adapter) DelAll(id socket.SocketId) {
	var rooms []socket.Room
	if a.b.perRoom {
		if r := a.Adapter.SocketRooms(id); r != nil {
			rooms = r.Keys()
		}
	}
	a.Adapter.DelAll(id)
	a.forgetRestored(id)
	if len(rooms) > 0 {
		a.syncRooms(rooms)
	}
}

// syncRooms tells the transport whether each room is held now. The state is
// read and handed over under roomMu, so that whatever the order in which
// concurrent joins and leaves call it, the last call carries their final
// result.
func (a *Adapter) syncRooms(rooms []socket.Room) []<-chan struct{} {
	a.roomMu.Lock()
	defer a.roomMu.Unlock()
	closed := a.closed.Load()
	states := make([]roomState, len(rooms))
	for i, r := range rooms {
		_, sid := a.Sids().Load(socket.SocketId(r))
		states[i] = roomState{room: string(r), held: !closed && a.holdsRoom(string(r)), sid: sid}
	}
	return a.b.t.syncRooms(a.name, states)
}

// waitReady waits, up to JoinTimeout in all, for the subscriptions of waits.
// It does not wait while Redis is unreachable.
func (b *Builder) waitReady(waits []<-chan struct{}) {
	if len(waits) == 0 || b.opts.JoinTimeout <= 0 {
		return
	}
	if st := b.load(); st == StateDegraded || st == StateClosed {
		return
	}
	t := time.NewTimer(b.opts.JoinTimeout)
	defer t.Stop()
	for _, w := range waits {
		select {
		case <-w:
		case <-t.C:
			b.stats.joinWaitExpired.Add(1)
			b.log.Debug("room subscription not confirmed within JoinTimeout", slog.Duration("timeout", b.opts.JoinTimeout))
			return
		case <-b.done:
			return
		}
	}
}

// deliver writes a packet to the local sockets that match o. The packet is
// encoded once for all of them, and not at all when none matches.
//
// Unlike the server's in-memory adapter, it does not attach a pre-encoded
// WebSocket frame to the packet: engine.io v2.5.0's WebSocket transport writes
// only the first of several queued packets that carry one and silently drops
// the rest (transports/websocket.go, send). Engine.io frames each packet itself
// instead, which costs one small copy per client and loses nothing.
func (a *Adapter) deliver(pkt *parser.Packet, o *wire.Opts, onSocket func(*socket.Socket)) {
	wo := &socket.WriteOptions{}
	wo.Volatile = o.Flags.Volatile
	wo.Compress = o.Flags.Compress != nil && *o.Flags.Compress
	pkt.Nsp = a.name
	var encoded []types.BufferInterface
	a.forEachSocket(o.Rooms, o.Except, func(s *socket.Socket) {
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
func (a *Adapter) forEachSocket(rooms, except []string, fn func(*socket.Socket)) {
	var exceptIDs map[socket.SocketId]struct{}
	for _, r := range except {
		ids, ok := a.Rooms().Load(socket.Room(r))
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
		ids, ok := a.Rooms().Load(socket.Room(r))
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
