package redisadapter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/zishang520/engine.io/v2/types"
	"github.com/zishang520/socket.io-go-parser/v2/parser"
	"github.com/zishang520/socket.io/v2/socket"
)

// Sharded mode: the protocol of createShardedAdapter of
// @socket.io/redis-adapter 8.x (Redis 7 sharded pub/sub, SPUBLISH and
// SSUBSCRIBE), which scales with the masters of a Redis Cluster because a
// sharded channel lives on the one master that owns its slot.
//
// Channels of a namespace nsp, with prefix p (ShardedOptions.ChannelPrefix):
//
//	p#nsp#        every message type (the main channel)
//	p#nsp#uid#    responses to the server uid
//	p#nsp#room#   broadcasts to exactly one room (dynamic modes)
//
// Receive side: one *redis.PubSub (one connection) per Redis master, shared
// by every namespace of the ShardedBuilder; on a standalone or failover client,
// one PubSub in all. A channel is only ever subscribed on the PubSub of the
// master owning its slot, and a command only carries channels of one slot, so
// a Redis Cluster never answers CROSSSLOT. Each PubSub has a reader goroutine;
// readers hand frames to one dispatch goroutine, which handles them in arrival
// order. One manager goroutine turns the wanted set of channels into
// (un)subscriptions, and moves channels when the cluster's slots move.
//
// Reconnection never relies on go-redis's resubscription (which sends every
// channel of a PubSub in one SSUBSCRIBE, refused by a cluster with CROSSSLOT):
// after a connection error, the reader replaces the PubSub with a fresh one
// and subscribes its channels slot by slot.

// SubscriptionMode selects which room channels a sharded server subscribes to.
type SubscriptionMode string

// Subscription modes, as in Node's createShardedAdapter.
const (
	// SubscriptionModeStatic: only the main and response channels. Every
	// broadcast goes through the main channel and reaches every server.
	SubscriptionModeStatic SubscriptionMode = "static"
	// SubscriptionModeDynamic: plus one channel per public room (a room that
	// is not a socket id). Node treats a room of 20 characters as a socket id
	// and publishes to the main channel for it; Go socket ids have 24
	// characters, so Node publishes to their room channel: a Go server in
	// this mode therefore also subscribes to its own socket-id rooms whose
	// length is not 20. The default.
	SubscriptionModeDynamic SubscriptionMode = "dynamic"
	// SubscriptionModeDynamicPrivate: one channel per room, socket-id rooms
	// included.
	SubscriptionModeDynamicPrivate SubscriptionMode = "dynamic-private"
)

// Defaults of ShardedOptions.
const (
	DefaultChannelPrefix    = "socket.io"
	DefaultSubscriptionMode = SubscriptionModeDynamic
	DefaultJoinTimeout      = time.Second
)

// ShardedOptions configures a ShardedBuilder. A nil *ShardedOptions means all
// defaults (Node's: prefix "socket.io", dynamic mode); the zero value of each
// field means its default.
type ShardedOptions struct {
	// ChannelPrefix is the prefix of every channel. Default: "socket.io".
	ChannelPrefix string

	// SubscriptionMode is static, dynamic or dynamic-private. Servers of a
	// cluster must use the same mode. Default: dynamic.
	SubscriptionMode SubscriptionMode

	// RequestsTimeout bounds how long fetchSockets (unless the operator has
	// its own timeout) and serverSideEmit with ack wait for the other
	// servers. It also bounds subscription commands. Default: 5s, Node's fixed
	// value.
	RequestsTimeout time.Duration

	// JoinTimeout bounds how long Socket.Join (and the join of every new
	// socket to its own room) waits for Redis to confirm the subscription to
	// a new room channel in the dynamic modes, so that a broadcast to the room
	// sent by another server right after the join is not lost. A negative
	// value disables the wait (Node's behaviour: a broadcast in the first
	// round trip after a join may be lost). Joins applied for another
	// server's socketsJoin never wait. Default: 1s.
	JoinTimeout time.Duration

	// PublishTimeout, PublishQueueSize, HealthCheckInterval,
	// MaxReconnectDelay, Logger and OnStateChange mean what they mean in
	// Options.
	PublishTimeout      time.Duration
	PublishQueueSize    int
	HealthCheckInterval time.Duration
	MaxReconnectDelay   time.Duration
	Logger              *slog.Logger
	OnStateChange       func(from, to State, err error)
}

