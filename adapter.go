// Package redisadapter lets many instances of a Go Socket.IO server
// (github.com/zishang520/socket.io/v2) act as one cluster through Redis
// pub/sub: a broadcast, a room emit or a private message issued on any
// instance reaches the clients of every instance. Its wire format is the one of
// the Node.js adapter @socket.io/redis-adapter 8.x (classic mode), byte for
// byte, so Go and Node servers can share a cluster.
//
// Wiring takes one expression. Set the adapter in the server options, before
// the server creates its namespaces:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
//	b := redisadapter.New(rdb, nil)
//	defer b.Close()
//	opts := socket.DefaultServerOptions()
//	opts.SetAdapter(b)
//	io := socket.NewServer(httpServer, opts)
//
// # Concurrency
//
// A Builder owns what is per process: one subscriber connection shared by all
// namespaces, one publisher goroutine, the health state and the counters. Its
// methods are safe for concurrent use. Broadcast never waits on Redis: frames
// go to a bounded queue that one goroutine writes in pipelined batches, in
// order. Frames received from Redis are delivered to local clients in arrival
// order by one goroutine.
//
// # When Redis is not there
//
// New does no network I/O and never fails. If Redis is down at start, or goes
// away later, the adapter switches to StateDegraded: every instance keeps
// delivering to its own clients, remote publishes are skipped and counted
// (pub/sub is at-most-once: nothing is replayed), and reconnection goes on in
// the background with capped exponential backoff. When Redis answers again the
// adapter resubscribes and returns to StateConnected by itself. Watch it with
// Builder.State, Builder.Stats and Options.OnStateChange.
package redisadapter

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// Defaults of Options.
const (
	DefaultKey                 = "socket.io"
	DefaultRequestsTimeout     = 5 * time.Second
	DefaultPublishTimeout      = 500 * time.Millisecond
	DefaultPublishQueueSize    = 8192
	DefaultHealthCheckInterval = 2 * time.Second
	DefaultMaxReconnectDelay   = 5 * time.Second
)

// Options configures a Builder. The zero value of every field means its
// default; a nil *Options means all defaults, which are the Node adapter's.
type Options struct {
	// Key is the prefix of every Redis channel. Servers share a cluster when
	// they use the same Key. Default: "socket.io" (DefaultKey).
	Key string

	// RequestsTimeout bounds how long a cross-server request (fetchSockets,
	// serverSideEmit with ack, allRooms) waits for answers. It also bounds
	// subscription commands. Default: 5s (DefaultRequestsTimeout).
	RequestsTimeout time.Duration

	// PublishOnSpecificResponseChannel makes this server answer requests on
	// the requester's own response channel instead of the shared one, so that
	// other servers do not receive and discard the answer. Servers with
	// different settings work together. Default: false (as in Node).
	PublishOnSpecificResponseChannel bool

	// PublishTimeout bounds one pipelined PUBLISH batch, and how long a
	// broadcast waits for room when the publish queue is full before its
	// remote part is dropped (counted in Stats.PublishDropped). Local delivery
	// never waits for it. Default: 500ms (DefaultPublishTimeout).
	PublishTimeout time.Duration

	// PublishQueueSize is the capacity, in frames, of the queue between
	// broadcasting goroutines and the publisher. Default: 8192
	// (DefaultPublishQueueSize).
	PublishQueueSize int

	// HealthCheckInterval is how long the subscriber connection may stay idle
	// before it is pinged; a ping left unanswered for another interval marks
	// the link dead (degraded) and replaces the connection. Default: 2s
	// (DefaultHealthCheckInterval).
	HealthCheckInterval time.Duration

	// MaxReconnectDelay caps the exponential backoff between reconnection
	// attempts (which starts at 100ms). Default: 5s
	// (DefaultMaxReconnectDelay).
	MaxReconnectDelay time.Duration

	// Logger receives the adapter's logs: one warning when Redis becomes
	// unreachable, one info line when it is back, debug lines per dropped
	// frame. Default: nil, nothing is logged.
	Logger *slog.Logger

	// OnStateChange, if set, is called on every state transition, in order,
	// from one goroutine owned by the Builder, with the error that caused the
	// transition (nil when there is none). It must not block.
	OnStateChange func(from, to State, err error)
}

