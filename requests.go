package redisadapter

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// Request types of the Node adapter's request channel (classic protocol).
const (
	reqSockets              = 0
	reqAllRooms             = 1
	reqRemoteJoin           = 2
	reqRemoteLeave          = 3
	reqRemoteDisconnect     = 4
	reqRemoteFetch          = 5
	reqServerSideEmit       = 6
	reqBroadcast            = 7
	reqBroadcastClientCount = 8
	reqBroadcastAck         = 9
)

// pendingRequest is a request of this server waiting for the answers of the
// others. It completes exactly once: when the expected number of answers has
// arrived, or when its timer fires, whichever comes first.
type pendingRequest struct {
	id       string
	kind     int
	expected int

	mu       sync.Mutex
	received int
	finished bool
	timer    *time.Timer

	sockets   []socket.SocketDetails
	rooms     map[socket.Room]struct{}
	responses []any

	// finish runs once, outside mu, with nil or the timeout error.
	finish func(p *pendingRequest, err error)
}

// ackRequest is a broadcast with acknowledgements sent by this server; remote
// servers report their client count and forward each client's ack.
type ackRequest struct {
	clientCount func(uint64)
	ack         socket.Ack
	// others is the number of other servers expected to report a count;
	// countsDone is closed when they all have.
	others     int
	counts     int
	countsDone chan struct{}
	timeout    time.Duration

	// sync orders our calls into the server's callbacks; answers that
	// arrive before the request is armed wait in buffered (see arm).
	sync     sync.Mutex
	armed    bool
	buffered []func()
}

// Delays before remote answers to a broadcast with acks reach the server's
// callbacks (see ackRequest.arm).
const (
	armGrace    = 10 * time.Millisecond
	armFallback = time.Second
)

// requests holds the pending requests of a Builder.
type requests struct {
	mu      sync.Mutex
	pending map[string]*pendingRequest
	acks    map[string]*ackRequest
}

func newRequestID() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// start registers p, then publishes its request, then arms its timeout. The
// registration comes first so that no answer can arrive before it.
func (b *Builder) start(p *pendingRequest, publish func() bool, timeout time.Duration, timeoutErr error) {
	b.reqs.mu.Lock()
	b.reqs.pending[p.id] = p
	b.reqs.mu.Unlock()
	p.mu.Lock()
	p.timer = time.AfterFunc(timeout, func() { b.complete(p, timeoutErr) })
	p.mu.Unlock()
	if !publish() {
		// Not sent (degraded, or the queue stayed full): answer now with
		// what we have rather than waiting for answers that cannot come.
		b.complete(p, nil)
	}
}

// respond records one answer for request id under its lock, and completes the
// request when it was the last one expected. It reports false for an unknown
// or finished request (a late answer).
func (b *Builder) respond(id string, record func(p *pendingRequest)) bool {
	b.reqs.mu.Lock()
	p := b.reqs.pending[id]
	b.reqs.mu.Unlock()
	if p == nil {
		return false
	}
	p.mu.Lock()
	if p.finished {
		p.mu.Unlock()
		return false
	}
	record(p)
	p.received++
	done := p.received >= p.expected
	if done {
		p.finished = true
	}
	p.mu.Unlock()
	if done {
		b.complete(p, nil)
	}
	return true
}

// complete finishes p once: it unregisters it, stops its timer and runs its
// finish function. err is dropped when every expected answer has arrived (the
// last answer and the timer may race; the answers win).
func (b *Builder) complete(p *pendingRequest, err error) {
	p.mu.Lock()
	if p.finish == nil {
		p.mu.Unlock()
		return
	}
	p.finished = true
	finish := p.finish
	p.finish = nil
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.received >= p.expected {
		err = nil
	}
	p.mu.Unlock()
	b.reqs.mu.Lock()
	delete(b.reqs.pending, p.id)
	b.reqs.mu.Unlock()
	finish(p, err)
}

// pendingCount returns the number of requests waiting for answers.
func (b *Builder) pendingCount() int {
	b.reqs.mu.Lock()
	defer b.reqs.mu.Unlock()
	return len(b.reqs.pending) + len(b.reqs.acks)
}

// serverCount returns PUBSUB NUMSUB of channel, summed over every master when
// the client is a Redis Cluster client (PUBSUB is keyless, so a cluster client
// would otherwise ask one random node). While degraded it is 1, without a
// round trip.
func (b *Builder) serverCount(channel string) (int64, error) {
	if st := b.load(); st == StateDegraded || st == StateClosed {
		return 1, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.PublishTimeout)
	defer cancel()
	if cc, ok := b.client.(*redis.ClusterClient); ok {
		var total atomic.Int64
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			m, err := c.PubSubNumSub(ctx, channel).Result()
			if err != nil {
				return err
			}
			total.Add(m[channel])
			return nil
		})
		return total.Load(), err
	}
	m, err := b.client.PubSubNumSub(ctx, channel).Result()
	if err != nil {
		return 0, err
	}
	return m[channel], nil
}

