package redisadapter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// ErrClosed is the error of requests still waiting for answers when their
// Builder closes.
var ErrClosed = errors.New("redisadapter: closed")

var errClosed = ErrClosed

// Builder creates the per-namespace adapters of one Socket.IO server and owns
// the process-wide resources they share: the subscriber connections, the
// publisher, the health state, the pending requests and the counters. It
// implements socket.AdapterConstructor. Use one Builder per socket.Server.
type Builder struct {
	client redis.UniversalClient // the caller's, never closed by us
	// rdb runs every command: a client of our own built from the caller's
	// options with ContextTimeoutEnabled (see ownClient), or client itself.
	rdb   redis.UniversalClient
	owned bool
	opts  Options
	log   *slog.Logger
	uid   string
	addr  string
	t     transport
	// perRoom: the transport subscribes per room (joins wait, leaves
	// unsubscribe).
	perRoom bool

	// ownFrame is how every classic broadcast frame of this server begins.
	ownFrame string
	// publishDeadline bounds one write of the publisher.
	publishDeadline time.Duration

	mu   sync.RWMutex
	nsps map[string]*Adapter

	pub    publisher
	health health
	stats  counters
	reqs   requests

	done chan struct{}
	// ctx is canceled at Close. It is the parent of the contexts of the
	// subscriber's and readers' commands, so that a dial or a connection
	// setup in flight cannot hold Close for its own timeout.
	ctx     context.Context
	cancel  context.CancelFunc
	pubDone chan struct{} // closed when the publisher has flushed and stopped
	pubGoid atomic.Int64  // the publisher's goroutine id
	closing atomic.Bool
	closed  chan struct{}
	closer  atomic.Int64 // goroutine id of the Close in progress
	owners  sync.Map     // goroutine ids of the Builder's goroutines
	wg      sync.WaitGroup

	// flushUntil ends the publisher's flush: PublishTimeout after Close was
	// called (set before done is closed).
	flushUntil time.Time
}

var _ socket.AdapterConstructor = (*Builder)(nil)

// New returns a Builder for the classic protocol of @socket.io/redis-adapter
// (Node's createAdapter) on client, which may be a *redis.Client, a
// *redis.ClusterClient or a failover client. It does no network I/O and
// never fails: if Redis is unreachable the adapter starts degraded and
// connects in the background. A nil opts means defaults.
//
// The caller keeps ownership of client: Close never closes it. New panics if
// client is nil, a programming error.
func New(client redis.UniversalClient, opts *Options) *Builder {
	if client == nil {
		panic("redisadapter: New called with a nil redis client")
	}
	b := newBuilder(client, opts.withDefaults(), "classic")
	if err := opts.Validate(); err != nil {
		b.log.Error("invalid options, using defaults for the invalid fields", slog.Any("error", err))
	}
	b.perRoom = b.opts.RoomSubscriptions
	b.start(newClassicTransport(b))
	return b
}

// newBuilder prepares what every mode shares; start launches it.
func newBuilder(client redis.UniversalClient, o Options, mode string) *Builder {
	b := &Builder{
		client:  client,
		opts:    o,
		uid:     newID(),
		addr:    clientAddr(client),
		nsps:    make(map[string]*Adapter),
		done:    make(chan struct{}),
		pubDone: make(chan struct{}),
		closed:  make(chan struct{}),
		reqs:    requests{pending: map[string]*pendingRequest{}, acks: map[string]*ackRequest{}},
	}
	b.rdb, b.owned = ownClient(client)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.log = o.Logger.With(slog.String("uid", b.uid), slog.String("mode", mode))
	b.ownFrame = wire.ClassicBroadcastPrefix(b.uid)
	b.publishDeadline = o.PublishTimeout
	if !b.owned {
		if rt := readTimeoutOf(client); rt > 0 && rt < b.publishDeadline {
			b.publishDeadline = rt
		}
	}
	b.pub.init(o.PublishQueueSize, o.PublishQueueBytes)
	b.health.init()
	return b
}

// start launches the Builder's goroutines with its transport.
func (b *Builder) start(t transport) {
	b.t = t
	t.start()
	b.spawn(b.publishLoop)
	b.spawn(b.notifyLoop)
	b.spawn(b.probeLoop)
}

// newID returns 16 hexadecimal characters, like Node's ClusterAdapter ids.
func newID() string {
	var buf [8]byte
	_, _ = rand.Read(buf[:])
	return hex.EncodeToString(buf[:])
}

// UID returns this server's identifier in the cluster, which tags its frames.
func (b *Builder) UID() string { return b.uid }

func (b *Builder) isClosed() bool { return b.closing.Load() }

// spawn runs fn on a goroutine the Builder owns and waits for at Close.
func (b *Builder) spawn(fn func()) {
	b.wg.Add(1)
	go func() {
		id := goid()
		b.owners.Store(id, struct{}{})
		defer func() {
			b.owners.Delete(id)
			b.wg.Done()
		}()
		fn()
	}()
}