// Validate reports the first invalid field of o. New does not fail: it logs
// the same error through o.Logger and uses the field's default instead.
func (o *Options) Validate() error {
	if o == nil {
		return nil
	}
	var errs []error
	check := func(name string, d time.Duration) {
		if d < 0 {
			errs = append(errs, fmt.Errorf("redisadapter: Options.%s is negative (%v)", name, d))
		}
	}
	check("RequestsTimeout", o.RequestsTimeout)
	check("PublishTimeout", o.PublishTimeout)
	check("HealthCheckInterval", o.HealthCheckInterval)
	check("MaxReconnectDelay", o.MaxReconnectDelay)
	if o.PublishQueueSize < 0 {
		errs = append(errs, fmt.Errorf("redisadapter: Options.PublishQueueSize is negative (%d)", o.PublishQueueSize))
	}
	if strings.ContainsAny(o.Key, "#") {
		errs = append(errs, fmt.Errorf("redisadapter: Options.Key %q contains '#', the channel separator", o.Key))
	}
	return errors.Join(errs...)
}

// withDefaults returns a copy of o with defaults filled in and invalid values
// replaced by defaults.
func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Key == "" || strings.Contains(r.Key, "#") {
		r.Key = DefaultKey
	}
	if r.RequestsTimeout <= 0 {
		r.RequestsTimeout = DefaultRequestsTimeout
	}
	if r.PublishTimeout <= 0 {
		r.PublishTimeout = DefaultPublishTimeout
	}
	if r.PublishQueueSize <= 0 {
		r.PublishQueueSize = DefaultPublishQueueSize
	}
	if r.HealthCheckInterval <= 0 {
		r.HealthCheckInterval = DefaultHealthCheckInterval
	}
	if r.MaxReconnectDelay <= 0 {
		r.MaxReconnectDelay = DefaultMaxReconnectDelay
	}
	if r.MaxReconnectDelay < minBackoff {
		r.MaxReconnectDelay = minBackoff
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	return r
}

// Builder creates the per-namespace adapters of one Socket.IO server and owns
// the process-wide resources they share. It implements
// socket.AdapterConstructor. Use one Builder per socket.Server.
type Builder struct {
	client redis.UniversalClient
	opts   Options
	log    *slog.Logger
	uid    string
	addr   string

	// ownFrame is how every broadcast frame of this server begins (the
	// array header and the uid), to recognise our own frames cheaply.
	ownFrame string

	// publishDeadline bounds one publish batch: PublishTimeout, or less when
	// the client's ReadTimeout is shorter (see readTimeoutOf).
	publishDeadline time.Duration

	mu        sync.RWMutex
	nsps      map[string]*Adapter // by namespace name
	byPattern map[string]*Adapter
	byChannel map[string]*Adapter

	psMu sync.Mutex
	ps   *redis.PubSub

	subMu   sync.Mutex
	subOps  []subOp
	subWake chan struct{}

	queue chan outFrame

	health health
	stats  counters
	reqs   requests

	done      chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ socket.AdapterConstructor = (*Builder)(nil)

// New returns a Builder that connects Socket.IO servers through client, which
// may be a *redis.Client, *redis.ClusterClient or a failover client. It does no
// network I/O and never fails: if Redis is unreachable the adapter starts
// degraded and connects in the background. A nil opts means defaults.
//
// The caller keeps ownership of client: Close never closes it. New panics if
// client is nil, a programming error.
func New(client redis.UniversalClient, opts *Options) *Builder {
	if client == nil {
		panic("redisadapter: New called with a nil redis client")
	}
	o := opts.withDefaults()
	b := &Builder{
		client:    client,
		opts:      o,
		log:       o.Logger,
		uid:       newUID(),
		addr:      clientAddr(client),
		nsps:      make(map[string]*Adapter),
		byPattern: make(map[string]*Adapter),
		byChannel: make(map[string]*Adapter),
		subWake:   make(chan struct{}, 1),
		queue:     make(chan outFrame, o.PublishQueueSize),
		done:      make(chan struct{}),
		reqs:      requests{pending: map[string]*pendingRequest{}, acks: map[string]*ackRequest{}},
	}
	b.ownFrame = ownFramePrefix(b.uid)
	b.publishDeadline = o.PublishTimeout
	if rt := readTimeoutOf(client); rt > 0 && rt < b.publishDeadline {
		b.publishDeadline = rt
	}
	b.log = b.log.With(slog.String("uid", b.uid))
	if err := opts.Validate(); err != nil {
		b.log.Error("invalid options, using defaults for the invalid fields", slog.Any("error", err))
	}
	b.health.init()
	// Subscribe with no channel does not connect; the read loop connects.
	b.ps = client.Subscribe(context.Background())
	b.wg.Add(5)
	go b.readLoop()
	go b.subscribeLoop()
	go b.publishLoop()
	go b.notifyLoop()
	go b.probeLoop()
	return b
}

// UID returns this server's identifier in the cluster, which tags its frames.
func (b *Builder) UID() string { return b.uid }

// Close stops every goroutine the Builder started, closes its subscriber
// connection and waits for all of it. Frames still queued are not sent. It
// does not close the Redis client passed to New. Close is idempotent; it
// always returns nil and has an error result for future use and io.Closer.
func (b *Builder) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		h := &b.health
		h.mu.Lock()
		from := State(h.state.Load())
		b.transitionLocked(from, StateClosed, nil)
		h.mu.Unlock()
		close(b.done)
		b.psMu.Lock()
		_ = b.ps.Close()
		b.psMu.Unlock()
		b.wg.Wait()
	})
	return nil
}