// Validate reports the invalid fields of o. NewSharded does not fail: it logs
// the same error and uses the defaults of the invalid fields.
func (o *ShardedOptions) Validate() error {
	if o == nil {
		return nil
	}
	var errs []error
	switch o.SubscriptionMode {
	case "", SubscriptionModeStatic, SubscriptionModeDynamic, SubscriptionModeDynamicPrivate:
	default:
		errs = append(errs, fmt.Errorf("redisadapter: ShardedOptions.SubscriptionMode %q is not static, dynamic or dynamic-private", o.SubscriptionMode))
	}
	if strings.Contains(o.ChannelPrefix, "#") {
		errs = append(errs, fmt.Errorf("redisadapter: ShardedOptions.ChannelPrefix %q contains '#', the channel separator", o.ChannelPrefix))
	}
	if err := o.common().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// common returns the fields shared with Options.
func (o *ShardedOptions) common() *Options {
	return &Options{
		Key:                 o.ChannelPrefix,
		RequestsTimeout:     o.RequestsTimeout,
		PublishTimeout:      o.PublishTimeout,
		PublishQueueSize:    o.PublishQueueSize,
		HealthCheckInterval: o.HealthCheckInterval,
		MaxReconnectDelay:   o.MaxReconnectDelay,
		Logger:              o.Logger,
		OnStateChange:       o.OnStateChange,
	}
}

func (o *ShardedOptions) withDefaults() (ShardedOptions, Options) {
	var r ShardedOptions
	if o != nil {
		r = *o
	}
	switch r.SubscriptionMode {
	case SubscriptionModeStatic, SubscriptionModeDynamic, SubscriptionModeDynamicPrivate:
	default:
		r.SubscriptionMode = DefaultSubscriptionMode
	}
	if r.JoinTimeout == 0 {
		r.JoinTimeout = DefaultJoinTimeout
	}
	c := r.common().withDefaults()
	r.ChannelPrefix = c.Key
	r.RequestsTimeout = c.RequestsTimeout
	r.PublishTimeout = c.PublishTimeout
	r.PublishQueueSize = c.PublishQueueSize
	r.HealthCheckInterval = c.HealthCheckInterval
	r.MaxReconnectDelay = c.MaxReconnectDelay
	r.Logger = c.Logger
	return r, c
}

// Tuning of the subscription manager.
const (
	// maxChannelsPerCommand bounds one SSUBSCRIBE or SUNSUBSCRIBE.
	maxChannelsPerCommand = 512
	// topologyCheckInterval is how often a cluster's slot owners are
	// checked against the subscriptions (they are also checked on MOVED
	// replies, unsolicited unsubscriptions and connection errors).
	topologyCheckInterval = 5 * time.Second
	// minRebalanceInterval spaces out topology reloads.
	minRebalanceInterval = 100 * time.Millisecond
	// inboxSize is the capacity of the queue between the readers and the
	// dispatch goroutine.
	inboxSize = 4096
)

// ShardedBuilder creates the per-namespace adapters of one Socket.IO server in
// sharded mode and owns what they share: one subscriber connection per Redis
// master, the publisher, the health state and the counters. It implements
// socket.AdapterConstructor. Use one ShardedBuilder per socket.Server.
type ShardedBuilder struct {
	// core holds the machinery shared with the classic adapter: state
	// machine, counters, pending requests and the publish queue. Its own
	// classic goroutines are never started.
	core    *Builder
	client  redis.UniversalClient
	cluster *redis.ClusterClient // nil unless client is a cluster client
	opts    ShardedOptions
	uid     string

	mu     sync.Mutex
	nsps   map[string]*ShardedAdapter
	want   map[string]*chanWant  // channels that should be subscribed
	placed map[string]*shardConn // channels subscribed (or being), by connection
	conns  map[string]*shardConn // by master address ("" on a standalone client)
	failed map[*shardConn]error  // connections currently failing
	wake   chan struct{}
	// rebalance asks the manager to check slot owners.
	rebalance     atomic.Bool
	lastRebalance time.Time

	inbox chan inbound

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ socket.AdapterConstructor = (*ShardedBuilder)(nil)

// chanWant is a channel some namespace needs.
type chanWant struct {
	a     *ShardedAdapter
	kind  int
	ready chan struct{} // closed once Redis confirmed the subscription
	isSet bool
}

const (
	chanMain = iota
	chanResponse
	chanRoom
)

func (w *chanWant) markReady() {
	if !w.isSet {
		w.isSet = true
		close(w.ready)
	}
}

// inbound is a frame read from Redis, waiting for the dispatch goroutine.
type inbound struct {
	channel string
	payload string
}

// NewSharded returns a ShardedBuilder for client: a *redis.Client (standalone
// Redis 7 or later), a failover client, or a *redis.ClusterClient. Like New,
// it does no network I/O and never fails: if Redis is unreachable the adapter
// starts degraded and connects in the background. A nil opts means Node's
// defaults. The caller keeps ownership of client.
func NewSharded(client redis.UniversalClient, opts *ShardedOptions) *ShardedBuilder {
	if client == nil {
		panic("redisadapter: NewSharded called with a nil redis client")
	}
	if _, ring := client.(*redis.Ring); ring {
		// A Ring shards keys on the client side: sharded pub/sub needs a
		// standalone server, a failover client or a Redis Cluster.
		panic("redisadapter: NewSharded does not support *redis.Ring")
	}
	so, o := opts.withDefaults()
	b := &ShardedBuilder{
		client: client,
		opts:   so,
		uid:    newHexID(),
		nsps:   map[string]*ShardedAdapter{},
		want:   map[string]*chanWant{},
		placed: map[string]*shardConn{},
		conns:  map[string]*shardConn{},
		failed: map[*shardConn]error{},
		wake:   make(chan struct{}, 1),
		inbox:  make(chan inbound, inboxSize),
	}
	b.cluster, _ = client.(*redis.ClusterClient)
	core := &Builder{
		client: client,
		opts:   o,
		uid:    b.uid,
		addr:   clientAddr(client),
		queue:  make(chan outFrame, o.PublishQueueSize),
		done:   make(chan struct{}),
		reqs:   requests{pending: map[string]*pendingRequest{}, acks: map[string]*ackRequest{}},
	}
	core.publishDeadline = o.PublishTimeout
	if rt := readTimeoutOf(client); rt > 0 && rt < core.publishDeadline {
		core.publishDeadline = rt
	}
	core.log = o.Logger.With(slog.String("uid", b.uid), slog.String("mode", "sharded-"+string(so.SubscriptionMode)))
	if err := opts.Validate(); err != nil {
		core.log.Error("invalid options, using defaults for the invalid fields", slog.Any("error", err))
	}
	core.health.init()
	b.core = core
	b.done = core.done
	core.wg.Add(2)
	go core.notifyLoop()
	go core.probeLoop()
	b.wg.Add(3)
	go b.manageLoop()
	go b.dispatchLoop()
	go b.publishLoop()
	return b
}

// newHexID returns 16 hexadecimal characters, like Node's randomId.
func newHexID() string {
	var buf [8]byte
	_, _ = rand.Read(buf[:])
	return hex.EncodeToString(buf[:])
}

// UID returns this server's identifier in the cluster.
func (b *ShardedBuilder) UID() string { return b.uid }

// State returns the adapter's connection state.
func (b *ShardedBuilder) State() State { return b.core.load() }

// Stats returns a snapshot of the adapter's counters.
func (b *ShardedBuilder) Stats() Stats { return b.core.Stats() }

// SubscriptionMode returns the mode in use.
func (b *ShardedBuilder) SubscriptionMode() SubscriptionMode { return b.opts.SubscriptionMode }

// Close stops every goroutine the ShardedBuilder started, closes its
// subscriber connections and waits for all of it. Frames still queued are not
// sent. It does not close the Redis client. It is idempotent and returns nil.
func (b *ShardedBuilder) Close() error {
	b.closeOnce.Do(func() {
		core := b.core
		core.closed.Store(true)
		h := &core.health
		h.mu.Lock()
		core.transitionLocked(State(h.state.Load()), StateClosed, nil)
		h.mu.Unlock()
		close(core.done)
		b.mu.Lock()
		conns := make([]*shardConn, 0, len(b.conns))
		for _, c := range b.conns {
			conns = append(conns, c)
		}
		b.mu.Unlock()
		for _, c := range conns {
			c.close()
		}
		b.wg.Wait()
		core.wg.Wait()
	})
	return nil
}

func (b *ShardedBuilder) isClosed() bool { return b.core.isClosed() }

func (b *ShardedBuilder) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// New implements socket.AdapterConstructor.
func (b *ShardedBuilder) New(nsp socket.Namespace) socket.Adapter {
	a := &ShardedAdapter{b: b, name: nsp.Name()}
	a.Adapter = socket.MakeAdapter()
	a.Prototype(a)
	a.Construct(nsp)
	a.main = b.opts.ChannelPrefix + "#" + a.name + "#"
	a.response = a.main + b.uid + "#"
	// core is a view of this namespace for the delivery and acknowledgement
	// helpers of the classic adapter: it shares the in-memory state.
	a.core = &Adapter{Adapter: a.Adapter, b: b.core, name: a.name, encoder: nsp.Server().Encoder(), ackSlot: make(chan struct{}, 1)}
	b.register(a)
	return a
}

// register makes a the adapter of its namespace; an adapter created again for
// the same namespace (socket.Server.SetAdapter) replaces the previous one.
func (b *ShardedBuilder) register(a *ShardedAdapter) {
	b.mu.Lock()
	if old := b.nsps[a.name]; old != nil {
		old.closed.Store(true)
		b.dropWantsLocked(old)
	}
	b.nsps[a.name] = a
	if !b.isClosed() {
		b.addWantLocked(a.main, a, chanMain)
		b.addWantLocked(a.response, a, chanResponse)
	}
	b.mu.Unlock()
	b.poke()
}

func (b *ShardedBuilder) unregister(a *ShardedAdapter) {
	b.mu.Lock()
	if b.nsps[a.name] == a {
		delete(b.nsps, a.name)
	}
	b.dropWantsLocked(a)
	b.mu.Unlock()
	b.poke()
}

func (b *ShardedBuilder) dropWantsLocked(a *ShardedAdapter) {
	for ch, w := range b.want {
		if w.a == a {
			delete(b.want, ch)
		}
	}
}

// addWantLocked records that channel must be subscribed for a. b.mu is held.
func (b *ShardedBuilder) addWantLocked(channel string, a *ShardedAdapter, kind int) *chanWant {
	if w := b.want[channel]; w != nil {
		w.a, w.kind = a, kind
		return w
	}
	w := &chanWant{a: a, kind: kind, ready: make(chan struct{})}
	if c := b.placed[channel]; c != nil && c.isConfirmed(channel) {
		w.markReady()
	}
	b.want[channel] = w
	return w
}

// ShardedAdapter is the adapter of one namespace in sharded mode. It embeds
// the server's in-memory adapter and adds the ClusterAdapter protocol.
type ShardedAdapter struct {
	socket.Adapter

	b        *ShardedBuilder
	core     *Adapter
	name     string
	main     string
	response string
	closed   atomic.Bool

	// noWait holds the ids of sockets joining rooms for another server's
	// socketsJoin: those joins run on the dispatch goroutine and never wait
	// for a subscription.
	noWait sync.Map
}

var _ socket.Adapter = (*ShardedAdapter)(nil)

// Close unsubscribes this namespace. It is idempotent.
func (a *ShardedAdapter) Close() {
	if a.closed.Swap(true) {
		return
	}
	a.b.unregister(a)
}

// roomChannel is the dynamic channel of a room.
func (a *ShardedAdapter) roomChannel(room socket.Room) string { return a.main + string(room) + "#" }

// subscribesTo reports whether this server subscribes to the channel of a
// room it holds, by its subscription mode.
func (a *ShardedAdapter) subscribesTo(room socket.Room) bool {
	switch a.b.opts.SubscriptionMode {
	case SubscriptionModeDynamicPrivate:
		return true
	case SubscriptionModeDynamic:
		// Node subscribes to public rooms only (rooms that are not a local
		// socket id). Node senders use the room channel for every room that
		// is not 20 characters long, so the socket-id rooms of Go sockets (24
		// characters) are subscribed too.
		if _, isSid := a.Sids().Load(socket.SocketId(room)); !isSid {
			return true
		}
		return !looksLikeNodeSocketID(room)
	}
	return false
}

// channelFor is Node's computeChannel for a broadcast: the room channel for
// exactly one room, without acknowledgements, in dynamic-private mode, or in
// dynamic mode when the room does not look like a (Node) socket id.
func (a *ShardedAdapter) channelFor(rooms []socket.Room, withAck bool) string {
	if withAck || len(rooms) != 1 {
		return a.main
	}
	switch a.b.opts.SubscriptionMode {
	case SubscriptionModeDynamicPrivate:
		return a.roomChannel(rooms[0])
	case SubscriptionModeDynamic:
		if !looksLikeNodeSocketID(rooms[0]) {
			return a.roomChannel(rooms[0])
		}
	}
	return a.main
}

// syncRooms brings the wanted room channels of a in line with the rooms it
// holds now, and returns the readiness channels of the wanted ones not yet
// confirmed. It reads the current state under b.mu, so whatever the order in
// which concurrent joins and leaves call it, the last call sees their final
// result.
func (a *ShardedAdapter) syncRooms(rooms []socket.Room) []chan struct{} {
	b := a.b
	if b.opts.SubscriptionMode == SubscriptionModeStatic || len(rooms) == 0 {
		return nil
	}
	var waits []chan struct{}
	changed := false
	b.mu.Lock()
	for _, r := range rooms {
		ch := a.roomChannel(r)
		wanted := !a.closed.Load() && !b.isClosed() && a.core.holdsRoom(string(r)) && a.subscribesTo(r)
		w := b.want[ch]
		switch {
		case wanted && w == nil:
			w = b.addWantLocked(ch, a, chanRoom)
			changed = true
		case !wanted && w != nil && w.a == a && w.kind == chanRoom:
			delete(b.want, ch)
			changed = true
			w = nil
		}
		if w != nil && !w.isSet {
			waits = append(waits, w.ready)
		}
	}
	b.mu.Unlock()
	if changed {
		b.poke()
	}
	return waits
}

// waitReady waits, up to JoinTimeout in all, for the subscriptions of waits.
// It does not wait while Redis is unreachable.
func (b *ShardedBuilder) waitReady(waits []chan struct{}) {
	if len(waits) == 0 || b.opts.JoinTimeout < 0 {
		return
	}
	if st := b.core.load(); st == StateDegraded || st == StateClosed {
		return
	}
	t := time.NewTimer(b.opts.JoinTimeout)
	defer t.Stop()
	for _, w := range waits {
		select {
		case <-w:
		case <-t.C:
			b.core.log.Debug("room subscription not confirmed within JoinTimeout", slog.Duration("timeout", b.opts.JoinTimeout))
			return
		case <-b.done:
			return
		}
	}
}

// AddAll adds a socket to rooms, subscribes to the new rooms' channels (in
// the dynamic modes) and waits, up to JoinTimeout, for Redis to confirm them.
func (a *ShardedAdapter) AddAll(id socket.SocketId, rooms *types.Set[socket.Room]) {
	a.Adapter.AddAll(id, rooms)
	if rooms == nil {
		return
	}
	waits := a.syncRooms(rooms.Keys())
	if _, remote := a.noWait.Load(id); remote {
		return
	}
	a.b.waitReady(waits)
}

// Del removes a socket from a room, and unsubscribes from the room's channel
// when it was the last local member.
func (a *ShardedAdapter) Del(id socket.SocketId, room socket.Room) {
	a.Adapter.Del(id, room)
	a.syncRooms([]socket.Room{room})
}

// DelAll removes a socket from all its rooms.
func (a *ShardedAdapter) DelAll(id socket.SocketId) {
	var rooms []socket.Room
	if r := a.Adapter.SocketRooms(id); r != nil {
		rooms = r.Keys()
	}
	a.Adapter.DelAll(id)
	a.syncRooms(rooms)
}

// publishMessage encodes a message and queues it on channel.
func (a *ShardedAdapter) publishMessage(channel string, typ int, data omap) bool {
	e, err := encodeShardMessage(typ, data, a.b.uid, a.name)
	if err != nil {
		a.b.core.log.Error("cannot encode message; not sent", slog.String("nsp", a.name), slog.Int("type", typ), slog.Any("error", err))
		return false
	}
	return a.b.core.publish(channel, e)
}

// publishResponse answers another server on its response channel, without
// ever blocking (the dispatch goroutine calls it).
func (a *ShardedAdapter) publishResponse(requesterUID string, typ int, data omap) {
	e, err := encodeShardMessage(typ, data, a.b.uid, a.name)
	if err != nil {
		a.b.core.log.Error("cannot encode response; not sent", slog.String("nsp", a.name), slog.Int("type", typ), slog.Any("error", err))
		return
	}
	a.b.core.publishNoWait(a.main+requesterUID+"#", e)
}

// Broadcast sends a packet to the matching clients of every server: one
// message for Redis (unless Local or degraded), then local delivery, never
// waiting on Redis.
func (a *ShardedAdapter) Broadcast(pkt *parser.Packet, opts *socket.BroadcastOptions) {
	rooms, except, flags, local := splitOptions(opts)
	pkt.Nsp = a.name
	if data, err := normalizeData(pkt.Data); err == nil {
		pkt.Data = data
	}
	if !local && !a.closed.Load() {
		if a.b.core.load() == StateDegraded {
			a.b.core.stats.skippedDegraded.Add(1)
		} else {
			// Encoded before local delivery: the local encoder rewrites
			// the type of binary packets.
			a.publishMessage(a.channelFor(rooms, false), shBroadcast, broadcastData(pkt, "", rooms, except, flags))
		}
	}
	a.core.deliver(pkt, rooms, except, flags, nil)
}

// ServerCount returns the number of servers subscribed to this namespace's
// main channel (PUBSUB SHARDNUMSUB, summed over a cluster's masters), or 1
// while degraded. Right after BroadcastWithAck it hands the other servers'
// client counts to the server, as Adapter.ServerCount does.
func (a *ShardedAdapter) ServerCount() int64 {
	c := a.core
	c.ackMu.Lock()
	ar := c.current
	c.ackMu.Unlock()
	if ar != nil {
		ar.handOver(a.b.done, a.b.opts.PublishTimeout)
		c.releaseAckSlot(ar)
		return int64(1 + ar.others)
	}
	n, err := a.b.serverCount(a.main)
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// serverCount returns PUBSUB SHARDNUMSUB of channel, summed over every master
// of a cluster; 1 while degraded, without a round trip.
func (b *ShardedBuilder) serverCount(channel string) (int64, error) {
	if st := b.core.load(); st == StateDegraded || st == StateClosed {
		return 1, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.PublishTimeout)
	defer cancel()
	if b.cluster != nil {
		var total atomic.Int64
		err := b.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			m, err := c.PubSubShardNumSub(ctx, channel).Result()
			if err != nil {
				return err
			}
			total.Add(m[channel])
			return nil
		})
		return total.Load(), err
	}
	m, err := b.client.PubSubShardNumSub(ctx, channel).Result()
	if err != nil {
		return 0, err
	}
	return m[channel], nil
}

func (a *ShardedAdapter) otherServers() int {
	n, err := a.b.serverCount(a.main)
	if err != nil || n <= 1 {
		return 0
	}
	return int(n - 1)
}

// BroadcastWithAck sends a packet expecting acknowledgements to the matching
// clients of every server (always through the main channel, as in Node).
func (a *ShardedAdapter) BroadcastWithAck(pkt *parser.Packet, opts *socket.BroadcastOptions, clientCountCallback func(uint64), ack socket.Ack) {
	b := a.b
	core := b.core
	rooms, except, flags, local := splitOptions(opts)
	pkt.Nsp = a.name
	if data, err := normalizeData(pkt.Data); err == nil {
		pkt.Data = data
	}
	others := 0
	if !local && core.load() != StateDegraded && !a.closed.Load() {
		others = a.otherServers()
	}
	ar := newAckRequest(flags, b.opts.RequestsTimeout, others, clientCountCallback, ack)
	select {
	case a.core.ackSlot <- struct{}{}:
	case <-b.done:
		return
	}
	a.core.ackMu.Lock()
	a.core.current = ar
	a.core.ackMu.Unlock()
	time.AfterFunc(armFallback, func() {
		a.core.releaseAckSlot(ar)
		ar.arm()
	})
	if others > 0 {
		id := newHexID()
		core.reqs.mu.Lock()
		core.reqs.acks[id] = ar
		core.reqs.mu.Unlock()
		timeout := ar.timeout
		time.AfterFunc(timeout, func() {
			core.reqs.mu.Lock()
			delete(core.reqs.acks, id)
			core.reqs.mu.Unlock()
		})
		f := flags
		f.Timeout = &timeout
		a.publishMessage(a.main, shBroadcast, broadcastData(pkt, id, rooms, except, f))
	}
	a.core.localBroadcastWithAck(pkt, rooms, except, flags, clientCountCallback, ar.localAck(ack))
}

// FetchSockets returns the matching sockets of every server. Other servers
// answer within the operator's timeout (io.Timeout(d)) or RequestsTimeout;
// after it, the sockets gathered so far come with Node's timeout error.
func (a *ShardedAdapter) FetchSockets(opts *socket.BroadcastOptions) func(func([]socket.SocketDetails, error)) {
	return func(callback func([]socket.SocketDetails, error)) {
		rooms, except, flags, local := splitOptions(opts)
		var localSockets []socket.SocketDetails
		a.core.forEachSocket(rooms, except, func(s *socket.Socket) { localSockets = append(localSockets, s) })
		others := 0
		if !local && !a.closed.Load() {
			others = a.otherServers()
		}
		if others == 0 {
			callback(localSockets, nil)
			return
		}
		timeout := a.b.opts.RequestsTimeout
		if flags.Timeout != nil && *flags.Timeout > 0 {
			timeout = *flags.Timeout
		}
		p := &pendingRequest{id: newHexID(), kind: shFetchSockets, expected: others, sockets: localSockets}
		p.finish = func(p *pendingRequest, err error) {
			if err != nil {
				err = fmt.Errorf("timeout reached: only %d responses received out of %d", p.received, p.expected)
			}
			callback(p.sockets, err)
		}
		data := omap{{"opts", optsOmap(rooms, except, flags)}, {"requestId", p.id}}
		a.b.core.start(p, func() bool { return a.publishMessage(a.main, shFetchSockets, data) }, timeout, errTimeout)
	}
}

// AllRooms returns the rooms of every server of the namespace. The sharded
// protocol has no request for it: it is the union of the rooms of every
// socket fetchSockets returns (a room exists while a socket is in it).
func (a *ShardedAdapter) AllRooms(ctx context.Context) ([]socket.Room, error) {
	type res struct {
		s   []socket.SocketDetails
		err error
	}
	done := make(chan res, 1)
	a.FetchSockets(&socket.BroadcastOptions{})(func(s []socket.SocketDetails, err error) { done <- res{s, err} })
	var r res
	select {
	case r = <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	set := map[socket.Room]struct{}{}
	for _, s := range r.s {
		if rs := s.Rooms(); rs != nil {
			for _, room := range rs.Keys() {
				set[room] = struct{}{}
			}
		}
	}
	out := make([]socket.Room, 0, len(set))
	for room := range set {
		out = append(out, room)
	}
	return out, r.err
}

// AddSockets makes the matching sockets of every server join rooms.
func (a *ShardedAdapter) AddSockets(opts *socket.BroadcastOptions, rooms []socket.Room) {
	a.Adapter.AddSockets(opts, rooms)
	a.publishRequest(opts, shSocketsJoin, kv{"rooms", roomsOut(rooms)})
}

// DelSockets makes the matching sockets of every server leave rooms.
func (a *ShardedAdapter) DelSockets(opts *socket.BroadcastOptions, rooms []socket.Room) {
	a.Adapter.DelSockets(opts, rooms)
	a.publishRequest(opts, shSocketsLeave, kv{"rooms", roomsOut(rooms)})
}

// DisconnectSockets disconnects the matching sockets of every server.
func (a *ShardedAdapter) DisconnectSockets(opts *socket.BroadcastOptions, close bool) {
	a.Adapter.DisconnectSockets(opts, close)
	a.publishRequest(opts, shDisconnectSockets, kv{"close", close})
}

func (a *ShardedAdapter) publishRequest(opts *socket.BroadcastOptions, typ int, extra kv) {
	rooms, except, flags, local := splitOptions(opts)
	if local || a.closed.Load() {
		return
	}
	a.publishMessage(a.main, typ, omap{{"opts", optsOmap(rooms, except, flags)}, extra})
}

// ServerSideEmit sends an event to every other server. With a socket.Ack (or
// func([]any, error)) last, the ack gets one value per other server, or after
// RequestsTimeout the values received with Node's timeout error.
func (a *ShardedAdapter) ServerSideEmit(packet []any) error {
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
		data, err := normalizeData(packet)
		if err != nil {
			return err
		}
		if !a.publishMessage(a.main, shServerSideEmit, omap{{"packet", data}}) && a.b.core.load() != StateDegraded {
			return errors.New("redisadapter: serverSideEmit not published (publish queue full or encoding failed)")
		}
		return nil
	}
	data, err := normalizeData(append([]any(nil), packet[:len(packet)-1]...))
	if err != nil {
		return err
	}
	others := a.otherServers()
	if others == 0 {
		ack([]any{}, nil)
		return nil
	}
	p := &pendingRequest{id: newHexID(), kind: shServerSideEmit, expected: others, responses: []any{}}
	p.finish = func(p *pendingRequest, err error) {
		if err != nil {
			err = fmt.Errorf("timeout reached: only %d responses received out of %d", p.received, p.expected)
		}
		ack(p.responses, err)
	}
	msg := omap{{"requestId", p.id}, {"packet", data}}
	a.b.core.start(p, func() bool { return a.publishMessage(a.main, shServerSideEmit, msg) }, a.b.opts.RequestsTimeout, errTimeout)
	return nil
}

// onFrame handles a frame received on one of this namespace's channels, on
// the dispatch goroutine.
func (a *ShardedAdapter) onFrame(kind int, channel, payload string) {
	core := a.b.core
	if kind == chanRoom {
		room := strings.TrimSuffix(strings.TrimPrefix(channel, a.main), "#")
		if !a.core.holdsRoom(room) {
			core.stats.droppedUnknownRoom.Add(1)
			return
		}
	}
	m, err := decodeMessage([]byte(payload))
	if err == nil {
		if kind == chanResponse {
			err = a.onResponse(m)
		} else {
			err = a.onMessage(m)
		}
	}
	if err != nil {
		core.stats.droppedMalformed.Add(1)
		core.log.Debug("dropped malformed frame", slog.String("channel", channel), slog.Any("error", err))
	}
}

// onMessage is ClusterAdapter.onMessage.
func (a *ShardedAdapter) onMessage(m message) error {
	core := a.b.core
	uid := m.str("uid")
	if uid == a.b.uid {
		core.stats.droppedOwn.Add(1)
		return nil
	}
	if m.str("nsp") != a.name {
		core.stats.droppedUnsupported.Add(1)
		return nil
	}
	d := dataOf(m)
	typ := m.typ()
	switch typ {
	case shBroadcast:
		pkt, err := d.packetOf(a.name)
		if err != nil {
			return err
		}
		rooms, except, flags, err := d.shardOptions()
		if err != nil {
			return err
		}
		id := d.str("requestId")
		if !d.has("requestId") {
			a.core.deliver(pkt, rooms, except, flags, nil)
			return nil
		}
		if uid == "" {
			return fmt.Errorf("%w: broadcast with ack without uid", errFrameShape)
		}
		a.core.localBroadcastWithAck(pkt, rooms, except, flags,
			func(n uint64) {
				a.publishResponse(uid, shBroadcastClientCount, omap{{"requestId", id}, {"clientCount", n}})
			},
			func(args []any, _ error) {
				var first any
				if len(args) > 0 {
					first = args[0]
				}
				if v, err := normalizeData(first); err == nil {
					first = v
				}
				a.publishResponse(uid, shBroadcastAck, omap{{"requestId", id}, {"packet", first}})
			})
	case shSocketsJoin, shSocketsLeave, shDisconnectSockets:
		rooms, except, _, err := d.shardOptions()
		if err != nil {
			return err
		}
		var sockets []*socket.Socket
		a.core.forEachSocket(rooms, except, func(s *socket.Socket) { sockets = append(sockets, s) })
		switch typ {
		case shSocketsJoin, shSocketsLeave:
			targets, err := roomList(d["rooms"])
			if err != nil {
				return err
			}
			for _, s := range sockets {
				if typ == shSocketsJoin {
					a.noWait.Store(s.Id(), struct{}{})
					s.Join(targets...)
					a.noWait.Delete(s.Id())
				} else {
					for _, r := range targets {
						s.Leave(r)
					}
				}
			}
		default:
			closeConn := jsTruthy(d["close"])
			for _, s := range sockets {
				s.Disconnect(closeConn)
			}
		}
	case shFetchSockets:
		rooms, except, _, err := d.shardOptions()
		if err != nil {
			return err
		}
		if uid == "" {
			return fmt.Errorf("%w: fetchSockets without uid", errFrameShape)
		}
		list := []any{}
		a.core.forEachSocket(rooms, except, func(s *socket.Socket) { list = append(list, socketOmap(s)) })
		a.publishResponse(uid, shFetchSocketsResponse, omap{{"requestId", d.str("requestId")}, {"sockets", list}})
	case shServerSideEmit:
		packet, ok := d["packet"].([]any)
		if !ok || len(packet) == 0 {
			return fmt.Errorf("%w: serverSideEmit packet is a %T", errFrameShape, d["packet"])
		}
		if !d.has("requestId") {
			a.Nsp().OnServerSideEmit(packet)
			return nil
		}
		id := d.str("requestId")
		var once atomic.Bool
		ack := socket.Ack(func(args []any, _ error) {
			if once.Swap(true) {
				return
			}
			var first any
			if len(args) > 0 {
				first = args[0]
			}
			if v, err := normalizeData(first); err == nil {
				first = v
			} else {
				first = jsonSafe(first)
			}
			a.publishResponse(uid, shServerSideEmitResponse, omap{{"requestId", id}, {"packet", first}})
		})
		a.Nsp().OnServerSideEmit(append(append([]any(nil), packet...), ack))
	case shFetchSocketsResponse, shServerSideEmitResponse, shBroadcastClientCount, shBroadcastAck:
		return a.onResponse(m)
	default:
		core.stats.droppedUnsupported.Add(1)
	}
	return nil
}

// onResponse is ClusterAdapter.onResponse: an answer to one of this server's
// requests.
func (a *ShardedAdapter) onResponse(m message) error {
	core := a.b.core
	d := dataOf(m)
	id := d.str("requestId")
	if id == "" {
		return fmt.Errorf("%w: response without requestId", errFrameShape)
	}
	typ := m.typ()
	switch typ {
	case shBroadcastClientCount, shBroadcastAck:
		core.reqs.mu.Lock()
		ar := core.reqs.acks[id]
		core.reqs.mu.Unlock()
		if ar == nil {
			core.stats.droppedLate.Add(1)
			return nil
		}
		if typ == shBroadcastClientCount {
			n, ok := d.num("clientCount")
			if !ok || n < 0 {
				return fmt.Errorf("%w: clientCount", errFrameShape)
			}
			ar.deliverCount(uint64(n))
		} else {
			ar.deliverAck(d["packet"])
		}
		return nil
	case shFetchSocketsResponse, shServerSideEmitResponse:
	default:
		core.stats.droppedUnsupported.Add(1)
		return nil
	}
	var recordErr error
	ok := core.respond(id, func(p *pendingRequest) {
		switch {
		case p.kind == shFetchSockets && typ == shFetchSocketsResponse:
			list, isList := d["sockets"].([]any)
			if !isList {
				recordErr = fmt.Errorf("%w: sockets is a %T", errFrameShape, d["sockets"])
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
		case p.kind == shServerSideEmit && typ == shServerSideEmitResponse:
			p.responses = append(p.responses, d["packet"])
		default:
			recordErr = fmt.Errorf("%w: response of type %d to a request of type %d", errFrameShape, typ, p.kind)
		}
	})
	if !ok {
		core.stats.droppedLate.Add(1)
	}
	return recordErr
}

// dispatchLoop handles received frames one at a time, in arrival order.
func (b *ShardedBuilder) dispatchLoop() {
	defer b.wg.Done()
	for {
		select {
		case in := <-b.inbox:
			b.dispatch(in)
		case <-b.done:
			return
		}
	}
}

func (b *ShardedBuilder) dispatch(in inbound) {
	b.core.stats.received.Add(1)
	b.mu.Lock()
	w := b.want[in.channel]
	var a *ShardedAdapter
	kind := 0
	if w != nil {
		a, kind = w.a, w.kind
	}
	b.mu.Unlock()
	if a == nil || a.closed.Load() {
		// A channel unsubscribed in the meantime.
		b.core.stats.droppedUnsupported.Add(1)
		return
	}
	a.onFrame(kind, in.channel, in.payload)
}

// publishLoop drains the publish queue: everything found in it goes out in one
// pipeline of SPUBLISH, in queue order.
func (b *ShardedBuilder) publishLoop() {
	defer b.wg.Done()
	drainBatches(b.core.queue, b.done, b.writeBatch, b.core.drainQueue)
}

func (b *ShardedBuilder) writeBatch(batch []outFrame) {
	core := b.core
	if core.load() == StateDegraded {
		core.stats.skippedDegraded.Add(uint64(len(batch)))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), core.publishDeadline)
	defer cancel()
	var err error
	if len(batch) == 1 {
		err = b.client.SPublish(ctx, batch[0].channel, batch[0].enc.buf.Bytes()).Err()
	} else {
		pipe := b.client.Pipeline()
		for i := range batch {
			pipe.SPublish(ctx, batch[i].channel, batch[i].enc.buf.Bytes())
		}
		_, err = pipe.Exec(ctx)
	}
	if err != nil {
		core.stats.publishErrors.Add(uint64(len(batch)))
		core.log.Debug("spublish failed", slog.Int("frames", len(batch)), slog.Any("error", err))
		core.report(sourcePublisher, false, err)
		return
	}
	core.stats.published.Add(uint64(len(batch)))
	core.report(sourcePublisher, true, nil)
}

// shardConn is the subscriber connection of one Redis master (or of the one
// standalone server): one *redis.PubSub, the channels it holds, and the
// subscription replies still expected.
type shardConn struct {
	b    *ShardedBuilder
	addr string
	node *redis.Client // the master's client in a cluster; nil: b.client

	// ioMu serializes the (un)subscription commands and replacements of
	// the connection, so that they reach Redis in the order of the state
	// changes; mu guards the state and is never held during I/O.
	ioMu     sync.Mutex
	mu       sync.Mutex
	ps       *redis.PubSub
	broken   bool                // the reader must replace ps before reading again
	closed   bool                //
	channels map[string]struct{} // channels subscribed (or being) on this connection
	pending  map[string]int      // SSUBSCRIBE replies expected, by channel
	unsubs   map[string]int      // SUNSUBSCRIBE replies expected, by channel

	failing atomic.Bool
	done    chan struct{}
	once    sync.Once
}

func (c *shardConn) newPubSub() *redis.PubSub {
	// SSubscribe without channels does no I/O.
	if c.node != nil {
		return c.node.SSubscribe(context.Background())
	}
	return c.b.client.SSubscribe(context.Background())
}

func (c *shardConn) pubsub() *redis.PubSub {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ps
}

func (c *shardConn) isClosed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *shardConn) isBroken() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.broken
}