// otherServers returns how many other servers are expected to answer a request
// of this namespace: 0 while degraded or alone.
func (a *Adapter) otherServers() int {
	n, err := a.b.serverCount(a.ch.request)
	if err != nil || n <= 1 {
		return 0
	}
	return int(n - 1)
}

// FetchSockets returns the matching sockets of every server: the local ones,
// and those every other server reports. Without the Local flag and with other
// servers present, it waits up to RequestsTimeout for their answers; on
// timeout it returns what it has with an error.
func (a *Adapter) FetchSockets(opts *socket.BroadcastOptions) func(func([]socket.SocketDetails, error)) {
	return func(callback func([]socket.SocketDetails, error)) {
		rooms, except, _, local := splitOptions(opts)
		var localSockets []socket.SocketDetails
		a.forEachSocket(rooms, except, func(s *socket.Socket) { localSockets = append(localSockets, s) })
		others := 0
		if !local {
			others = a.otherServers()
		}
		if others == 0 {
			callback(localSockets, nil)
			return
		}
		p := &pendingRequest{id: newRequestID(), kind: reqRemoteFetch, expected: others, sockets: localSockets}
		p.finish = func(p *pendingRequest, err error) { callback(p.sockets, err) }
		req := requestOut{UID: a.b.uid, RequestID: p.id, Type: reqRemoteFetch, Opts: &optsOut{Rooms: roomsOut(rooms), Except: roomsOut(except)}}
		a.b.start(p, func() bool { return a.publishJSON(a.ch.request, req) }, a.b.opts.RequestsTimeout,
			errors.New("timeout reached while waiting for fetchSockets response"))
	}
}

// AllRooms returns the union of the rooms of every server of the namespace.
// It waits for the other servers' answers up to RequestsTimeout or until ctx
// is done, and then returns what it has with an error.
func (a *Adapter) AllRooms(ctx context.Context) ([]socket.Room, error) {
	rooms := map[socket.Room]struct{}{}
	a.Rooms().Range(func(r socket.Room, _ *types.Set[socket.SocketId]) bool {
		rooms[r] = struct{}{}
		return true
	})
	others := a.otherServers()
	result := func(m map[socket.Room]struct{}) []socket.Room {
		out := make([]socket.Room, 0, len(m))
		for r := range m {
			out = append(out, r)
		}
		return out
	}
	if others == 0 {
		return result(rooms), nil
	}
	done := make(chan error, 1)
	p := &pendingRequest{id: newRequestID(), kind: reqAllRooms, expected: others, rooms: rooms}
	p.finish = func(_ *pendingRequest, err error) { done <- err }
	req := requestOut{UID: a.b.uid, RequestID: p.id, Type: reqAllRooms}
	a.b.start(p, func() bool { return a.publishJSON(a.ch.request, req) }, a.b.opts.RequestsTimeout,
		errors.New("timeout reached while waiting for allRooms response"))
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		a.b.complete(p, ctx.Err())
		err = <-done
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return result(p.rooms), err
}

// AddSockets makes the matching sockets of every server join rooms. It applies
// to the local sockets at once, then tells the other servers.
func (a *Adapter) AddSockets(opts *socket.BroadcastOptions, rooms []socket.Room) {
	a.Adapter.AddSockets(opts, rooms)
	a.publishRemote(opts, reqRemoteJoin, func(r *requestOut) { r.Rooms = roomsOut(rooms) })
}

// DelSockets makes the matching sockets of every server leave rooms.
func (a *Adapter) DelSockets(opts *socket.BroadcastOptions, rooms []socket.Room) {
	a.Adapter.DelSockets(opts, rooms)
	a.publishRemote(opts, reqRemoteLeave, func(r *requestOut) { r.Rooms = roomsOut(rooms) })
}

// DisconnectSockets disconnects the matching sockets of every server; close
// also closes their underlying connections.
func (a *Adapter) DisconnectSockets(opts *socket.BroadcastOptions, close bool) {
	a.Adapter.DisconnectSockets(opts, close)
	a.publishRemote(opts, reqRemoteDisconnect, func(r *requestOut) { r.Close = &close })
}

func (a *Adapter) publishRemote(opts *socket.BroadcastOptions, kind int, fill func(*requestOut)) {
	rooms, except, _, local := splitOptions(opts)
	if local {
		return
	}
	req := requestOut{UID: a.b.uid, Type: kind, Opts: &optsOut{Rooms: roomsOut(rooms), Except: roomsOut(except)}}
	fill(&req)
	a.publishJSON(a.ch.request, req)
}

