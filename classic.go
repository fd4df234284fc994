package redisadapter

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/d38ad898/redisadapter/internal/wire"
	"github.com/redis/go-redis/v9"
)

// classicTransport speaks @socket.io/redis-adapter's createAdapter protocol
// over PUBLISH. It subscribes, on one connection, either to one pattern per
// namespace (key#nsp#*, as Node does) or, with Options.RoomSubscriptions, to
// the namespace's channel and the channel of every room a local socket is in,
// so that Redis sends it only the frames of its rooms and it never needs
// PSUBSCRIBE. Both modes publish the same bytes on the same channels.
type classicTransport struct {
	b     *Builder
	rooms bool // Options.RoomSubscriptions
	sub   *subscriber

	nsps perNsp[wire.ClassicChannels]
}

func newClassicTransport(b *Builder) *classicTransport {
	return &classicTransport{b: b, rooms: b.opts.RoomSubscriptions, sub: newSubscriber(b, false)}
}

func (t *classicTransport) protocol() protocol { return classicProtocol }
func (t *classicTransport) start()             { t.sub.start() }
func (t *classicTransport) stop()              { t.sub.stop() }

func (t *classicTransport) channels(nsp string) *wire.ClassicChannels {
	return t.nsps.get(nsp, func() wire.ClassicChannels { return wire.NewClassicChannels(t.b.opts.Key, nsp, t.b.uid) })
}

// namespaceKeys are the subscriptions of a namespace, with their routes.
func (t *classicTransport) namespaceKeys(nsp string) map[subKey]inbound {
	ch := t.channels(nsp)
	keys := map[subKey]inbound{
		{name: ch.Request}:          {nsp: nsp, kind: kindRequest},
		{name: ch.Response}:         {nsp: nsp, kind: kindResponse},
		{name: ch.SpecificResponse}: {nsp: nsp, kind: kindResponse},
	}
	if t.rooms {
		keys[subKey{name: ch.Broadcast}] = inbound{nsp: nsp, kind: kindBroadcast}
	} else {
		keys[subKey{name: ch.Pattern, pattern: true}] = inbound{nsp: nsp, kind: kindBroadcast}
	}
	return keys
}

func (t *classicTransport) open(nsp string) { t.sub.set(t.namespaceKeys(nsp), nil) }

func (t *classicTransport) shut(nsp string) {
	var remove []subKey
	for k := range t.namespaceKeys(nsp) {
		remove = append(remove, k)
	}
	if t.rooms {
		// Every room channel of the namespace.
		prefix := t.channels(nsp).Broadcast
		t.sub.mu.Lock()
		for k := range t.sub.want {
			if strings.HasPrefix(k.name, prefix) && !k.pattern {
				remove = append(remove, k)
			}
		}
		t.sub.mu.Unlock()
	}
	t.sub.set(nil, remove)
	t.nsps.drop(nsp)
}

// syncRooms subscribes to the channels of held rooms in room-subscription
// mode: socket-id rooms too, since Node publishes a message to one socket on
// its room's channel.
func (t *classicTransport) syncRooms(nsp string, changes []roomState) []<-chan struct{} {
	if !t.rooms {
		return nil
	}
	ch := t.channels(nsp)
	add := map[subKey]inbound{}
	var remove []subKey
	for _, c := range changes {
		k := subKey{name: ch.Room(c.room)}
		if c.held {
			add[k] = inbound{nsp: nsp, kind: kindBroadcast, room: c.room}
		} else {
			remove = append(remove, k)
		}
	}
	return t.sub.set(add, remove)
}

func (t *classicTransport) encode(nsp string, m *wire.Message, to string, f *outFrame) error {
	ch := t.channels(nsp)
	f.cmd = cmdPublish
	var err error
	switch {
	case m.Type == wire.TypeBroadcast && m.RequestID == "":
		f.channel = ch.Broadcast
		if len(m.Opts.Rooms) == 1 {
			f.channel = ch.Room(m.Opts.Rooms[0])
		}
		f.buf, err = wire.AppendClassicBroadcast(f.buf, m.UID, &m.Packet, &m.Opts)
	case m.Type.IsResponse():
		f.channel = ch.Response
		// Node answers serverSideEmit on the shared channel whatever
		// publishOnSpecificResponseChannel says; so do we.
		if t.b.opts.PublishOnSpecificResponseChannel && to != "" && m.Type != wire.TypeServerSideEmitResponse {
			f.channel = ch.ResponseOf(to)
		}
		f.buf, err = wire.AppendClassicResponse(f.buf, m)
	default:
		f.channel = ch.Request
		f.buf, err = wire.AppendClassicRequest(f.buf, m)
	}
	return err
}