func (c *shardConn) markBroken() {
	c.mu.Lock()
	c.broken = true
	c.mu.Unlock()
}

// isConfirmed reports whether Redis confirmed the subscription to channel on
// this connection.
func (c *shardConn) isConfirmed(channel string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.channels[channel]
	return ok && c.pending[channel] == 0 && !c.broken
}

// settled reports whether every subscription of the connection is confirmed.
func (c *shardConn) settled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) == 0 && !c.broken
}

func (c *shardConn) empty() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.channels) == 0
}

// subscribe adds channels to the connection, one slot per command.
func (c *shardConn) subscribe(ctx context.Context, chs []string) {
	if len(chs) == 0 {
		return
	}
	c.ioMu.Lock()
	defer c.ioMu.Unlock()
	c.mu.Lock()
	for _, ch := range chs {
		c.channels[ch] = struct{}{}
		c.pending[ch]++
	}
	ps, skip := c.ps, c.broken || c.closed
	c.mu.Unlock()
	if skip {
		return // the reader's rebuild subscribes them
	}
	for _, g := range groupBySlot(chs, c.node != nil, maxChannelsPerCommand) {
		if err := ps.SSubscribe(ctx, g...); err != nil {
			c.b.core.log.Debug("ssubscribe failed; the connection will be replaced", slog.String("node", c.addr), slog.Any("error", err))
			c.markBrokenIf(ps)
			return
		}
	}
}