// ServerSideEmit sends an event to every other server of the cluster (never to
// this one). When the last element of packet is a socket.Ack, the ack gets
// one value per other server, or after RequestsTimeout the values received so
// far with an error.
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
	if !withAck {
		if !a.publishJSON(a.ch.request, requestOut{UID: a.b.uid, Type: reqServerSideEmit, Data: packet}) && a.b.load() != StateDegraded {
			return errors.New("redisadapter: serverSideEmit not published (publish queue full or encoding failed)")
		}
		return nil
	}
	data := packet[:len(packet)-1]
	others := a.otherServers()
	if others == 0 {
		ack([]any{}, nil)
		return nil
	}
	p := &pendingRequest{id: newRequestID(), kind: reqServerSideEmit, expected: others, responses: []any{}}
	p.finish = func(p *pendingRequest, err error) {
		if err != nil {
			err = fmt.Errorf("timeout reached: only %d responses received out of %d", p.received, p.expected)
		}
		ack(p.responses, err)
	}
	req := requestOut{UID: a.b.uid, RequestID: p.id, Type: reqServerSideEmit, Data: data}
	a.b.start(p, func() bool { return a.publishJSON(a.ch.request, req) }, a.b.opts.RequestsTimeout, errTimeout)
	return nil
}

var errTimeout = errors.New("redisadapter: request timed out")

// BroadcastWithAck sends a packet expecting acknowledgements to the matching
// clients of every server. clientCountCallback is called once per server with
// its number of clients, ack once per client acknowledgement.
func (a *Adapter) BroadcastWithAck(pkt *parser.Packet, opts *socket.BroadcastOptions, clientCountCallback func(uint64), ack socket.Ack) {
	b := a.b
	rooms, except, flags, local := splitOptions(opts)
	pkt.Nsp = a.name
	if data, err := normalizeData(pkt.Data); err == nil {
		pkt.Data = data
	}
	others := 0
	if !local && b.load() != StateDegraded && !a.closed.Load() {
		others = a.otherServers()
	}
	ar := newAckRequest(flags, b.opts.RequestsTimeout, others, clientCountCallback, ack)
	// One broadcast with acks at a time per namespace between
	// BroadcastWithAck and ServerCount (microseconds to a round trip).
	select {
	case a.ackSlot <- struct{}{}:
	case <-b.done:
		return
	}
	a.ackMu.Lock()
	a.current = ar
	a.ackMu.Unlock()
	time.AfterFunc(armFallback, func() {
		a.releaseAckSlot(ar)
		ar.arm()
	})
	if others > 0 {
		a.publishAckRequest(ar, pkt, rooms, except)
	}
	a.localBroadcastWithAck(pkt, rooms, except, flags, clientCountCallback, ar.localAck(ack))
}

// newAckRequest prepares the bookkeeping of a broadcast with acks that others
// remote servers will answer. Its timeout is the broadcast's own, or def.
func newAckRequest(flags wireFlags, def time.Duration, others int, clientCountCallback func(uint64), ack socket.Ack) *ackRequest {
	timeout := def
	if flags.Timeout != nil && *flags.Timeout > 0 {
		timeout = *flags.Timeout
	}
	ar := &ackRequest{clientCount: clientCountCallback, ack: ack, others: others, timeout: timeout, countsDone: make(chan struct{})}
	if others == 0 {
		close(ar.countsDone)
	}
	return ar
}

// localAck wraps ack for the clients of this server. Their acks go through ar
// too, so that none reaches the server before it has stored the server count
// (see ackRequest.arm). Each client counts for one response, its first
// argument (nil when it acked without one), as in Node and as the acks of
// remote clients arrive.
func (ar *ackRequest) localAck(ack socket.Ack) socket.Ack {
	return func(args []any, err error) {
		var first any
		if len(args) > 0 {
			first = args[0]
		}
		ar.run(func() { ack([]any{first}, err) })
	}
}

// publishAckRequest registers a broadcast with acks, then publishes it.
func (a *Adapter) publishAckRequest(ar *ackRequest, pkt *parser.Packet, rooms, except []socket.Room) {
	b := a.b
	id := newRequestID()
	// Registered before the request is published: answers may come back
	// before Publish returns.
	b.reqs.mu.Lock()
	b.reqs.acks[id] = ar
	b.reqs.mu.Unlock()
	time.AfterFunc(ar.timeout, func() {
		b.reqs.mu.Lock()
		delete(b.reqs.acks, id)
		b.reqs.mu.Unlock()
	})
	e := getEncoder()
	tm := ar.timeout
	if err := e.appendAckRequest(b.uid, id, pkt, rooms, except, wireFlags{Timeout: &tm}); err != nil {
		putEncoder(e)
		b.log.Error("cannot encode broadcast with ack; local clients only", slog.String("nsp", a.name), slog.Any("error", err))
		return
	}
	b.publish(a.ch.request, e)
}

// localBroadcastWithAck delivers pkt to the local matching clients with a
// fresh packet id and registers ack for each of them.
func (a *Adapter) localBroadcastWithAck(pkt *parser.Packet, rooms, except []socket.Room, flags wireFlags, clientCountCallback func(uint64), ack socket.Ack) {
	id := a.Nsp().Ids()
	pkt.Id = &id
	var count uint64
	a.deliver(pkt, rooms, except, flags, func(s *socket.Socket) {
		count++
		s.Acks().Store(id, ack)
	})
	clientCountCallback(count)
}
