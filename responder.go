package redisadapter

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io/v2/socket"
)

// This file answers the requests of other servers and routes the answers to
// this server's own requests. It runs on the subscriber goroutine: nothing
// here waits on Redis (answers are queued without blocking, or dropped and
// counted when the queue is full).

// publishJSON encodes v as JSON and queues it on channel. It reports whether
// the frame was queued.
func (a *Adapter) publishJSON(channel string, v any) bool {
	e, err := encodeJSONFrame(v)
	if err != nil {
		a.b.log.Error("cannot encode request", slog.String("nsp", a.name), slog.Any("error", err))
		return false
	}
	return a.b.publish(channel, e)
}

// answer queues a response frame without ever blocking the caller: when the
// queue is full the answer is dropped and counted.
func (a *Adapter) answer(requesterUID string, e *encoder) {
	channel := a.ch.response
	if a.b.opts.PublishOnSpecificResponseChannel && requesterUID != "" {
		channel = a.ch.responseChannelOf(requesterUID)
	}
	a.b.publishNoWait(channel, e)
}

func (a *Adapter) answerJSON(requesterUID string, v any) {
	e, err := encodeJSONFrame(v)
	if err != nil {
		a.b.log.Error("cannot encode response", slog.String("nsp", a.name), slog.Any("error", err))
		return
	}
	a.answer(requesterUID, e)
}

// onRequestChannel handles a frame received on a request or response channel.
func (a *Adapter) onRequestChannel(channel, payload string) {
	b := a.b
	m, err := decodeMessage([]byte(payload))
	if err != nil {
		b.stats.droppedMalformed.Add(1)
		b.log.Debug("dropped malformed request frame", slog.String("channel", channel), slog.Any("error", err))
		return
	}
	if channel == a.ch.request {
		err = a.onRequest(m)
	} else {
		err = a.onResponse(m)
	}
	if err != nil {
		b.stats.droppedMalformed.Add(1)
		b.log.Debug("dropped invalid request frame", slog.String("channel", channel), slog.Any("error", err))
	}
}

// onRequest answers another server's request.
func (a *Adapter) onRequest(m message) error {
	b := a.b
	uid := m.str("uid")
	if uid == b.uid {
		b.stats.droppedOwn.Add(1)
		return nil
	}
	id := m.str("requestId")
	switch m.typ() {
	case reqSockets:
		opts, err := m.broadcastOptions()
		if err != nil {
			return err
		}
		if legacy, ok := m["rooms"]; ok && !m.has("opts") {
			rooms, err := roomList(legacy)
			if err != nil {
				return err
			}
			opts.Rooms.Add(rooms...)
		}
		ids := []string{}
		a.forEachSocket(setKeys(opts.Rooms), setKeys(opts.Except), func(s *socket.Socket) { ids = append(ids, string(s.Id())) })
		a.answerJSON(uid, socketsResponse{RequestID: id, Sockets: ids})
	case reqAllRooms:
		rooms := []string{}
		a.Rooms().Range(func(r socket.Room, _ *types.Set[socket.SocketId]) bool {
			rooms = append(rooms, string(r))
			return true
		})
		a.answerJSON(uid, allRoomsResponse{RequestID: id, Rooms: rooms})
	case reqRemoteJoin, reqRemoteLeave:
		if !m.has("opts") {
			return a.legacyJoinLeave(m)
		}
		opts, err := m.broadcastOptions()
		if err != nil {
			return err
		}
		rooms, err := roomList(m["rooms"])
		if err != nil {
			return err
		}
		if m.typ() == reqRemoteJoin {
			a.Adapter.AddSockets(opts, rooms)
		} else {
			a.Adapter.DelSockets(opts, rooms)
		}
	case reqRemoteDisconnect:
		opts, err := m.broadcastOptions()
		if err != nil {
			return err
		}
		closeConn, _ := m["close"].(bool)
		a.Adapter.DisconnectSockets(opts, closeConn)
	case reqRemoteFetch:
		opts, err := m.broadcastOptions()
		if err != nil {
			return err
		}
		details := []socketDetail{}
		a.forEachSocket(setKeys(opts.Rooms), setKeys(opts.Except), func(s *socket.Socket) {
			d := detailOf(s)
			d.Data = jsonSafe(d.Data)
			details = append(details, d)
		})
		a.answerJSON(uid, fetchResponse{RequestID: id, Sockets: details})
	case reqServerSideEmit:
		data, ok := m["data"].([]any)
		if !ok || len(data) == 0 {
			return errFrameShape
		}
		if id == "" {
			a.Nsp().OnServerSideEmit(data)
			return nil
		}
		var once atomic.Bool
		ack := socket.Ack(func(args []any, _ error) {
			if once.Swap(true) {
				return
			}
			var first any
			if len(args) > 0 {
				first = jsonSafe(args[0])
			}
			// Node answers serverSideEmit on the shared channel whatever
			// publishOnSpecificResponseChannel says; so do we.
			e, err := encodeJSONFrame(sseResponse{Type: reqServerSideEmit, RequestID: id, Data: first})
			if err == nil {
				a.b.publishNoWait(a.ch.response, e)
			}
		})
		a.Nsp().OnServerSideEmit(append(append([]any(nil), data...), ack))
	case reqBroadcast:
		if id == "" {
			return errFrameShape
		}
		b.reqs.mu.Lock()
		_, own := b.reqs.acks[id]
		b.reqs.mu.Unlock()
		if own {
			b.stats.droppedOwn.Add(1)
			return nil
		}
		pkt, err := m.packetOf(a.name)
		if err != nil {
			return err
		}
		opts, err := m.broadcastOptions()
		if err != nil {
			return err
		}
		a.localBroadcastWithAck(pkt, setKeys(opts.Rooms), setKeys(opts.Except), wireFlags{},
			func(n uint64) {
				a.answerJSON(uid, clientCountResponse{Type: reqBroadcastClientCount, RequestID: id, ClientCount: n})
			},
			func(args []any, _ error) {
				var first any
				if len(args) > 0 {
					first = args[0]
				}
				if v, err := normalizeData(first); err == nil {
					first = v
				}
				e := getEncoder()
				if err := e.appendAckResponse(id, first); err != nil {
					putEncoder(e)
					return
				}
				a.answer(uid, e)
			})
	default:
		b.stats.droppedUnsupported.Add(1)
	}
	return nil
}