// unsubscribe removes channels from the connection, one slot per command.
func (c *shardConn) unsubscribe(ctx context.Context, chs []string) {
	c.ioMu.Lock()
	defer c.ioMu.Unlock()
	c.mu.Lock()
	var list []string
	for _, ch := range chs {
		if _, ok := c.channels[ch]; !ok {
			continue
		}
		delete(c.channels, ch)
		delete(c.pending, ch)
		list = append(list, ch)
	}
	ps, skip := c.ps, len(list) == 0 || c.broken || c.closed
	if !skip {
		for _, ch := range list {
			c.unsubs[ch]++
		}
	}
	c.mu.Unlock()
	if skip {
		return
	}
	for _, g := range groupBySlot(list, c.node != nil, maxChannelsPerCommand) {
		if err := ps.SUnsubscribe(ctx, g...); err != nil {
			c.markBrokenIf(ps)
			return
		}
	}
}

// markBrokenIf marks the connection broken if ps is still its PubSub.
func (c *shardConn) markBrokenIf(ps *redis.PubSub) {
	c.mu.Lock()
	if c.ps == ps {
		c.broken = true
	}
	c.mu.Unlock()
}

// confirm records an SSUBSCRIBE reply; it reports whether the channel's
// subscription just became confirmed.
func (c *shardConn) confirm(channel string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.pending[channel]
	if n == 0 {
		return false
	}
	if n > 1 {
		c.pending[channel] = n - 1
		return false
	}
	delete(c.pending, channel)
	_, ok := c.channels[channel]
	return ok
}

