package redisadapter

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// Broadcasts with acknowledgements (io.Timeout(d).Emit(ev, ..., ack)).
//
// socket.io/v2's BroadcastOperator.Emit calls BroadcastWithAck, then stores
// ServerCount() in a plain variable that its callbacks read; its own
// completeness check locks the response list only once every server's count
// is in. A callback running on another goroutine before that store is a data
// race in the server. So the other servers' client counts are handed to the
// server inside that ServerCount call, on the emitting goroutine, and later
// answers wait a short grace period for the server's store and check. Only
// the ServerCount call of the emitting BroadcastOperator.Emit takes that
// window; other calls (monitoring) just count servers. Emits with
// acknowledgements of one namespace pass the window one at a time, and the
// whole of it (counting servers and waiting for their counts) lasts at most
// PublishTimeout.

// ackRequest is a broadcast with acknowledgements sent by this server; remote
// servers report their client count and forward each client's ack.
type ackRequest struct {
	clientCount func(uint64)
	ack         socket.Ack
	timeout     time.Duration
	// deadline ends the window: servers that have not reported their count
	// by then are not waited for.
	deadline time.Time

	// sync orders our calls into the server's callbacks; answers that
	// arrive before the request is armed wait in buffered (see arm). others
	// is the number of other servers expected to report a count; countsDone
	// is closed when they all have (or when the request was not published).
	sync       sync.Mutex
	others     int
	counts     int
	countsDone chan struct{}
	armed      bool
	buffered   []func()
	// clients is the sum of the remote counts, acked the remote acks so
	// far; forget unregisters the request once every count and ack is in.
	clients, acked uint64
	forget         func()
}

// Delays before remote answers to a broadcast with acks reach the server's
// callbacks.
const (
	armGrace    = 10 * time.Millisecond
	armFallback = time.Second
)

// BroadcastWithAck sends a packet expecting acknowledgements to the matching
// clients of every server. clientCountCallback is called once per server with
// its number of clients, ack once per client acknowledgement.
func (a *Adapter) BroadcastWithAck(pkt *parser.Packet, opts *socket.BroadcastOptions, clientCountCallback func(uint64), ack socket.Ack) {
	b := a.b
	o, local := splitOptions(opts)
	pkt.Nsp = a.name
	normalizePacket(pkt)
	ar := &ackRequest{clientCount: clientCountCallback, ack: ack, timeout: b.opts.RequestsTimeout, countsDone: make(chan struct{})}
	if o.Flags.Timeout != nil && *o.Flags.Timeout > 0 {
		ar.timeout = *o.Flags.Timeout
	}
	// One broadcast with acks at a time per namespace between
	// BroadcastWithAck and ServerCount.
	select {
	case a.ackSlot <- struct{}{}:
	case <-b.done:
		return
	}
	ar.deadline = time.Now().Add(b.opts.PublishTimeout)
	if !local && b.load() != StateDegraded && !a.closed.Load() {
		ctx, cancel := context.WithDeadline(context.Background(), ar.deadline)
		ar.others = a.otherServers(ctx)
		cancel()
	}
	if ar.others == 0 {
		close(ar.countsDone)
	}
	a.ackMu.Lock()
	a.current = ar
	a.ackMu.Unlock()
	time.AfterFunc(armFallback, func() {
		a.releaseAckSlot(ar)
		ar.arm()
	})
	if ar.others > 0 {
		a.publishAckRequest(ar, pkt, o)
	}
	a.localBroadcastWithAck(pkt, &o, clientCountCallback, ar.localAck(ack))
}

// publishAckRequest registers a broadcast with acks, then publishes it. When
// it cannot be published, no other server will answer: the request stops
// waiting for them at once.
func (a *Adapter) publishAckRequest(ar *ackRequest, pkt *parser.Packet, o wire.Opts) {
	b := a.b
	id := newID()
	// Registered before the request is published: answers may come back
	// before the publisher has written it.
	b.reqs.mu.Lock()
	b.reqs.acks[id] = ar
	b.reqs.mu.Unlock()
	forget := func() {
		b.reqs.mu.Lock()
		delete(b.reqs.acks, id)
		b.reqs.mu.Unlock()
	}
	ar.sync.Lock()
	ar.forget = forget
	ar.sync.Unlock()
	time.AfterFunc(ar.timeout, forget)
	tm := ar.timeout
	o.Flags.Timeout = &tm
	m := &wire.Message{Type: wire.TypeBroadcast, RequestID: id, Packet: toWirePacket(pkt), Opts: o}
	a.send(m, "", true, func(_ string, err error) {
		if err != nil {
			forget()
			ar.noAnswers()
		}
	})
}

// noAnswers records that no other server will answer (the request was not
// published).
func (ar *ackRequest) noAnswers() {
	ar.sync.Lock()
	defer ar.sync.Unlock()
	if ar.counts < ar.others {
		ar.others = ar.counts
		close(ar.countsDone)
	}
}

