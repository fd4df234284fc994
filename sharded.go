package redisadapter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/redis/go-redis/v9"
)

// The sharded transport: the protocol of createShardedAdapter of
// @socket.io/redis-adapter 8.x (Redis 7 sharded pub/sub, SPUBLISH and
// SSUBSCRIBE), which scales with the masters of a Redis Cluster because a
// sharded channel lives on the one master that owns its slot. Channels of a
// namespace (wire.ClusterChannels): prefix#nsp# for every message,
// prefix#nsp#uid# for the answers to the server uid, prefix#nsp#room# for
// broadcasts to one room in the dynamic modes. The subscriber keeps one
// connection per master.

// SubscriptionMode selects which room channels a sharded server subscribes to.
type SubscriptionMode string

// Subscription modes, as in Node's createShardedAdapter.
const (
	// SubscriptionModeStatic: only the namespace and response channels.
	// Every broadcast goes through the namespace channel and reaches every
	// server.
	SubscriptionModeStatic SubscriptionMode = "static"
	// SubscriptionModeDynamic: plus one channel per public room (a room that
	// is not a socket id). Node treats a room of 20 characters as a socket id
	// and publishes to the namespace channel for it; Go socket ids have 24
	// characters, so Node publishes to their room channel: a Go server in
	// this mode therefore also subscribes to its own socket-id rooms whose
	// length is not 20. The default.
	SubscriptionModeDynamic SubscriptionMode = "dynamic"
	// SubscriptionModeDynamicPrivate: one channel per room, socket-id rooms
	// included.
	SubscriptionModeDynamicPrivate SubscriptionMode = "dynamic-private"
)

// DefaultSubscriptionMode is the default of ShardedOptions.SubscriptionMode.
const DefaultSubscriptionMode = SubscriptionModeDynamic