// unsubscribed records an SUNSUBSCRIBE reply; it reports true when Redis
// unsubscribed a channel we did not ask to leave (its slot moved).
func (c *shardConn) unsubscribed(channel string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.unsubs[channel]; n > 0 {
		if n == 1 {
			delete(c.unsubs, channel)
		} else {
			c.unsubs[channel] = n - 1
		}
		return false
	}
	if _, ok := c.channels[channel]; !ok {
		return false
	}
	delete(c.channels, channel)
	delete(c.pending, channel)
	return true
}

// rebuild replaces the PubSub with a fresh connection and subscribes every
// channel again, slot by slot. It runs on the reader goroutine.
func (c *shardConn) rebuild(ctx context.Context) error {
	fresh := c.newPubSub()
	// Ping dials; a fresh PubSub has nothing for go-redis to resubscribe.
	if err := fresh.Ping(ctx); err != nil {
		_ = fresh.Close()
		return err
	}
	c.ioMu.Lock()
	defer c.ioMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = fresh.Close()
		return errors.New("redisadapter: connection closed")
	}
	old := c.ps
	c.ps = fresh
	c.broken = false
	c.pending = map[string]int{}
	c.unsubs = map[string]int{}
	chs := make([]string, 0, len(c.channels))
	for ch := range c.channels {
		chs = append(chs, ch)
		c.pending[ch] = 1
	}
	c.mu.Unlock()
	_ = old.Close()
	for _, g := range groupBySlot(chs, c.node != nil, maxChannelsPerCommand) {
		if err := fresh.SSubscribe(ctx, g...); err != nil {
			c.markBrokenIf(fresh)
			return err
		}
	}
	return nil
}