// ServerCount returns the number of servers subscribed to this namespace (see
// the transport: PUBSUB NUMSUB or SHARDNUMSUB, summed over a Redis Cluster's
// masters), within PublishTimeout. While degraded, or when Redis does not
// answer in time, it returns 1 without waiting.
//
// Called by the server's BroadcastOperator.Emit right after BroadcastWithAck,
// it also waits (within the same PublishTimeout) for the other servers'
// client counts and hands them to the server on the calling goroutine.
func (a *Adapter) ServerCount() int64 {
	if ar := a.takeAckWindow(); ar != nil {
		others := ar.handOver(a.b.done)
		a.releaseAckSlot(ar)
		return int64(1 + others)
	}
	n, err := a.b.serverCount(context.Background(), a.name)
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// takeAckWindow returns the broadcast with acks waiting for its ServerCount
// call, when the caller is the emitting BroadcastOperator.Emit.
func (a *Adapter) takeAckWindow() *ackRequest {
	a.ackMu.Lock()
	ar := a.current
	a.ackMu.Unlock()
	if ar == nil || !calledFromEmit() {
		return nil
	}
	return ar
}

// calledFromEmit reports whether ServerCount was called by
// socket.(*BroadcastOperator).Emit.
func calledFromEmit() bool {
	var pcs [4]uintptr
	n := runtime.Callers(3, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
	for {
		f, more := frames.Next()
		if strings.HasSuffix(f.Function, "socket.(*BroadcastOperator).Emit") {
			return true
		}
		if !more {
			return false
		}
	}
}

// releaseAckSlot ends the window of ar, if it is the current one.
func (a *Adapter) releaseAckSlot(ar *ackRequest) {
	a.ackMu.Lock()
	defer a.ackMu.Unlock()
	if a.current == ar {
		a.current = nil
		<-a.ackSlot
	}
}

// localAck wraps ack for the clients of this server. Their acks go through ar
// too, so that none reaches the server before it has stored the server count.
// Each client counts for one response, its first argument (nil without one),
// as in Node and as the acks of remote clients arrive.
func (ar *ackRequest) localAck(ack socket.Ack) socket.Ack {
	return func(args []any, err error) {
		first := firstArg(args)
		ar.run(func() { ack([]any{first}, err) })
	}
}

// localBroadcastWithAck delivers pkt to the local matching clients with a
// fresh packet id and registers ack for each of them.
func (a *Adapter) localBroadcastWithAck(pkt *parser.Packet, o *wire.Opts, clientCountCallback func(uint64), ack socket.Ack) {
	id := a.Nsp().Ids()
	pkt.Id = &id
	var count uint64
	a.deliver(pkt, o, func(s *socket.Socket) {
		count++
		s.Acks().Store(id, ack)
	})
	clientCountCallback(count)
}

// deliverCount forwards a remote server's client count. Before it, an empty
// ack call runs: the server's completeness check reads state it wrote after
// BroadcastWithAck returned, and the empty call's lock on that state orders
// our read after its write.
func (ar *ackRequest) deliverCount(n uint64) {
	ar.run(func() {
		ar.ack(nil, nil)
		ar.clientCount(n)
	})
	ar.sync.Lock()
	ar.counts++
	ar.clients += n
	if ar.counts == ar.others {
		close(ar.countsDone)
	}
	ar.sync.Unlock()
	ar.forgetIfAnswered()
}

// deliverAck forwards one remote client's acknowledgement.
func (ar *ackRequest) deliverAck(v any) {
	ar.run(func() { ar.ack([]any{v}, nil) })
	ar.sync.Lock()
	ar.acked++
	ar.sync.Unlock()
	ar.forgetIfAnswered()
}

// forgetIfAnswered unregisters the request once every other server has
// reported its count and each of their clients has acked: nothing more can
// come, and it no longer counts in Stats.PendingRequests.
func (ar *ackRequest) forgetIfAnswered() {
	ar.sync.Lock()
	forget := ar.forget
	done := forget != nil && ar.counts >= ar.others && ar.acked >= ar.clients
	ar.sync.Unlock()
	if done {
		forget()
	}
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

// handOver runs inside ServerCount, on the emitting goroutine: it waits for
// the client counts of the other servers until the request's deadline (so
// that a server counted by NUMSUB but silent cannot hold the caller), hands
// what arrived to the server on this goroutine, and arms the request for
// later answers. It returns the number of other servers the server must
// expect counts from.
func (ar *ackRequest) handOver(done <-chan struct{}) int {
	t := time.NewTimer(time.Until(ar.deadline))
	select {
	case <-ar.countsDone:
	case <-t.C:
	case <-done:
	}
	t.Stop()
	ar.sync.Lock()
	for _, fn := range ar.buffered {
		fn()
	}
	ar.buffered = nil
	others := ar.others
	ar.sync.Unlock()
	time.AfterFunc(armGrace, ar.arm)
	return others
}

// arm lets remote answers reach the server's callbacks directly, delivering
// those buffered since the hand-over.
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