// ShardedOptions configures NewSharded. A nil *ShardedOptions means Node's
// defaults; the zero value of each field means its default.
type ShardedOptions struct {
	// Options are the options of every mode; Key is Node's channelPrefix.
	// RoomSubscriptions is ignored (the dynamic modes subscribe per room);
	// JoinTimeout and NoJoinWait apply to the dynamic modes.
	Options

	// SubscriptionMode is static, dynamic or dynamic-private. Servers of a
	// cluster must use the same mode. Default: dynamic.
	SubscriptionMode SubscriptionMode
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
	if err := o.Options.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// NewSharded returns a Builder for the protocol of Node's
// createShardedAdapter on client: a *redis.Client (standalone Redis 7 or
// later), a failover client, or a *redis.ClusterClient. Like New, it does no
// network I/O and never fails: if Redis is unreachable the adapter starts
// degraded and connects in the background. A nil opts means Node's defaults
// (prefix "socket.io", dynamic mode). The caller keeps ownership of client.
func NewSharded(client redis.UniversalClient, opts *ShardedOptions) *Builder {
	if client == nil {
		panic("redisadapter: NewSharded called with a nil redis client")
	}
	if _, ring := client.(*redis.Ring); ring {
		// A Ring shards keys on the client side: sharded pub/sub needs a
		// standalone server, a failover client or a Redis Cluster.
		panic("redisadapter: NewSharded does not support *redis.Ring")
	}
	var so ShardedOptions
	if opts != nil {
		so = *opts
	}
	switch so.SubscriptionMode {
	case SubscriptionModeStatic, SubscriptionModeDynamic, SubscriptionModeDynamicPrivate:
	default:
		so.SubscriptionMode = DefaultSubscriptionMode
	}
	b := newBuilder(client, so.Options.withDefaults(), "sharded-"+string(so.SubscriptionMode))
	if err := opts.Validate(); err != nil {
		b.log.Error("invalid options, using defaults for the invalid fields", slog.Any("error", err))
	}
	b.perRoom = so.SubscriptionMode != SubscriptionModeStatic
	b.start(&shardedTransport{b: b, mode: so.SubscriptionMode, sub: newSubscriber(b, true)})
	return b
}

type shardedTransport struct {
	b    *Builder
	mode SubscriptionMode
	sub  *subscriber

	nsps perNsp[wire.ClusterChannels]
}

func (t *shardedTransport) protocol() protocol { return clusterProtocol }
func (t *shardedTransport) start()             { t.sub.start() }
func (t *shardedTransport) stop()              { t.sub.stop() }

func (t *shardedTransport) channels(nsp string) *wire.ClusterChannels {
	return t.nsps.get(nsp, func() wire.ClusterChannels { return wire.NewClusterChannels(t.b.opts.Key, nsp, t.b.uid) })
}

func (t *shardedTransport) open(nsp string) {
	ch := t.channels(nsp)
	t.sub.set(map[subKey]inbound{
		{name: ch.Main}:    {nsp: nsp, kind: kindMessage},
		{name: ch.Private}: {nsp: nsp, kind: kindMessage},
	}, nil)
}

func (t *shardedTransport) shut(nsp string) {
	prefix := t.channels(nsp).Main
	var remove []subKey
	t.sub.mu.Lock()
	for k := range t.sub.want {
		if strings.HasPrefix(k.name, prefix) {
			remove = append(remove, k)
		}
	}
	t.sub.mu.Unlock()
	t.sub.set(nil, remove)
	t.nsps.drop(nsp)
}

// subscribesTo reports whether this server subscribes to the channel of a
// room it holds, by its subscription mode.
func (t *shardedTransport) subscribesTo(r roomState) bool {
	switch t.mode {
	case SubscriptionModeDynamicPrivate:
		return true
	case SubscriptionModeDynamic:
		return !r.sid || !wire.LooksLikeNodeSocketID(r.room)
	}
	return false
}

func (t *shardedTransport) syncRooms(nsp string, changes []roomState) []<-chan struct{} {
	if t.mode == SubscriptionModeStatic {
		return nil
	}
	ch := t.channels(nsp)
	add := map[subKey]inbound{}
	var remove []subKey
	for _, c := range changes {
		k := subKey{name: ch.Room(c.room)}
		if c.held && t.subscribesTo(c) {
			add[k] = inbound{nsp: nsp, kind: kindMessage, room: c.room}
		} else {
			remove = append(remove, k)
		}
	}
	return t.sub.set(add, remove)
}

// channelFor is Node's computeChannel for a broadcast: the room channel for
// exactly one room, without acknowledgements, in dynamic-private mode, or in
// dynamic mode when the room does not look like a (Node) socket id.
func (t *shardedTransport) channelFor(ch *wire.ClusterChannels, m *wire.Message) string {
	if m.RequestID != "" || len(m.Opts.Rooms) != 1 {
		return ch.Main
	}
	room := m.Opts.Rooms[0]
	switch {
	case t.mode == SubscriptionModeDynamicPrivate,
		t.mode == SubscriptionModeDynamic && !wire.LooksLikeNodeSocketID(room):
		return ch.Room(room)
	}
	return ch.Main
}

func (t *shardedTransport) encode(nsp string, m *wire.Message, to string, f *outFrame) error {
	ch := t.channels(nsp)
	f.cmd = cmdSPublish
	switch {
	case m.Type.IsResponse():
		f.channel = ch.ResponseOf(to)
	case m.Type == wire.TypeBroadcast:
		f.channel = t.channelFor(ch, m)
	case m.Type == wire.TypeAllRooms:
		return fmt.Errorf("%w: the sharded protocol has no allRooms request", wire.ErrShape)
	default:
		f.channel = ch.Main
	}
	var err error
	f.buf, err = wire.AppendCluster(f.buf, m, wire.FormatSharded)
	return err
}

func (t *shardedTransport) decode(in *inbound) (*wire.Message, error) {
	return wire.DecodeCluster(in.payload)
}

// write sends the batch as one pipeline of SPUBLISH; on a cluster, go-redis
// sends each part to the owner of its channels' slots.
func (t *shardedTransport) write(ctx context.Context, batch []*outFrame) error {
	return writePipelined(ctx, t.b.rdb, batch)
}

// serverCount is PUBSUB SHARDNUMSUB of the namespace channel, summed over a
// cluster's masters.
func (t *shardedTransport) serverCount(ctx context.Context, nsp string) (int64, error) {
	return numSub(ctx, t.b.rdb, t.channels(nsp).Main, true)
}

// keySlot returns the Redis Cluster hash slot of a key or sharded channel
// (CRC16/XMODEM of the hash tag, modulo 16384).
func keySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for j := 0; j < 8; j++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