func (c *shardConn) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.b.opts.HealthCheckInterval)
	defer cancel()
	return c.pubsub().Ping(ctx)
}

func (c *shardConn) close() {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		ps := c.ps
		c.mu.Unlock()
		close(c.done)
		_ = ps.Close()
	})
}

// sleep waits for d; it reports false when the connection or the builder
// closes first.
func (c *shardConn) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.done:
		return false
	case <-c.b.done:
		return false
	}
}

// connFor returns the connection of the master owning channel's slot,
// creating it (without I/O) if needed.
func (b *ShardedBuilder) connFor(ctx context.Context, channel string) (*shardConn, error) {
	addr := ""
	var node *redis.Client
	if b.cluster != nil {
		var err error
		if node, err = b.cluster.MasterForKey(ctx, channel); err != nil {
			return nil, err
		}
		addr = node.Options().Addr
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if c := b.conns[addr]; c != nil {
		return c, nil
	}
	if b.isClosed() {
		return nil, errors.New("redisadapter: closed")
	}
	c := &shardConn{
		b: b, addr: addr, node: node, done: make(chan struct{}),
		channels: map[string]struct{}{}, pending: map[string]int{}, unsubs: map[string]int{},
	}
	c.ps = c.newPubSub()
	b.conns[addr] = c
	b.wg.Add(1)
	go b.readLoop(c)
	return c, nil
}

// requestRebalance asks the manager to check a cluster's slot owners.
func (b *ShardedBuilder) requestRebalance() {
	if b.cluster == nil {
		return
	}
	b.rebalance.Store(true)
	b.poke()
}

// manageLoop applies subscription changes, retrying with backoff what could
// not be placed, and keeps a cluster's subscriptions on the slot owners.
func (b *ShardedBuilder) manageLoop() {
	defer b.wg.Done()
	var tick <-chan time.Time
	if b.cluster != nil {
		t := time.NewTicker(topologyCheckInterval)
		defer t.Stop()
		tick = t.C
	}
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	bo := newBackoff(b.opts.MaxReconnectDelay)
	for {
		select {
		case <-b.wake:
		case <-tick:
			b.rebalance.Store(true)
		case <-retry.C:
		case <-b.done:
			return
		}
		if b.reconcile() {
			bo.reset()
		} else {
			retry.Reset(bo.next())
		}
	}
}

// reconcile subscribes the wanted channels that are not, and unsubscribes the
// others. It reports false when something is left to retry.
func (b *ShardedBuilder) reconcile() bool {
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.RequestsTimeout)
	defer cancel()
	ok := true
	if b.cluster != nil && b.rebalance.Load() {
		if time.Since(b.lastRebalance) < minRebalanceInterval {
			ok = false
		} else {
			b.rebalance.Store(false)
			b.lastRebalance = time.Now()
			if err := b.rebalanceSlots(ctx); err != nil {
				b.core.log.Debug("cluster topology check failed", slog.Any("error", err))
				b.rebalance.Store(true)
				ok = false
			}
		}
	}
	b.mu.Lock()
	var subs []string
	unsubs := map[*shardConn][]string{}
	for ch := range b.want {
		if b.placed[ch] == nil {
			subs = append(subs, ch)
		}
	}
	for ch, c := range b.placed {
		if b.want[ch] == nil {
			unsubs[c] = append(unsubs[c], ch)
			delete(b.placed, ch)
		}
	}
	b.mu.Unlock()
	for c, chs := range unsubs {
		c.unsubscribe(ctx, chs)
	}
	byConn := map[*shardConn][]string{}
	for _, ch := range subs {
		c, err := b.connFor(ctx, ch)
		if err != nil {
			if !b.isClosed() {
				b.core.log.Debug("cannot find the node of a channel; retrying", slog.String("channel", ch), slog.Any("error", err))
				b.core.report(sourceSubscriber, false, err)
			}
			ok = false
			continue
		}
		byConn[c] = append(byConn[c], ch)
	}
	b.mu.Lock()
	for c, chs := range byConn {
		kept := chs[:0]
		for _, ch := range chs {
			if b.want[ch] != nil && b.placed[ch] == nil {
				b.placed[ch] = c
				kept = append(kept, ch)
			}
		}
		byConn[c] = kept
	}
	b.mu.Unlock()
	for c, chs := range byConn {
		c.subscribe(ctx, chs)
	}
	return ok
}