func (b *Builder) isClosed() bool { return b.closed.Load() }

// New implements socket.AdapterConstructor: it creates the adapter of one
// namespace and subscribes to its channels in the background.
func (b *Builder) New(nsp socket.Namespace) socket.Adapter {
	a := &Adapter{b: b, name: nsp.Name(), ackSlot: make(chan struct{}, 1)}
	a.Adapter = socket.MakeAdapter()
	a.Prototype(a)
	a.Construct(nsp)
	a.encoder = nsp.Server().Encoder()
	a.ch = newChannels(b.opts.Key, a.name, b.uid)
	b.register(a)
	return a
}

// register makes a the adapter of its namespace. An adapter created again for
// the same namespace (socket.Server.SetAdapter does that without closing the
// old one) replaces the previous one.
func (b *Builder) register(a *Adapter) {
	b.mu.Lock()
	old := b.nsps[a.name]
	if old != nil {
		old.closed.Store(true)
	}
	b.nsps[a.name] = a
	b.byPattern[a.ch.pattern] = a
	for _, c := range a.ch.subscribed() {
		b.byChannel[c] = a
	}
	b.mu.Unlock()
	if old == nil && !b.isClosed() {
		b.enqueueSub(subOp{subscribe: true, patterns: []string{a.ch.pattern}, channels: a.ch.subscribed()})
	}
}

// unregister removes a and unsubscribes its namespace.
func (b *Builder) unregister(a *Adapter) {
	b.mu.Lock()
	if b.nsps[a.name] != a {
		b.mu.Unlock()
		return
	}
	delete(b.nsps, a.name)
	delete(b.byPattern, a.ch.pattern)
	for _, c := range a.ch.subscribed() {
		delete(b.byChannel, c)
	}
	b.mu.Unlock()
	if !b.isClosed() {
		b.enqueueSub(subOp{subscribe: false, patterns: []string{a.ch.pattern}, channels: a.ch.subscribed()})
	}
}

// subscribed lists the plain channels a namespace listens to.
func (c *channels) subscribed() []string {
	return []string{c.request, c.response, c.specificResponse}
}

// Adapter is the adapter of one namespace. It embeds the server's in-memory
// adapter for room bookkeeping and adds the cluster protocol. It satisfies
// socket.Adapter.
type Adapter struct {
	socket.Adapter

	b       *Builder
	name    string
	ch      channels
	encoder parser.Encoder
	closed  atomic.Bool

	// ackSlot and current serialize the window between BroadcastWithAck
	// and the server's ServerCount call (see ackRequest.arm).
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
	a.b.unregister(a)
}

// Broadcast sends a packet to the matching clients of every server: it queues
// one frame for Redis (unless the Local flag is set or Redis is unreachable)
// and delivers to the local clients, without waiting on Redis.
func (a *Adapter) Broadcast(pkt *parser.Packet, opts *socket.BroadcastOptions) {
	rooms, except, flags, local := splitOptions(opts)
	pkt.Nsp = a.name
	if data, err := normalizeData(pkt.Data); err == nil {
		pkt.Data = data
	}
	if !local && !a.closed.Load() {
		a.publishBroadcast(pkt, rooms, except, flags)
	}
	a.deliver(pkt, rooms, except, flags, nil)
}

// publishBroadcast encodes the frame before local delivery (the local encoder
// rewrites the packet type of binary packets) and queues it.
func (a *Adapter) publishBroadcast(pkt *parser.Packet, rooms, except []socket.Room, flags wireFlags) {
	b := a.b
	if b.load() == StateDegraded {
		b.stats.skippedDegraded.Add(1)
		return
	}
	e := getEncoder()
	if err := e.appendBroadcast(b.uid, pkt, rooms, except, flags); err != nil {
		putEncoder(e)
		b.log.Error("cannot encode broadcast; delivered locally only", slog.String("nsp", a.name), slog.Any("error", err))
		return
	}
	channel := a.ch.broadcast
	if len(rooms) == 1 {
		channel = a.ch.roomChannel(rooms[0])
	}
	b.publish(channel, e)
}