// Close stops every goroutine the Builder started, closes its connections and
// waits for all of it; requests still waiting for answers complete at once
// with ErrClosed, and frames still queued are written until PublishTimeout
// after the call (the write in flight included), then dropped: Close takes
// about PublishTimeout at most. It does not close the
// Redis client passed to the constructor. Close is idempotent and may be
// called from anywhere, OnStateChange and request callbacks included (called
// from one of the Builder's own goroutines, it does not wait for that one).
// It always returns nil and has an error result for io.Closer.
func (b *Builder) Close() error {
	self := goid()
	if !b.closing.CompareAndSwap(false, true) {
		if _, own := b.owners.Load(self); own || b.closer.Load() == self {
			return nil
		}
		<-b.closed
		return nil
	}
	b.closer.Store(self)
	h := &b.health
	h.mu.Lock()
	b.transitionLocked(State(h.state.Load()), StateClosed, nil)
	h.mu.Unlock()
	b.flushUntil = time.Now().Add(b.opts.PublishTimeout)
	close(b.done)
	b.cancel()
	if b.pubGoid.Load() != self {
		// The publisher writes what is still queued, for at most
		// PublishTimeout.
		<-b.pubDone
	}
	// The transport closes its subscriber connections first, so that their
	// readers see a closed PubSub (go-redis logs a "bad PubSub connection"
	// otherwise). A connection being set up holds the PubSub's lock that
	// its Close needs: after a short wait, closing our own client
	// interrupts that, and the commands still in flight (a blocking XREAD,
	// a restore).
	stopped := make(chan struct{})
	go func() {
		b.t.stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(100 * time.Millisecond):
	}
	if b.owned {
		_ = b.rdb.Close()
	}
	<-stopped
	b.failPending()
	b.waitOwned(self)
	close(b.closed)
	return nil
}

// waitOwned waits for the Builder's goroutines, except self when Close runs
// on one of them (it returns to its loop and exits right after).
func (b *Builder) waitOwned(self int64) {
	if _, own := b.owners.Load(self); !own {
		b.wg.Wait()
		return
	}
	b.wg.Done() // self is accounted for: it is this very call
	b.wg.Wait()
	b.wg.Add(1)
}

// New implements socket.AdapterConstructor: it creates the adapter of one
// namespace and subscribes to its channels in the background.
func (b *Builder) New(nsp socket.Namespace) socket.Adapter {
	a := &Adapter{b: b, name: nsp.Name(), ackSlot: make(chan struct{}, 1)}
	a.Adapter = socket.MakeAdapter()
	a.Prototype(a)
	a.Construct(nsp)
	a.encoder = nsp.Server().Encoder()
	a.ch = wire.NewClassicChannels(b.opts.Key, a.name, b.uid)
	a.recovery = recoveryOf(b, nsp)
	b.mu.Lock()
	old := b.nsps[a.name]
	if old != nil {
		// socket.Server.SetAdapter creates adapters again without closing
		// the old ones: the new one replaces it.
		old.closed.Store(true)
	}
	b.nsps[a.name] = a
	b.mu.Unlock()
	if old == nil && !b.isClosed() {
		b.t.open(a.name)
	}
	return a
}

// adapterOf returns the adapter of namespace nsp.
func (b *Builder) adapterOf(nsp string) *Adapter {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.nsps[nsp]
}

// receive handles one frame from Redis, on the goroutine of the transport
// that read it: frames of one connection or stream are handled in arrival
// order. Frames for rooms this server does not hold, and its own frames, are
// dropped before decoding.
func (b *Builder) receive(in *inbound) {
	b.stats.received.Add(1)
	a := b.adapterOf(in.nsp)
	if a == nil || a.closed.Load() {
		// A frame for a namespace closed in the meantime, or of another
		// namespace in a stream.
		b.stats.droppedUnsupported.Add(1)
		return
	}
	room := in.room
	if in.kind == kindBroadcast && room == "" {
		r, ok := a.ch.RoomOf(in.channel)
		if !ok {
			b.stats.droppedUnsupported.Add(1)
			return
		}
		room = r
	}
	if room != "" && !a.holdsRoom(room) {
		b.stats.droppedUnknownRoom.Add(1)
		return
	}
	m, err := b.t.decode(in)
	if err != nil {
		switch {
		case errors.Is(err, errOwn):
			b.stats.droppedOwn.Add(1)
		case errors.Is(err, wire.ErrBudget):
			b.stats.droppedOversized.Add(1)
			b.log.Debug("dropped a frame over its memory budget", slog.String("channel", in.channel), slog.Int("bytes", len(in.payload)))
		default:
			b.stats.droppedMalformed.Add(1)
			b.log.Debug("dropped malformed frame", slog.String("channel", in.channel), slog.Any("error", err))
		}
		return
	}
	a.handle(m, in)
}