// rebalanceSlots reloads a cluster's topology, moves the channels whose slot
// changed owner, and closes the connections of nodes that are no longer
// masters.
func (b *ShardedBuilder) rebalanceSlots(ctx context.Context) error {
	var mu sync.Mutex
	masters := map[string]bool{}
	// ForEachMaster reloads the cluster state first.
	if err := b.cluster.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		masters[c.Options().Addr] = true
		mu.Unlock()
		return nil
	}); err != nil {
		return err
	}
	b.mu.Lock()
	snapshot := make(map[string]*shardConn, len(b.placed))
	for ch, c := range b.placed {
		snapshot[ch] = c
	}
	b.mu.Unlock()
	moves := map[*shardConn][]string{}
	for ch, c := range snapshot {
		node, err := b.cluster.MasterForKey(ctx, ch)
		if err != nil {
			return err
		}
		if node.Options().Addr != c.addr {
			moves[c] = append(moves[c], ch)
		}
	}
	b.mu.Lock()
	for c, chs := range moves {
		for _, ch := range chs {
			if b.placed[ch] == c {
				delete(b.placed, ch)
			}
		}
	}
	b.mu.Unlock()
	for c, chs := range moves {
		c.unsubscribe(ctx, chs)
		b.core.log.Debug("moving channels to their new slot owner", slog.String("from", c.addr), slog.Int("channels", len(chs)))
	}
	var dead []*shardConn
	b.mu.Lock()
	for addr, c := range b.conns {
		if !masters[addr] && c.empty() {
			delete(b.conns, addr)
			delete(b.failed, c)
			dead = append(dead, c)
		}
	}
	allOK := len(b.failed) == 0
	b.mu.Unlock()
	for _, c := range dead {
		c.close()
	}
	if len(dead) > 0 && allOK {
		b.core.report(sourceSubscriber, true, nil)
	}
	return nil
}