// ServerCount returns the number of servers subscribed to this namespace,
// from PUBSUB NUMSUB on the request channel (summed over every master of a
// Redis Cluster). While degraded it returns 1 without asking Redis.
//
// Right after BroadcastWithAck, socket.io/v2 calls ServerCount to learn how
// many servers will report a client count. In that case ServerCount also
// waits (up to the broadcast's timeout) for the other servers' counts and
// hands them to the server on the calling goroutine: see ackRequest.arm.
func (a *Adapter) ServerCount() int64 {
	a.ackMu.Lock()
	ar := a.current
	a.ackMu.Unlock()
	if ar != nil {
		ar.handOver(a.b.done, a.b.opts.PublishTimeout)
		a.releaseAckSlot(ar)
		return int64(1 + ar.others)
	}
	n, err := a.b.serverCount(a.ch.request)
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// releaseAckSlot ends the BroadcastWithAck window of ar, if it is the current
// one.
func (a *Adapter) releaseAckSlot(ar *ackRequest) {
	a.ackMu.Lock()
	defer a.ackMu.Unlock()
	if a.current == ar {
		a.current = nil
		<-a.ackSlot
	}
}

// splitOptions extracts what the adapter needs from the server's options.
func splitOptions(opts *socket.BroadcastOptions) (rooms, except []socket.Room, flags wireFlags, local bool) {
	if opts == nil {
		return nil, nil, wireFlags{}, false
	}
	rooms = setKeys(opts.Rooms)
	except = setKeys(opts.Except)
	flags = flagsFromOptions(opts.Flags)
	local = opts.Flags != nil && opts.Flags.Local
	return rooms, except, flags, local
}

// onBroadcast handles a frame received on the namespace's broadcast pattern.
func (a *Adapter) onBroadcast(channel, payload string) {
	b := a.b
	room, ok := a.ch.roomOf(channel)
	if !ok {
		b.stats.droppedUnsupported.Add(1)
		return
	}
	if room != "" && !a.holdsRoom(room) {
		b.stats.droppedUnknownRoom.Add(1)
		return
	}
	if strings.HasPrefix(payload, b.ownFrame) {
		// [uid, ...] with our uid: our own broadcast, back through the
		// pattern subscription. Dropped before decoding.
		b.stats.droppedOwn.Add(1)
		return
	}
	f, err := decodeBroadcast(stringBytes(payload))
	if err != nil {
		b.stats.droppedMalformed.Add(1)
		b.log.Debug("dropped malformed broadcast frame", slog.String("channel", channel), slog.Any("error", err))
		return
	}
	if f.UID == b.uid {
		b.stats.droppedOwn.Add(1)
		return
	}
	if f.Packet.Nsp != a.name {
		b.stats.droppedUnsupported.Add(1)
		return
	}
	a.deliver(&f.Packet, f.Rooms, f.Except, f.Flags, nil)
}

func newUID() string {
	var buf [9]byte
	_, _ = rand.Read(buf[:])
	return base64.RawURLEncoding.EncodeToString(buf[:])
}

// readTimeoutOf returns the client's read timeout, or 0 when unknown or
// disabled.
//
// go-redis retries a command whose reply timed out while its context is still
// alive; for PUBLISH that means a second delivery of a frame Redis already
// sent. The publisher's context therefore never outlives the client's read
// timeout: when a reply times out, the context has expired too, and go-redis
// gives up instead of retrying.
func readTimeoutOf(c redis.UniversalClient) time.Duration {
	var rt time.Duration
	switch t := c.(type) {
	case *redis.Client:
		rt = t.Options().ReadTimeout
	case *redis.ClusterClient:
		rt = t.Options().ReadTimeout
	default:
		return 0
	}
	if rt <= 0 {
		return 0
	}
	return rt
}

// clientAddr describes the Redis endpoint for log lines.
func clientAddr(c redis.UniversalClient) string {
	switch t := c.(type) {
	case *redis.Client:
		return t.Options().Addr
	case *redis.ClusterClient:
		return strings.Join(t.Options().Addrs, ",")
	case *redis.Ring:
		return "ring"
	}
	return fmt.Sprintf("%T", c)
}
