package redisadapter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io/v2/socket"
)

// Requests of this server to the others (fetchSockets, serverSideEmit with
// ack, allRooms): the pending entry is registered before the request is
// published, and completes exactly once, when the expected number of answers
// has arrived, at its timeout, or at Close.

// pendingRequest is a request of this server waiting for the answers of the
// others.
type pendingRequest struct {
	id       string
	kind     wire.Type
	expected int

	mu       sync.Mutex
	received int
	timer    *time.Timer

	sockets   []socket.SocketDetails
	rooms     map[socket.Room]struct{}
	responses []any

	// finish runs once, outside mu, with nil, the timeout error or
	// ErrClosed.
	finish func(p *pendingRequest, err error)
}

// requests holds the pending requests of a Builder.
type requests struct {
	mu      sync.Mutex
	pending map[string]*pendingRequest
	acks    map[string]*ackRequest
}

var errTimeout = errors.New("redisadapter: request timed out")

// request registers p, publishes its request, then arms its timeout. When the
// request could not be published (degraded, queue full, encoding error), p
// completes at once with what it has: no answer can come.
func (b *Builder) request(p *pendingRequest, publish func() bool, timeout time.Duration) {
	b.reqs.mu.Lock()
	if b.isClosed() {
		b.reqs.mu.Unlock()
		p.finish(p, errClosed)
		return
	}
	b.reqs.pending[p.id] = p
	b.reqs.mu.Unlock()
	p.mu.Lock()
	p.timer = time.AfterFunc(timeout, func() { b.complete(p, errTimeout) })
	p.mu.Unlock()
	if !publish() {
		b.complete(p, nil)
	}
}

// respond records one answer for request id, and completes the request when
// it was the last one expected. It reports false for an unknown or finished
// request (a late answer).
func (b *Builder) respond(id string, record func(p *pendingRequest) error) (bool, error) {
	b.reqs.mu.Lock()
	p := b.reqs.pending[id]
	b.reqs.mu.Unlock()
	if p == nil {
		return false, nil
	}
	p.mu.Lock()
	if p.finish == nil {
		p.mu.Unlock()
		return false, nil
	}
	if err := record(p); err != nil {
		p.mu.Unlock()
		return true, err
	}
	p.received++
	done := p.received >= p.expected
	p.mu.Unlock()
	if done {
		b.complete(p, nil)
	}
	return true, nil
}

// complete finishes p once: it unregisters it, stops its timer and runs its
// finish function. A timeout is dropped when every expected answer has
// arrived (the last answer and the timer may race; the answers win).
func (b *Builder) complete(p *pendingRequest, err error) {
	p.mu.Lock()
	finish := p.finish
	if finish == nil {
		p.mu.Unlock()
		return
	}
	p.finish = nil
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.received >= p.expected && errors.Is(err, errTimeout) {
		err = nil
	}
	p.mu.Unlock()
	b.reqs.mu.Lock()
	delete(b.reqs.pending, p.id)
	b.reqs.mu.Unlock()
	finish(p, err)
}

// failPending completes every pending request with ErrClosed (at Close).
func (b *Builder) failPending() {
	b.reqs.mu.Lock()
	list := make([]*pendingRequest, 0, len(b.reqs.pending))
	for _, p := range b.reqs.pending {
		list = append(list, p)
	}
	b.reqs.acks = map[string]*ackRequest{}
	b.reqs.mu.Unlock()
	for _, p := range list {
		b.complete(p, errClosed)
	}
}

// pendingCount returns the number of requests waiting for answers.
func (b *Builder) pendingCount() int {
	b.reqs.mu.Lock()
	defer b.reqs.mu.Unlock()
	return len(b.reqs.pending) + len(b.reqs.acks)
}

// otherServers returns how many other servers are expected to answer a request
// of this namespace: 0 while degraded, alone, or when Redis does not answer
// within ctx and PublishTimeout.
func (a *Adapter) otherServers(ctx context.Context) int {
	n, err := a.b.serverCount(ctx, a.name)
	if err != nil || n <= 1 {
		return 0
	}
	return int(n - 1)
}

// timeoutError is the error of a request that timed out, in the words of the
// Node adapter of the transport's protocol.
func (a *Adapter) timeoutError(p *pendingRequest, err error) error {
	if !errors.Is(err, errTimeout) {
		return err
	}
	if a.b.t.protocol() == classicProtocol {
		switch p.kind {
		case wire.TypeFetchSockets:
			return errors.New("timeout reached while waiting for fetchSockets response")
		case wire.TypeAllRooms:
			return errors.New("timeout reached while waiting for allRooms response")
		}
	}
	return fmt.Errorf("timeout reached: only %d responses received out of %d", p.received, p.expected)
}

// FetchSockets returns the matching sockets of every server: the local ones,
// and those every other server reports. Without the Local flag and with other
// servers present, it waits for their answers up to the operator's timeout
// (io.Timeout(d)) or RequestsTimeout; after it, it returns what it has with
// an error.
func (a *Adapter) FetchSockets(opts *socket.BroadcastOptions) func(func([]socket.SocketDetails, error)) {
	return func(callback func([]socket.SocketDetails, error)) {
		o, local := splitOptions(opts)
		var localSockets []socket.SocketDetails
		a.forEachSocket(o.Rooms, o.Except, func(s *socket.Socket) { localSockets = append(localSockets, s) })
		others := 0
		if !local && !a.closed.Load() {
			others = a.otherServers(context.Background())
		}
		if others == 0 {
			callback(localSockets, nil)
			return
		}
		timeout := a.b.opts.RequestsTimeout
		if o.Flags.Timeout != nil && *o.Flags.Timeout > 0 {
			timeout = *o.Flags.Timeout
		}
		p := &pendingRequest{id: newID(), kind: wire.TypeFetchSockets, expected: others, sockets: localSockets}
		p.finish = func(p *pendingRequest, err error) { callback(p.sockets, a.timeoutError(p, err)) }
		m := &wire.Message{Type: wire.TypeFetchSockets, RequestID: p.id, Opts: o}
		a.b.request(p, func() bool { return a.send(m, "", true, nil) }, timeout)
	}
}