// connOK records a healthy exchange on c.
func (b *ShardedBuilder) connOK(c *shardConn) {
	if !c.failing.Load() && b.core.load() == StateConnected {
		return
	}
	c.failing.Store(false)
	b.mu.Lock()
	delete(b.failed, c)
	allOK := len(b.failed) == 0
	b.mu.Unlock()
	if allOK {
		b.core.report(sourceSubscriber, true, nil)
	}
}

// connFailed records a failure of c: the adapter is degraded until every
// connection is healthy again.
func (b *ShardedBuilder) connFailed(c *shardConn, err error) {
	first := !c.failing.Swap(true)
	b.mu.Lock()
	if _, ok := b.conns[c.addr]; ok && b.conns[c.addr] == c {
		b.failed[c] = err
	}
	b.mu.Unlock()
	if first {
		b.core.log.Debug("redis subscriber failed", slog.String("node", c.addr), slog.Any("error", err))
	}
	b.core.report(sourceSubscriber, false, err)
}

// onConfirmed marks the want of channel ready once its subscription on c is
// confirmed.
func (b *ShardedBuilder) onConfirmed(c *shardConn, channel string) {
	b.mu.Lock()
	if w := b.want[channel]; w != nil && b.placed[channel] == c {
		w.markReady()
	}
	b.mu.Unlock()
}

// onEvicted handles Redis unsubscribing a channel by itself (its slot moved
// to another master): the channel is placed again, on the new owner.
func (b *ShardedBuilder) onEvicted(c *shardConn, channel string) {
	b.mu.Lock()
	if b.placed[channel] == c {
		delete(b.placed, channel)
	}
	b.mu.Unlock()
	b.core.log.Debug("redis unsubscribed a channel; placing it again", slog.String("node", c.addr), slog.String("channel", channel))
	b.requestRebalance()
	b.poke()
}

// onReplyError handles an error reply read on a subscriber connection.
func (b *ShardedBuilder) onReplyError(c *shardConn, err error) {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK "):
		// A subscription sent to a node that no longer owns the slot.
		b.core.log.Debug("subscription redirected; checking the cluster topology", slog.String("node", c.addr), slog.Any("error", err))
		b.requestRebalance()
	case strings.HasPrefix(msg, "CROSSSLOT"):
		// Only go-redis's own resubscription sends several slots at once.
		c.markBroken()
	default:
		c.markBroken()
		b.connFailed(c, err)
	}
}

// readLoop receives the frames of one connection until it closes. On errors
// it backs off exponentially (100ms doubling to MaxReconnectDelay, with
// jitter) and replaces the connection.
func (b *ShardedBuilder) readLoop(c *shardConn) {
	defer b.wg.Done()
	bo := newBackoff(b.opts.MaxReconnectDelay)
	pingPending := false
	for {
		if b.isClosed() || c.isClosed() {
			return
		}
		if c.isBroken() {
			if !c.sleep(bo.next()) {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), b.opts.RequestsTimeout)
			err := c.rebuild(ctx)
			cancel()
			if b.isClosed() || c.isClosed() {
				return
			}
			if err != nil {
				b.connFailed(c, err)
				b.requestRebalance()
				continue
			}
			pingPending = false
		}
		ps := c.pubsub()
		msg, err := ps.ReceiveTimeout(context.Background(), b.opts.HealthCheckInterval)
		if b.isClosed() || c.isClosed() {
			return
		}
		if err != nil {
			if isTimeout(err) {
				if !pingPending {
					// Idle: check that the link is alive.
					pingPending = true
					if perr := c.ping(); perr != nil {
						pingPending = false
						c.markBroken()
						b.connFailed(c, perr)
					}
					continue
				}
				// A whole interval without an answer to our ping: frozen.
				pingPending = false
				c.markBroken()
				b.connFailed(c, errNoPong)
				continue
			}
			pingPending = false
			var rerr redis.Error
			if errors.As(err, &rerr) {
				b.onReplyError(c, err)
				continue
			}
			c.markBroken()
			b.connFailed(c, err)
			b.requestRebalance()
			continue
		}
		pingPending = false
		switch m := msg.(type) {
		case *redis.Message:
			bo.reset()
			b.connOK(c)
			select {
			case b.inbox <- inbound{channel: m.Channel, payload: m.Payload}:
			case <-c.done:
				return
			case <-b.done:
				return
			}
		case *redis.Subscription:
			switch m.Kind {
			case "ssubscribe":
				if c.confirm(m.Channel) {
					b.onConfirmed(c, m.Channel)
				}
				bo.reset()
				b.connOK(c)
			case "sunsubscribe":
				if c.unsubscribed(m.Channel) {
					b.onEvicted(c, m.Channel)
				}
			}
		case *redis.Pong:
			if c.settled() {
				b.connOK(c)
			}
		}
	}
}