// legacyJoinLeave handles the pre-8.0 form {sid, room, requestId}.
func (a *Adapter) legacyJoinLeave(m message) error {
	sid, room := m.str("sid"), m.str("room")
	if sid == "" || room == "" {
		return errFrameShape
	}
	s, ok := a.Nsp().Sockets().Load(socket.SocketId(sid))
	if !ok {
		return nil
	}
	if m.typ() == reqRemoteJoin {
		s.Join(socket.Room(room))
	} else {
		s.Leave(socket.Room(room))
	}
	a.answerJSON(m.str("uid"), struct {
		RequestID string `json:"requestId"`
	}{m.str("requestId")})
	return nil
}

// onResponse routes an answer to this server's pending request.
func (a *Adapter) onResponse(m message) error {
	b := a.b
	id := m.str("requestId")
	if id == "" {
		return errFrameShape
	}
	switch m.typ() {
	case reqBroadcastClientCount, reqBroadcastAck:
		b.reqs.mu.Lock()
		ar := b.reqs.acks[id]
		b.reqs.mu.Unlock()
		if ar == nil {
			b.stats.droppedLate.Add(1)
			return nil
		}
		if m.typ() == reqBroadcastClientCount {
			n, ok := m.num("clientCount")
			if !ok || n < 0 {
				return errFrameShape
			}
			ar.deliverCount(uint64(n))
		} else {
			ar.deliverAck(m["packet"])
		}
		return nil
	}
	var recordErr error
	ok := b.respond(id, func(p *pendingRequest) {
		switch p.kind {
		case reqRemoteFetch:
			list, isList := m["sockets"].([]any)
			if !isList {
				recordErr = errFrameShape
				return
			}
			for _, v := range list {
				rs, err := remoteSocketOf(v)
				if err != nil {
					recordErr = err
					continue
				}
				p.sockets = append(p.sockets, rs)
			}
		case reqAllRooms:
			rooms, err := roomList(m["rooms"])
			if err != nil {
				recordErr = err
				return
			}
			for _, r := range rooms {
				p.rooms[r] = struct{}{}
			}
		case reqServerSideEmit:
			p.responses = append(p.responses, m["data"])
		}
	})
	if !ok {
		b.stats.droppedLate.Add(1)
	}
	return recordErr
}

// deliverCount forwards a remote server's client count. Before it, an empty
// ack call runs: the server's completeness check reads state it wrote after
// BroadcastWithAck returned, and the empty call's lock on that state orders
// our read after its write (socket.io/v2's BroadcastOperator.Emit).
func (ar *ackRequest) deliverCount(n uint64) {
	ar.run(func() {
		ar.ack(nil, nil)
		ar.clientCount(n)
	})
	ar.sync.Lock()
	ar.counts++
	if ar.counts == ar.others {
		close(ar.countsDone)
	}
	ar.sync.Unlock()
}

// deliverAck forwards one remote client's acknowledgement (its first
// argument, as Node sends it).
func (ar *ackRequest) deliverAck(v any) {
	ar.run(func() { ar.ack([]any{v}, nil) })
}

// run calls fn now if the request is armed, or when it is armed.
func (ar *ackRequest) run(fn func()) {
	ar.sync.Lock()
	defer ar.sync.Unlock()
	if !ar.armed {
		ar.buffered = append(ar.buffered, fn)
		return
	}
	fn()
}

// handOver runs inside ServerCount, on the goroutine of the server's
// BroadcastOperator: it waits for the client counts of the other servers (at
// most maxWait, and at most the broadcast's timeout, so that a server counted
// by NUMSUB but silent cannot hold the caller long), hands what arrived to
// the server on this goroutine, and arms the request for later answers.
func (ar *ackRequest) handOver(done <-chan struct{}, maxWait time.Duration) {
	wait := ar.timeout
	if maxWait > 0 && maxWait < wait {
		wait = maxWait
	}
	t := time.NewTimer(wait)
	select {
	case <-ar.countsDone:
	case <-t.C:
	case <-done:
	}
	t.Stop()
	ar.flush()
	time.AfterFunc(armGrace, ar.arm)
}

// flush runs, on the calling goroutine, the answers buffered so far.
func (ar *ackRequest) flush() {
	ar.sync.Lock()
	defer ar.sync.Unlock()
	for _, fn := range ar.buffered {
		fn()
	}
	ar.buffered = nil
}

// arm lets remote answers reach the server's callbacks directly, delivering
// those buffered since the last flush.
//
// socket.io/v2's BroadcastOperator.Emit calls ServerCount after
// BroadcastWithAck and stores the result in a plain variable that its
// callbacks read; its own completeness check then locks the response list
// only once every server's count is in. A callback running on another
// goroutine before that is a data race in the server. So the remote counts
// are handed over inside ServerCount, on the caller's goroutine, and later
// answers wait a short grace period for the server's store and check.
func (ar *ackRequest) arm() {
	ar.sync.Lock()
	defer ar.sync.Unlock()
	if ar.armed {
		return
	}
	ar.armed = true
	for _, fn := range ar.buffered {
		fn()
	}
	ar.buffered = nil
}