func (t *classicTransport) decode(in *inbound) (*wire.Message, error) {
	switch in.kind {
	case kindBroadcast:
		if strings.HasPrefix(in.payload, t.b.ownFrame) {
			// [uid, ...] with our uid: our own broadcast, back through the
			// subscription. Dropped before decoding.
			return nil, errOwn
		}
		return wire.DecodeClassicBroadcast(in.payload)
	case kindRequest:
		return wire.DecodeClassicRequest(in.payload)
	}
	return wire.DecodeClassicResponse(in.payload)
}

// write publishes the batch in one pipeline. On a Redis Cluster every frame
// of every batch goes through one node, the master of this server's uid: a
// classic PUBLISH reaches the whole cluster from any node, and one node keeps
// the server's order (go-redis would split a pipeline by channel slot and run
// the parts concurrently; batches sent through different nodes would reach a
// subscriber on one of them before the other's frames crossed the cluster
// bus).
func (t *classicTransport) write(ctx context.Context, batch []*outFrame) error {
	var c redis.Cmdable = t.b.rdb
	if cc, ok := t.b.rdb.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, t.b.uid)
		if err != nil {
			return err
		}
		c = node
	}
	return writePipelined(ctx, c, batch)
}

// writePipelined runs the batch's commands in one pipeline on c.
func writePipelined(ctx context.Context, c redis.Cmdable, batch []*outFrame) error {
	if len(batch) == 1 {
		return runFrame(ctx, c, batch[0])
	}
	pipe := c.Pipeline()
	cmds := make([]redis.Cmder, len(batch))
	for i, f := range batch {
		cmds[i] = queueFrame(ctx, pipe, f)
	}
	_, err := pipe.Exec(ctx)
	for i, f := range batch {
		if x, ok := cmds[i].(*redis.StringCmd); ok && x.Err() == nil {
			f.id = x.Val()
		}
	}
	return err
}

// queueFrame adds the command of f to a pipeline.
func queueFrame(ctx context.Context, c redis.Cmdable, f *outFrame) redis.Cmder {
	switch f.cmd {
	case cmdSPublish:
		return c.SPublish(ctx, f.channel, f.buf)
	case cmdXAdd:
		return c.XAdd(ctx, xaddArgs(f))
	case cmdSet:
		return c.Set(ctx, f.channel, f.buf, f.ttl)
	}
	return c.Publish(ctx, f.channel, f.buf)
}

func runFrame(ctx context.Context, c redis.Cmdable, f *outFrame) error {
	cmd := queueFrame(ctx, c, f)
	if x, ok := cmd.(*redis.StringCmd); ok && x.Err() == nil {
		f.id = x.Val()
	}
	return cmd.Err()
}

// serverCount is PUBSUB NUMSUB of the request channel, summed over every
// master of a cluster (PUBSUB is keyless: a cluster client would ask one
// random node).
func (t *classicTransport) serverCount(ctx context.Context, nsp string) (int64, error) {
	return numSub(ctx, t.b.rdb, t.channels(nsp).Request, false)
}

// numSub returns PUBSUB NUMSUB (or SHARDNUMSUB) of channel, summed over the
// masters of a cluster.
func numSub(ctx context.Context, c redis.UniversalClient, channel string, sharded bool) (int64, error) {
	one := func(ctx context.Context, c redis.Cmdable) (int64, error) {
		var m map[string]int64
		var err error
		if sharded {
			m, err = c.PubSubShardNumSub(ctx, channel).Result()
		} else {
			m, err = c.PubSubNumSub(ctx, channel).Result()
		}
		return m[channel], err
	}
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return one(ctx, c)
	}
	var total atomic.Int64
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		n, err := one(ctx, node)
		total.Add(n)
		return err
	})
	return total.Load(), err
}