// AllRooms returns the union of the rooms of every server of the namespace.
// It waits for the other servers' answers up to RequestsTimeout or until ctx
// is done, and then returns what it has with an error. (The sharded and
// streams protocols have no request for it: there it is the union of the
// rooms of the sockets fetchSockets returns.)
func (a *Adapter) AllRooms(ctx context.Context) ([]socket.Room, error) {
	rooms := map[socket.Room]struct{}{}
	a.Rooms().Range(func(r socket.Room, _ *types.Set[socket.SocketId]) bool {
		rooms[r] = struct{}{}
		return true
	})
	others := a.otherServers(ctx)
	if others == 0 {
		return roomList(rooms), ctx.Err()
	}
	done := make(chan error, 1)
	p := &pendingRequest{id: newID(), kind: wire.TypeAllRooms, expected: others, rooms: rooms}
	m := &wire.Message{Type: wire.TypeAllRooms, RequestID: p.id}
	if a.b.t.protocol() == clusterProtocol {
		p.kind = wire.TypeFetchSockets
		m = &wire.Message{Type: wire.TypeFetchSockets, RequestID: p.id}
	}
	p.finish = func(p *pendingRequest, err error) { done <- a.timeoutError(p, err) }
	a.b.request(p, func() bool { return a.send(m, "", true, nil) }, a.b.opts.RequestsTimeout)
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		a.b.complete(p, ctx.Err())
		err = <-done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.sockets {
		if rs := s.Rooms(); rs != nil {
			for _, r := range rs.Keys() {
				p.rooms[r] = struct{}{}
			}
		}
	}
	return roomList(p.rooms), err
}

func roomList(m map[socket.Room]struct{}) []socket.Room {
	out := make([]socket.Room, 0, len(m))
	for r := range m {
		out = append(out, r)
	}
	return out
}

// ServerSideEmit sends an event to every other server of the cluster (never to
// this one). When the last element of packet is a socket.Ack (or a
// func([]any, error)), the ack gets one value per other server, or after
// RequestsTimeout the values received so far with an error.
func (a *Adapter) ServerSideEmit(packet []any) error {
	if len(packet) == 0 {
		return errors.New("redisadapter: ServerSideEmit needs an event name")
	}
	ack, withAck := packet[len(packet)-1].(socket.Ack)
	if !withAck {
		if f, ok := packet[len(packet)-1].(func([]any, error)); ok {
			ack, withAck = f, true
		}
	}
	if withAck {
		packet = packet[:len(packet)-1]
	}
	args, err := wire.NormalizeArgs(packet)
	if err != nil {
		return fmt.Errorf("redisadapter: serverSideEmit: %w", err)
	}
	if !withAck {
		if !a.send(&wire.Message{Type: wire.TypeServerSideEmit, Args: args}, "", true, nil) && a.b.load() != StateDegraded {
			return errors.New("redisadapter: serverSideEmit not published (publish queue full or encoding failed)")
		}
		return nil
	}
	others := a.otherServers(context.Background())
	if others == 0 {
		ack([]any{}, nil)
		return nil
	}
	p := &pendingRequest{id: newID(), kind: wire.TypeServerSideEmit, expected: others, responses: []any{}}
	p.finish = func(p *pendingRequest, err error) {
		if errors.Is(err, errTimeout) {
			err = fmt.Errorf("timeout reached: only %d responses received out of %d", p.received, p.expected)
		}
		ack(p.responses, err)
	}
	m := &wire.Message{Type: wire.TypeServerSideEmit, RequestID: p.id, Args: args}
	a.b.request(p, func() bool { return a.send(m, "", true, nil) }, a.b.opts.RequestsTimeout)
	return nil
}

// onResponse routes an answer to one of this server's requests.
func (b *Builder) onResponse(m *wire.Message) error {
	switch m.Type {
	case wire.TypeBroadcastClientCount, wire.TypeBroadcastAck:
		b.reqs.mu.Lock()
		ar := b.reqs.acks[m.RequestID]
		b.reqs.mu.Unlock()
		if ar == nil {
			b.stats.droppedLate.Add(1)
			return nil
		}
		if m.Type == wire.TypeBroadcastClientCount {
			ar.deliverCount(m.ClientCount)
		} else {
			ar.deliverAck(m.Value)
		}
		return nil
	}
	ok, err := b.respond(m.RequestID, func(p *pendingRequest) error {
		switch {
		case p.kind == wire.TypeFetchSockets && m.Type == wire.TypeFetchSocketsResponse:
			for i := range m.Sockets {
				p.sockets = append(p.sockets, fromWireSocket(&m.Sockets[i]))
			}
		case p.kind == wire.TypeAllRooms && m.Type == wire.TypeAllRoomsResponse:
			for _, r := range m.Rooms {
				p.rooms[socket.Room(r)] = struct{}{}
			}
		case p.kind == wire.TypeServerSideEmit && m.Type == wire.TypeServerSideEmitResponse:
			p.responses = append(p.responses, m.Value)
		default:
			return fmt.Errorf("%w: answer of type %d to a request of type %d", wire.ErrShape, m.Type, p.kind)
		}
		return nil
	})
	if !ok {
		b.stats.droppedLate.Add(1)
	}
	return err
}