// Adapter is the adapter of one namespace, the same type in every mode. It
// embeds the server's in-memory adapter for room bookkeeping and adds the
// cluster protocol. It satisfies socket.Adapter; AllRooms is its extra
// cluster operation.
type Adapter struct {
	socket.Adapter

	b       *Builder
	name    string
	ch      wire.ClassicChannels // classic broadcast channels, to read a frame's room
	encoder parser.Encoder
	closed  atomic.Bool

	// roomMu orders the room subscription changes (see syncRooms).
	roomMu sync.Mutex
	// noWait holds the ids of sockets joining rooms for another server's
	// socketsJoin: those joins run on a reader goroutine and never wait for
	// a subscription.
	noWait sync.Map

	// recovery: broadcasts carry their stream offsets for connection state
	// recovery; seq orders their local deliveries (see recovery.go).
	recovery bool
	seqMu    sync.Mutex
	seq      []*queued
	draining bool
	restored restoredGuard // restored sockets, against duplicates (see recovery.go)

	// ackSlot and current serialize the window between BroadcastWithAck and
	// the server's ServerCount call (see acks.go).
	ackSlot chan struct{}
	ackMu   sync.Mutex
	current *ackRequest
}

var _ socket.Adapter = (*Adapter)(nil)

// Close unsubscribes this namespace from Redis. The server calls it when it
// closes and when it removes an empty child namespace; other namespaces and
// the Builder are unaffected. It is idempotent.
func (a *Adapter) Close() {
	if a.closed.Swap(true) {
		return
	}
	b := a.b
	b.mu.Lock()
	own := b.nsps[a.name] == a
	if own {
		delete(b.nsps, a.name)
	}
	b.mu.Unlock()
	if own && !b.isClosed() {
		b.t.shut(a.name)
	}
}

// send encodes m for Redis and hands it to the publisher (see
// Builder.publish); to is the requester of a response, done gets the
// outcome. It reports whether the frame was queued.
func (a *Adapter) send(m *wire.Message, to string, wait bool, done func(id string, err error)) bool {
	b := a.b
	m.UID, m.Nsp = b.uid, a.name
	f := newFrame()
	if err := b.t.encode(a.name, m, to, f); err != nil {
		f.release()
		b.stats.encodeErrors.Add(1)
		b.log.Error("cannot encode a message; not sent", slog.String("nsp", a.name), slog.Int("type", int(m.Type)), slog.Any("error", err))
		if done != nil {
			done("", err)
		}
		return false
	}
	f.done = done
	return b.publish(f, wait)
}

// Broadcast sends a packet to the matching clients of every server: it queues
// one frame for Redis (unless the Local flag is set or Redis is unreachable)
// and delivers to the local clients, without waiting on Redis.
func (a *Adapter) Broadcast(pkt *parser.Packet, opts *socket.BroadcastOptions) {
	o, local := splitOptions(opts)
	pkt.Nsp = a.name
	normalizePacket(pkt)
	if a.recovery {
		a.broadcastInOrder(pkt, o, local || a.closed.Load())
		return
	}
	if local || a.closed.Load() {
		a.deliver(pkt, &o, nil)
		return
	}
	if a.b.load() == StateDegraded {
		a.b.stats.skippedDegraded.Add(1)
		a.deliver(pkt, &o, nil)
		return
	}
	// Encoded before local delivery, which rewrites binary packets.
	a.send(&wire.Message{Type: wire.TypeBroadcast, Packet: toWirePacket(pkt), Opts: o}, "", true, nil)
	a.deliver(pkt, &o, nil)
}

// AddSockets makes the matching sockets of every server join rooms. It applies
// to the local sockets at once, then tells the other servers.
func (a *Adapter) AddSockets(opts *socket.BroadcastOptions, rooms []socket.Room) {
	a.Adapter.AddSockets(opts, rooms)
	a.sendRemote(opts, &wire.Message{Type: wire.TypeSocketsJoin, Rooms: roomNames(rooms)})
}

// DelSockets makes the matching sockets of every server leave rooms.
func (a *Adapter) DelSockets(opts *socket.BroadcastOptions, rooms []socket.Room) {
	a.Adapter.DelSockets(opts, rooms)
	a.sendRemote(opts, &wire.Message{Type: wire.TypeSocketsLeave, Rooms: roomNames(rooms)})
}

// DisconnectSockets disconnects the matching sockets of every server; close
// also closes their underlying connections.
func (a *Adapter) DisconnectSockets(opts *socket.BroadcastOptions, close bool) {
	a.Adapter.DisconnectSockets(opts, close)
	a.sendRemote(opts, &wire.Message{Type: wire.TypeDisconnectSockets, Close: close})
}

func (a *Adapter) sendRemote(opts *socket.BroadcastOptions, m *wire.Message) {
	o, local := splitOptions(opts)
	if local || a.closed.Load() {
		return
	}
	m.Opts = o
	a.send(m, "", true, nil)
}

func roomNames(rooms []socket.Room) []string {
	out := make([]string, len(rooms))
	for i, r := range rooms {
		out[i] = string(r)
	}
	return out
}

// serverCount asks the transport for the number of servers of nsp, within
// ctx and PublishTimeout; while degraded it is 1, without a round trip.
func (b *Builder) serverCount(ctx context.Context, nsp string) (int64, error) {
	if st := b.load(); st == StateDegraded || st == StateClosed {
		return 1, nil
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.PublishTimeout)
	defer cancel()
	return b.t.serverCount(ctx, nsp)
}
